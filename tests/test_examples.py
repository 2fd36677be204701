"""Every script in examples/ runs in quick mode and draws at least one figure; the notebooks work.

The examples share one convention: ``--quick`` finishes in under a minute and ``--out DIR``
receives the figures. Each runs in its own process, as a user would run it, with a
headless matplotlib backend and a model cache private to this test session (so a stale
cache cannot hide a training bug, and the user's cache is left alone). The quick-start
tutorial of the documentation runs here too, so that page cannot drift from the package.

The documentation's gallery also offers every script as a Jupyter notebook, converted by
sphinx-gallery. The notebooks are built here with the same converter and validated with
nbformat; the quick start's notebook is executed (its code cells joined, in one namespace,
no Jupyter kernel needed), and each example's options parser is checked to accept the
command line a Jupyter kernel is started with.

Running the scripts takes minutes, so those tests are marked ``slow`` (``make test``,
i.e. ``pytest -m "not slow"``, skips them; ``make test-slow`` and ``make test-all`` run them).
"""

from __future__ import annotations

import ast
import contextlib
import copy
import glob
import io
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = sorted(glob.glob(os.path.join(ROOT, "examples", "*.py")))
QUICKSTART = os.path.join(ROOT, "docs", "snippets", "quickstart.py")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Quick mode promises < 60 s; the limit leaves room for a loaded machine and for the first
# example of the session, which trains the cached digits model.
TIMEOUT_S = 300
# sys.argv of a Jupyter kernel: the kernel's own options, not the example's.
KERNEL_ARGV = ["/usr/lib/python3/dist-packages/ipykernel_launcher.py", "-f", "/tmp/kernel-1234.json"]


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory):
    """A model cache private to this test session."""
    return str(tmp_path_factory.mktemp("model_cache"))


@pytest.fixture(scope="session")
def script_env(model_cache):
    """Environment of the example processes: headless, one thread, a session model cache."""
    env = dict(os.environ)
    env.update(
        {
            "MPLBACKEND": "Agg",
            "OMP_NUM_THREADS": "1",
            "CLASSPATTERN_CACHE": model_cache,
            "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")])),
        }
    )
    return env


def _run(args, cwd, env):
    result = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    log = f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    assert result.returncode == 0, f"{args[0]} exited with {result.returncode}\n{log}"
    return result


def _pngs(folder):
    return sorted(glob.glob(os.path.join(folder, "**", "*.png"), recursive=True))


def _notebook(script, folder):
    """The notebook sphinx-gallery makes of ``script``, written to ``folder`` and read back."""
    gen_gallery = pytest.importorskip("sphinx_gallery.gen_gallery")
    notebook = pytest.importorskip("sphinx_gallery.notebook")
    parser = pytest.importorskip("sphinx_gallery.py_source_parser")
    nbformat = pytest.importorskip("nbformat")
    _, blocks = parser.split_code_and_text_blocks(script)
    content = notebook.jupyter_notebook(blocks, copy.deepcopy(gen_gallery.DEFAULT_GALLERY_CONF), str(folder))
    path = os.path.join(folder, os.path.basename(script).replace(".py", ".ipynb"))
    notebook.save_notebook(content, path)
    return nbformat.read(path, as_version=4)


def test_there_are_examples():
    names = {os.path.basename(path) for path in EXAMPLES}
    assert {
        "natural_patterns.py",
        "captum_baselines.py",
        "adversarial_patterns.py",
        "backdoor_scan.py",
        "units_behind_a_class.py",
        "interventions.py",
        "adversarial_units.py",
        "generator_dissection.py",
    } <= names


@pytest.mark.slow
@pytest.mark.parametrize("script", EXAMPLES, ids=lambda path: os.path.basename(path))
def test_example_runs_quick_and_writes_figures(script, script_env, tmp_path):
    out = tmp_path / "out"
    result = _run([script, "--quick", "--out", str(out)], cwd=tmp_path, env=script_env)
    assert result.stdout.strip(), "an example prints what it measures"
    figures = _pngs(out)
    assert figures, f"no PNG written under --out\n{result.stdout[-2000:]}"
    for path in figures:
        with open(path, "rb") as stream:
            assert stream.read(8) == PNG_SIGNATURE, f"{path} is not a PNG"
    assert not _pngs(tmp_path / "examples_output"), "figures must go to --out, not the default folder"


@pytest.mark.slow
def test_quickstart_runs_as_a_script(script_env, tmp_path):
    result = _run([QUICKSTART], cwd=tmp_path, env=script_env)
    assert "class 7: power" in result.stdout
    assert not os.listdir(tmp_path), "the quick start shows its figures, it writes no file"


@pytest.mark.parametrize("script", [*EXAMPLES, QUICKSTART], ids=lambda path: os.path.basename(path))
def test_notebook_is_valid(script, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    notebook = _notebook(script, tmp_path)
    nbformat.validate(notebook)
    kinds = [cell.cell_type for cell in notebook.cells]
    assert kinds[0] == "markdown" and notebook.cells[0].source.lstrip().startswith("# "), "a title comes first"
    assert kinds.count("code") >= 3 and kinds.count("markdown") >= 3, "a story in cells, not one block"


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda path: os.path.basename(path))
def test_example_options_in_a_notebook(script, monkeypatch):
    """``parse_args()`` takes the defaults under a Jupyter kernel, and is strict in a script."""
    with open(script, encoding="utf-8") as stream:
        tree = ast.parse(stream.read(), script)
    [parse_args] = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "parse_args"]
    namespace: dict = {}
    exec(compile("import argparse, os, sys", script, "exec"), namespace)
    exec(compile(ast.Module(body=[parse_args], type_ignores=[]), script, "exec"), namespace)
    monkeypatch.setattr(sys, "argv", KERNEL_ARGV)
    with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
        namespace["parse_args"]()  # a script given options it does not know stops
    monkeypatch.setitem(sys.modules, "ipykernel", type(sys)("ipykernel"))
    assert namespace["parse_args"]().quick is False
    assert namespace["parse_args"](["--quick", "--out", "x"]).quick is True


@pytest.mark.slow
def test_quickstart_notebook_runs(model_cache, tmp_path, monkeypatch, capsys):
    torch = pytest.importorskip("torch")
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    notebook = _notebook(QUICKSTART, tmp_path)
    code = "\n\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    monkeypatch.setenv("CLASSPATTERN_CACHE", model_cache)
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    plt.close("all")
    try:
        exec(compile(code, "quickstart.ipynb", "exec"), {"__name__": "__main__"})
        figures = [plt.figure(number) for number in plt.get_fignums()]
    finally:
        plt.close("all")
        torch.set_num_threads(threads)
    printed = capsys.readouterr().out
    assert "class 7: power" in printed and "IntegratedGradients pixels: power" in printed
    assert len(figures) == 2 and all(figure.axes for figure in figures), "the two figures are drawn"

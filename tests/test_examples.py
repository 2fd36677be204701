"""Every script in examples/ runs in quick mode and draws at least one figure.

The examples share one convention: ``--quick`` finishes in under a minute and ``--out DIR``
receives the figures. Each runs in its own process, as a user would run it, with a
headless matplotlib backend and a model cache private to this test session (so a stale
cache cannot hide a training bug, and the user's cache is left alone). The quick-start
script of the documentation runs here too, so that page cannot drift from the package.

Running the scripts takes minutes, so those tests are marked ``slow`` (``make test-quick``,
i.e. ``pytest -m "not slow"``, skips them; ``make test`` runs them).
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = sorted(glob.glob(os.path.join(ROOT, "examples", "*.py")))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Quick mode promises < 60 s; the limit leaves room for a loaded machine and for the first
# example of the session, which trains the cached digits model.
TIMEOUT_S = 300


@pytest.fixture(scope="session")
def script_env(tmp_path_factory):
    """Environment of the example processes: headless, one thread, a session model cache."""
    env = dict(os.environ)
    env.update(
        {
            "MPLBACKEND": "Agg",
            "OMP_NUM_THREADS": "1",
            "CLASSPATTERN_CACHE": str(tmp_path_factory.mktemp("model_cache")),
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


def test_there_are_examples():
    names = {os.path.basename(path) for path in EXAMPLES}
    assert {
        "natural_patterns.py",
        "captum_baselines.py",
        "adversarial_patterns.py",
        "backdoor_scan.py",
        "units_behind_a_class.py",
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
def test_quickstart_snippet_runs(script_env, tmp_path):
    result = _run([os.path.join(ROOT, "docs", "snippets", "quickstart.py")], cwd=tmp_path, env=script_env)
    assert "class 7: power" in result.stdout
    assert {os.path.basename(p) for p in _pngs(tmp_path)} == {"quickstart_patterns.png", "quickstart_map.png"}

"""The command line a newcomer meets: model and data faults named, no empty --out, classes by name.

Every fault here is found before any search, so each case takes a fraction of a second; it
must be one line on stderr with exit status 2, and leave no ``--out`` folder behind.
"""

from __future__ import annotations

import html
import os
import re
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from captum_classpattern.attr import top_k_pattern
from captum_classpattern.cli import _search as cli_search
from captum_classpattern.cli import main
from captum_classpattern.cli._report import SCAN_COLUMNS, legend, search_page
from captum_classpattern.models import SmallCNN
from captum_classpattern.pipeline import ClassReport, SearchOutcome, SearchReport
from captum_classpattern.visualization import png_bytes

FACTORIES = textwrap.dedent(
    """
    import torch
    from captum_classpattern.models import SmallCNN


    def build():
        return SmallCNN(1, 10, 4)


    def five():
        return SmallCNN(1, 5, 4)


    def rgb():
        return SmallCNN(3, 3, 4)


    class OneLogit(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = SmallCNN(1, 1, 4)

        def forward(self, x):
            return self.net(x)


    def one():
        return OneLogit()
    """
)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Factories, weights (good, NaN, not weights at all) and image folders, one with a corrupt image."""
    folder = tmp_path_factory.mktemp("newcomer")
    (folder / "newcomer_nets.py").write_text(FACTORIES)
    torch.manual_seed(0)
    torch.save(SmallCNN(1, 10, 4).state_dict(), folder / "good.pt")
    broken = {
        key: torch.full_like(value, float("nan")) if value.is_floating_point() else value
        for key, value in SmallCNN(1, 10, 4).state_dict().items()
    }
    torch.save(broken, folder / "nan.pt")
    np.savez(folder / "arrays.npz", weights=np.zeros(3))
    (folder / "empty.pt").write_bytes(b"")
    generator = np.random.default_rng(0)
    for name in ("images", "corrupt"):
        for cls in ("cat", "dog", "fox"):
            (folder / name / cls).mkdir(parents=True)
            for i in range(4):
                pixels = generator.integers(0, 256, (10, 10, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / name / cls / f"{i}.png")
    (folder / "corrupt" / "cat" / "0.png").write_bytes(b"not a png at all")
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))


def _run(argv, folder, out, capsys):
    code = main([arg.replace("{d}", str(folder)) for arg in argv] + ["--out", str(out), "--no-progress"])
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in captured.err, captured.err
    return lines[0], captured.out


MODEL_FAULTS = {
    "NaN weights": (["--weights", "{d}/nan.pt"], r"--weights \S+nan.pt: the model returns NaN or infinite logits"),
    "one logit": (["--model", "newcomer_nets:one"], r"--model newcomer_nets:one returns 1 logit per image"),
    "fewer classes than the data": (
        ["--model", "newcomer_nets:five"],
        r"--data digits has 10 classes but --model newcomer_nets:five returns 5 logits",
    ),
}


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("command", ["search", "scan"])
@pytest.mark.parametrize("fault", sorted(MODEL_FAULTS))
def test_model_faults_name_the_weights_or_the_model(files, fault, command, tmp_path, capsys):
    extra, pattern = MODEL_FAULTS[fault]
    argv = [command, *(["--model", "newcomer_nets:build"] if "--model" not in extra else []), *extra]
    line, _ = _run(argv, files, tmp_path / "out", capsys)
    assert re.search(pattern, line), line
    assert not (tmp_path / "out").exists()


DATA_FAULTS = {
    "corrupt image in folder:PATH": (["--data", "folder:{d}/corrupt"], r"cannot read the image \S+corrupt/cat/0.png"),
    "missing folder:PATH": (["--data", "folder:{d}/nowhere"], r"image folder \S+nowhere not found"),
    "missing cifar10:PATH": (["--data", "cifar10:{d}/nowhere"], r"CIFAR-10 not found"),
    "missing weights": (["--weights", "{d}/nowhere.pt"], r"--weights \S+nowhere.pt: not found"),
    "npz as weights": (["--weights", "{d}/arrays.npz"], r"is a zip archive but not a weights file"),
    "empty weights": (["--weights", "{d}/empty.pt"], r"the file is empty, not a weights file"),
}


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("command", ["search", "scan"])
@pytest.mark.parametrize("fault", sorted(DATA_FAULTS))
def test_data_and_weights_faults_name_the_culprit(files, fault, command, tmp_path, capsys):
    extra, pattern = DATA_FAULTS[fault]
    model = "newcomer_nets:rgb" if "folder:" in extra[-1] else "newcomer_nets:build"
    line, _ = _run([command, "--model", model, *extra], files, tmp_path / "out", capsys)
    assert re.search(pattern, line), line
    assert not (tmp_path / "out").exists()


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("data", ["{d}/corrupt", "{d}/nowhere"], ids=["corrupt image", "missing"])
def test_a_streamed_folder_names_the_corrupt_image_or_says_not_found(files, data, tmp_path, capsys):
    argv = ["search", "--model", "newcomer_nets:rgb", "--data", data, "--image-size", "8"]
    line, _ = _run(argv, files, tmp_path / "out", capsys)
    assert re.search(r"cannot read the image \S+corrupt/cat/0.png|nowhere: not found", line), line
    assert not (tmp_path / "out").exists()


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("command", ["search", "scan"])
@pytest.mark.parametrize(
    "extra",
    [["--classes", "0,1,12"], ["--seed", "-1"], ["--k", "0"], ["--alpha", "1.5"]],
    ids=["class", "seed", "k", "alpha"],
)
def test_a_failed_run_leaves_no_out_folder(files, command, extra, tmp_path, capsys):
    if command == "scan" and extra[0] in ("--k", "--alpha"):
        pytest.skip(f"scan takes no {extra[0]}")
    out = tmp_path / "deep" / "out"
    try:
        code = main([command, "--model", "newcomer_nets:build", *extra, "--out", str(out), "--no-progress"])
    except SystemExit as stop:  # a parse error (--seed -1) exits from the parser
        code = stop.code
    assert code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "deep").exists() and os.listdir(tmp_path) == []


@pytest.mark.usefixtures("one_thread")
def test_classes_take_names_and_the_mapping_is_printed(files, tmp_path, monkeypatch, capsys):
    def stop(*args, **kwargs):
        raise ValueError("stopped before the search")

    monkeypatch.setattr(cli_search, "search_classes", stop)
    argv = ["search", "--model", "newcomer_nets:rgb", "--data", "folder:{d}/images", "--classes", "fox,0"]
    line, printed = _run(argv, files, tmp_path / "out", capsys)
    assert "classes: 2 = fox, 0 = cat" in printed and "stopped before the search" in line
    line, _ = _run(argv[:-1] + ["fox,wolf"], files, tmp_path / "out", capsys)
    assert "--classes 'wolf' is neither a class number nor a class name" in line and "'2=fox'" in line
    line, _ = _run(argv[:-1] + ["fox,2"], files, tmp_path / "out", capsys)
    assert "names class 2 more than once" in line


def _collapsed_search(model, search, held_out, classes, settings, *, class_names, **kwargs):
    """What search_classes returns when every map collapsed: all-zero maps, patterns of filler."""
    k = settings.k
    canvases = search.images[: len(classes)]
    maps = torch.zeros_like(canvases)
    patterns = [top_k_pattern(maps[i], canvases[i], k) for i in range(len(classes))]  # warns, as a real search does
    rows = [
        ClassReport(class_=c, k=k, predictive_power=0.0, floor=0.0, random=0.0, name=class_names[c]) for c in classes
    ]
    return SearchOutcome(SearchReport(rows), canvases, maps, patterns)


@pytest.mark.usefixtures("one_thread")
def test_a_collapsed_map_is_one_plain_line_and_marked_in_the_figure(files, tmp_path, monkeypatch, capsys):
    drawn = {}
    original = cli_search.plot_class_patterns

    def plot(*args, **kwargs):
        drawn["names"] = kwargs["class_names"]
        return original(*args, **kwargs)

    monkeypatch.setattr(cli_search, "plot_class_patterns", plot)
    monkeypatch.setattr(cli_search, "search_classes", _collapsed_search)
    argv = ["search", "--model", "newcomer_nets:build", "--classes", "0,1", "--alpha", "0.3", "--k", "40"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the raw warning must not escape
        code = main(argv + ["--out", str(tmp_path / "out"), "--no-progress"])
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 0 and len(lines) == 1, captured.err
    assert lines[0].startswith("classpattern search: warning: the map of 2 class(es) collapsed")
    assert "0 (0 px), 1 (0 px)" in lines[0] and "Rerun with a larger --alpha (now 0.3, e.g. 0.6)" in lines[0]
    assert drawn["names"] == ["0\n(map collapsed)", "1\n(map collapsed)"]
    assert "classes: 0 = 0, 1 = 1" in captured.out and (tmp_path / "out" / "report.json").exists()


PNG = png_bytes(np.zeros((2, 2)))


def test_the_report_legend_names_only_the_columns_the_table_has():
    rows = [ClassReport(class_=0, k=5, predictive_power=0.5, floor=0.1, random=0.2, name="cat")]
    plain = search_page(SearchReport(rows), PNG, "classpattern search")
    assert "predictive power: share of held-out images" in plain
    assert "power low" not in plain and "Captum" not in plain
    rows[0].baselines = {"Saliency": 0.3}
    rows[0].power_interval, rows[0].measured = (0.2, 0.8), 10
    full = search_page(SearchReport(rows), PNG, "classpattern search")
    full = html.unescape(full)
    assert "Saliency: power of the top-k pixels of Captum's Saliency." in full
    assert "power low: lower end of the 95% Wilson" in full and "images measured:" in full
    text = legend(["class", "score", "flagged"], SCAN_COLUMNS)
    assert "blend anomaly index" not in text and text.count(": ") == 3

"""The classpattern command line: demo, search on a user's model, clear errors."""

import io
import json
import re
import sys
import textwrap

import pytest
import torch

from captum_classpattern import SearchReport, load_digits
from captum_classpattern.cli import _scan as cli_scan
from captum_classpattern.cli import _search as cli_search
from captum_classpattern.cli import main
from captum_classpattern.models import SmallCNN
from captum_classpattern.training import digits_model, train_classifier


@pytest.fixture(scope="module")
def user_model(tmp_path_factory):
    """A user's model: a factory module plus a weights file, as a user would pass them."""
    folder = tmp_path_factory.mktemp("user")
    (folder / "user_nets.py").write_text(
        textwrap.dedent("""
        from captum_classpattern.models import SmallCNN

        def build():
            return SmallCNN(1, 10, 8)
    """)
    )
    torch.manual_seed(0)
    data = load_digits()
    model = train_classifier(SmallCNN(1, 10, 8), data.train.images, data.train.labels, epochs=8, seed=0)
    torch.save(model.state_dict(), folder / "weights.pt")
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))


def _page_rows(path):
    """The first cell of each row of the HTML page's class table (its body, not the mean row)."""
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert all(src.startswith("data:image/png;base64,") for src in re.findall(r'<img[^>]* src="([^"]*)"', text))
    body = re.search(r"<tbody>(.*?)</tbody>", text, re.S).group(1)
    return re.findall(r"<tr><td[^>]*>([^<]*)</td>", body)


def test_search_writes_report_and_figure(user_model, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "search",
            "--model",
            "user_nets:build",
            "--weights",
            str(user_model / "weights.pt"),
            "--classes",
            "1,7",
            "--k",
            "0.05",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    report = SearchReport.from_json(out / "report.json")
    assert [row.class_ for row in report.classes] == [1, 7]
    row = report.classes[0]
    assert row.k == 51 and set(row.baselines) == {"Saliency", "IntegratedGradients"}
    assert 0.0 <= row.predictive_power <= 1.0 and report.test_accuracy > 0.5
    assert (out / "patterns.png").stat().st_size > 1000
    assert _page_rows(out / "report.html") == ["1", "7"]
    assert "mean" in capsys.readouterr().out
    raw = json.loads((out / "report.json").read_text())
    assert {"class", "k", "predictive_power", "floor", "random", "baselines"} <= set(raw["classes"][0])


@pytest.mark.slow  # trains the demo's CNN and searches all 10 classes with the default schedule
def test_demo_runs_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("CLASSPATTERN_CACHE", str(tmp_path / "cache"))
    code = main(["demo", "--out", str(tmp_path / "demo"), "--no-progress"])
    assert code == 0
    report = SearchReport.from_json(tmp_path / "demo" / "report.json")
    assert len(report.classes) == 10
    assert _page_rows(tmp_path / "demo" / "report.html") == [str(c) for c in range(10)]
    # The demo's headline: patterns beat random pixels and the better Captum baseline.
    assert report.mean("predictive_power") > 3 * report.mean("random")
    cached = list((tmp_path / "cache").iterdir())
    assert len(cached) == 1
    # A second demo reuses the trained model: loading it writes nothing and gives the same weights.
    stamp = cached[0].stat().st_mtime_ns
    again = digits_model()
    assert list((tmp_path / "cache").iterdir()) == cached and cached[0].stat().st_mtime_ns == stamp
    assert torch.equal(again.head.weight, digits_model().head.weight)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["search", "--model", "nomodule"], "module:factory"),
        (["search", "--model", "user_nets:missing"], "no callable"),
        (["search", "--model", "user_nets:build", "--data", "mnist"], "digits, cifar10:PATH or folder:PATH"),
        (["search", "--model", "user_nets:build", "--data", "cifar10:/nowhere"], "cifar-10-batches-py"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(user_model, argv, message, capsys, tmp_path):
    assert main(argv + ["--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self):
        return True


@pytest.mark.parametrize(
    "terminal, flags, shown",
    [(True, [], True), (True, ["--no-progress"], False), (False, [], False)],
)
@pytest.mark.parametrize("command", ["search", "scan"])
def test_progress_bars_only_on_a_terminal_and_without_no_progress(
    user_model, command, terminal, flags, shown, tmp_path, monkeypatch
):
    seen = {}

    def stop_here(*args, **kwargs):
        seen["show_progress"] = kwargs["show_progress"]
        raise KeyboardInterrupt  # stop before any work: main reports it and exits with 130

    monkeypatch.setattr(cli_search, "search_classes", stop_here)
    monkeypatch.setattr(cli_scan, "scan", stop_here)
    monkeypatch.setattr(sys, "stderr", _Terminal() if terminal else io.StringIO())
    argv = [command, "--model", "user_nets:build", "--weights", str(user_model / "weights.pt"), "--classes", "1,4,7"]
    assert main(argv + ["--out", str(tmp_path), *flags]) == 130
    assert seen == {"show_progress": shown}

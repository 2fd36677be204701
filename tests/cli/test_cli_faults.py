"""Every expected fault of ``classpattern search`` and ``scan``: one line on stderr, exit status 2, no traceback.

The faults are all found before any search or training, so each case takes a fraction of a
second; the model is an untrained tiny CNN, only its architecture matters.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest
import torch

from captum_classpattern.backdoor import SCORES, ScoringSettings
from captum_classpattern.cli import _main as cli_main
from captum_classpattern.cli import build_parser, main
from captum_classpattern.cli._output import publish
from captum_classpattern.models import SmallCNN

FACTORIES = textwrap.dedent(
    """
    from captum_classpattern.models import SmallCNN


    def build():
        return SmallCNN(1, 10, 8)


    def boom():
        raise RuntimeError("broken factory")
    """
)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A factory module and weights files of every kind, as a user would pass them."""
    folder = tmp_path_factory.mktemp("faults")
    (folder / "fault_nets.py").write_text(FACTORIES)
    torch.manual_seed(0)
    good = SmallCNN(1, 10, 8).state_dict()
    torch.save(good, folder / "good.pt")
    torch.save(SmallCNN(1, 10, 16).state_dict(), folder / "wide.pt")
    renamed = dict(good)
    renamed["extra"] = renamed.pop("features.0.weight")
    torch.save(renamed, folder / "keys.pt")
    data = (folder / "good.pt").read_bytes()
    (folder / "truncated.pt").write_bytes(data[: len(data) // 2])
    (folder / "garbage.pt").write_text("these are not weights\n")
    (folder / "afile").write_text("a file, not a folder\n")
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))


FAULTS = {
    "weights of another architecture": (
        [],
        ["--weights", "{d}/wide.pt"],
        r"does not fit fault_nets:build .*size mismatch",
    ),
    "wrong keys": (
        [],
        ["--weights", "{d}/keys.pt"],
        r"missing keys \['features.0.weight'\]; unexpected keys \['extra'\]",
    ),
    "truncated weights": (
        [],
        ["--weights", "{d}/truncated.pt"],
        r"--weights \S+ is not a usable state_dict: .*truncated",
    ),
    "garbage weights": ([], ["--weights", "{d}/garbage.pt"], r"not a file written by torch.save"),
    "weights folder": ([], ["--weights", "{d}"], r"--weights \S+ is a folder"),
    "missing weights": ([], ["--weights", "{d}/nowhere.pt"], r"--weights \S+nowhere.pt: not found: no such file"),
    "missing module": (["--model", "no_such_module:build"], [], r"no module named 'no_such_module'"),
    "no factory": (["--model", "fault_nets"], [], r"--model must look like module:factory"),
    "missing factory": (["--model", "fault_nets:nothing"], [], r"fault_nets has no callable nothing"),
    "factory raises": (["--model", "fault_nets:boom"], [], r"the factory raised RuntimeError: broken factory"),
    "cuda without a GPU": ([], ["--device", "cuda:0"], r"--device cuda:0: no CUDA GPU is available"),
    "not a device": ([], ["--device", "toaster"], r"--device 'toaster' is not a device name"),
    "unknown data": ([], ["--data", "mnist"], r"--data must be digits, cifar10:PATH or folder:PATH"),
    "cifar10 folder without the data": ([], ["--data", "cifar10:{d}"], r"--data cifar10:\S+: CIFAR-10 not found.*"),
    "class neither a number nor a name": (
        [],
        ["--classes", "1,x,3"],
        r"--classes 'x' is neither a class number nor a class name",
    ),
    "class out of range": ([], ["--classes", "1,3,12"], r"--classes 12 out of range: .*0 to 9"),
    "out is a file": ([], ["--out", "{d}/afile"], r"--out \S+afile is a file"),
    "out under a file": ([], ["--out", "{d}/afile/sub"], r"--out \S+sub: cannot create the folder"),
}


def assert_one_line_fault(code, err, pattern):
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert re.search(pattern, lines[0]), lines[0]


@pytest.mark.parametrize("command", ["search", "scan"])
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_each_fault_is_one_line_and_exit_2(files, fault, command, tmp_path, capsys):
    if fault == "cuda without a GPU" and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    model, extra, pattern = FAULTS[fault]
    argv = [command, *(model or ["--model", "fault_nets:build"]), "--no-progress"]
    argv += [arg.replace("{d}", str(files)) for arg in extra]
    if "--out" not in extra:
        argv += ["--out", str(tmp_path / "out")]
    assert_one_line_fault(main(argv), capsys.readouterr().err, pattern)
    # Nothing was searched or written.
    leftovers = [name for _, _, names in os.walk(tmp_path) for name in names]
    assert leftovers == []


def test_read_only_out_folder(files, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("this user (root?) may write into read-only folders")
        code = main(["search", "--model", "fault_nets:build", "--out", str(locked / "out")])
        assert_one_line_fault(code, capsys.readouterr().err, r"--out \S+: cannot create the folder")
        code = main(["scan", "--model", "fault_nets:build", "--out", str(locked)])
        assert_one_line_fault(code, capsys.readouterr().err, r"--out \S+locked is not writable")
    finally:
        locked.chmod(0o700)


def test_scan_faults_of_its_own(files, tmp_path, capsys):
    out = ["--out", str(tmp_path)]
    cases = [
        (["--model", "fault_nets:build", "--classes", "1,2"], r"needs at least three"),
        (["--demo-backdoor", "--data", "cifar10:x"], r"--demo-backdoor trains on the digits"),
        (["--demo-backdoor", "--size", "10"], r"--size must be a multiple of 4"),
        (["--demo-backdoor", "--demo-target", "10"], r"--demo-target must be a digit class"),
        (["--demo-backdoor", "--weights", "w.pt"], r"--weights needs --model"),
        (["--model", "fault_nets:build", "--score", "nope"], r"argument --score: invalid choice: 'nope'"),
        (["--model", "fault_nets:build", "--steps", "0"], r"argument --steps: must be a positive integer"),
        (["--demo-backdoor", "--reference-weights", "w.pt"], r"--reference-weights needs --model"),
        (
            ["--model", "fault_nets:build", "--reference-weights", str(files / "truncated.pt")],
            r"truncated\.pt is not a usable state_dict",
        ),
        (["--model", "fault_nets:build", "--blend-steps", "-1"], r"argument --blend-steps: must be"),
    ]
    for argv, pattern in cases:
        try:
            code = main(["scan", *argv, *out])
        except SystemExit as stop:  # argparse's own errors
            code = stop.code
        assert_one_line_fault(code, capsys.readouterr().err, pattern)


def test_parse_errors_are_one_line_too(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["search", "--model", "fault_nets:build", "--k", "many"])
    assert_one_line_fault(stop.value.code, capsys.readouterr().err, r"argument --k: must be a number of pixels")


def test_the_real_console_sees_one_line_and_debug_shows_the_traceback(files, tmp_path, capsys):
    command = [sys.executable, "-m", "captum_classpattern.cli", "search", "--model", "fault_nets:build"]
    command += ["--weights", "truncated.pt", "--out", str(tmp_path / "out"), "--no-progress"]
    done = subprocess.run(command, cwd=files, capture_output=True, text=True, timeout=120)
    assert_one_line_fault(done.returncode, done.stderr, r"truncated\.pt is not a usable state_dict")
    assert done.stdout == ""

    code = main(["search", "--model", "fault_nets:boom", "--out", str(tmp_path), "--debug"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" in err and "RuntimeError: broken factory" in err
    assert err.strip().splitlines()[-1].startswith("classpattern search: error: --model fault_nets:boom")


def test_unexpected_errors_keep_their_traceback_and_ctrl_c_is_one_line(files, tmp_path, monkeypatch, capsys):
    def bug(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli_main, "run_user_search", bug)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["search", "--model", "fault_nets:build", "--out", str(tmp_path)])

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_main, "run_user_search", interrupted)
    assert main(["search", "--model", "fault_nets:build", "--out", str(tmp_path)]) == 130
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["classpattern search: interrupted; finished chunks are kept: rerun with --resume"]


def test_scan_score_choices_are_the_scoring_settings_scores():
    for score in SCORES:
        assert ScoringSettings(score=score).score == score
    with pytest.raises(ValueError) as refused:
        ScoringSettings(score="no such score")
    assert set(re.findall(r"'(\w+)'", str(refused.value))) == set(SCORES)
    args = build_parser().parse_args(["scan", "--demo-backdoor"])
    assert args.score == ScoringSettings().score == "power_auc"
    assert build_parser().parse_args(["scan", "--demo-backdoor", "--score", "power_auc"]).score == "power_auc"


def _write(text):
    def write(path):
        with open(path, "w") as stream:
            stream.write(text)

    return write


def test_results_appear_together_or_not_at_all(tmp_path):
    def half_then_fail(path):
        _write("half")(path)
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        publish(str(tmp_path), [("figure.png", _write("png")), ("report.json", half_then_fail)])
    assert os.listdir(tmp_path) == []  # no figure without its report, no temporary file left
    written = publish(str(tmp_path), [("figure.png", _write("png")), ("report.json", _write("{}"))])
    assert written == [str(tmp_path / "figure.png"), str(tmp_path / "report.json")]
    assert sorted(os.listdir(tmp_path)) == ["figure.png", "report.json"]

"""``classpattern scan --reference-weights``: the user's clean reference models take part in the scan."""

import json
import re

import pytest
import torch

from captum_classpattern.backdoor import ScanResult
from captum_classpattern.cli import main
from captum_classpattern.models import SmallCNN

pytestmark = pytest.mark.usefixtures("one_thread")


def test_reference_weights_are_loaded_and_compared(install_user_model, tmp_path, capsys):
    install_user_model("scan_ref_nets", 1, 10, 8)
    torch.manual_seed(1)
    torch.save(SmallCNN(1, 10, 8).state_dict(), tmp_path / "reference.pt")
    argv = ["scan", "--model", "scan_ref_nets:build", "--weights", "model.pt", "--reference-weights", "reference.pt"]
    argv += ["--steps", "4", "--blend-steps", "3", "--max-eval", "20", "--out", str(tmp_path / "out"), "--no-progress"]
    assert main(argv) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "blend" in printed.splitlines()[0]
    report = json.loads((tmp_path / "out" / "scan.json").read_text())
    assert report["reference_weights"] == ["reference.pt"]
    result = ScanResult.from_dict(report["result"])
    assert len(result.reference_tables) == 1 and len(result.blend.reference_tables) == 1
    assert len(result.blend_anomaly_index) == 10


def test_blend_probe_can_be_switched_off(install_user_model, tmp_path, capsys):
    install_user_model("scan_off_nets", 1, 10, 8)
    argv = [
        "scan",
        "--model",
        "scan_off_nets:build",
        "--weights",
        "model.pt",
        "--blend-steps",
        "0",
        "--warp-steps",
        "0",
    ]
    argv += ["--steps", "4", "--max-eval", "20", "--out", str(tmp_path / "out"), "--no-progress"]
    assert main(argv) == 0, capsys.readouterr().err
    result = ScanResult.from_dict(json.loads((tmp_path / "out" / "scan.json").read_text())["result"])
    assert result.blend is None and result.warp is None and result.reference_tables == []
    # Without the probes the table has no probe columns, and every number has three decimals.
    header, *rows = capsys.readouterr().out.splitlines()[:11]
    assert header.split() == ["class", "score", "anomaly", "k", "power", "flagged"]
    assert all(re.fullmatch(r"\S+ +-?\d+\.\d{3} +-?\d+\.\d{3} +\d+ +\d\.\d{3}(  <-- flagged)?", r) for r in rows), rows


def test_two_references_floor_the_index_unless_told_not_to(install_user_model, tmp_path, capsys):
    install_user_model("scan_two_ref_nets", 1, 10, 8)
    for seed in (1, 2):
        torch.manual_seed(seed)
        torch.save(SmallCNN(1, 10, 8).state_dict(), tmp_path / f"reference{seed}.pt")
    argv = ["scan", "--model", "scan_two_ref_nets:build", "--weights", "model.pt", "--reference-weights"]
    argv += ["reference1.pt", "reference2.pt", "--steps", "4", "--blend-steps", "3", "--max-eval", "20"]
    argv += ["--no-progress"]
    results = {}
    for name, extra in (("floored", []), ("plain", ["--no-reference-spread"])):
        assert main(argv + extra + ["--out", str(tmp_path / name)]) == 0, capsys.readouterr().err
        results[name] = ScanResult.from_dict(json.loads((tmp_path / name / "scan.json").read_text())["result"])
        assert "relative to 2 reference models" in (tmp_path / name / "scan.html").read_text()
    floored, plain = results["floored"], results["plain"]
    assert floored.scoring.reference_spread and floored.reference_spread > 0
    assert floored.blend_reference_spread is not None
    assert plain.scoring.reference_spread is False and plain.reference_spread is None
    assert all(a <= b + 1e-12 for a, b in zip(floored.anomaly_index, plain.anomaly_index))
    assert set(floored.flagged) <= set(plain.flagged)

"""The search report: JSON round trip, table, atomic file, clear errors."""

import json

import pytest

from captum_classpattern import SearchReport
from captum_classpattern.pipeline import ClassReport


def test_report_round_trip(tmp_path):
    report = SearchReport(
        [
            ClassReport(
                class_=0, k=51, predictive_power=0.5, floor=0.0, random=0.1, baselines={"Saliency": 0.2}, name="zero"
            )
        ],
        test_accuracy=0.9,
    )
    path = tmp_path / "out" / "report.json"
    report.to_json(path)
    raw = json.loads(path.read_text())
    assert set(raw["classes"][0]) >= {"class", "k", "predictive_power", "floor", "random", "baselines"}
    assert SearchReport.from_json(path) == report
    assert "mean" in report.table()
    assert list(tmp_path.joinpath("out").iterdir()) == [path]  # no temporary file left behind
    path.write_text("[]")
    with pytest.raises(ValueError, match="not a classpattern search report"):
        SearchReport.from_json(path)

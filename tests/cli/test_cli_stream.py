"""``classpattern search --data DIR``: an image folder streamed by a DataLoader, power at a budget, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from torchvision import datasets  # noqa: F401  (its first import costs seconds: paid at collection, not in a test)

from captum_classpattern.cli import main

ARGS = ["search", "--model", "stream_nets:build", "--weights", "model.pt", "--schedule", "paper", "--no-progress"]

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore:only .* pixels asked for have a positive score"),  # an untrained model
]


@pytest.fixture
def user_folder(tmp_path, install_user_model):
    """A factory module, its weights and an image folder of three classes of six PNGs, in the current folder."""
    install_user_model("stream_nets", in_channels=3, num_classes=3, width=4)
    generator = np.random.default_rng(0)
    for cls in ("cat", "dog", "fox"):
        (tmp_path / "images" / cls).mkdir(parents=True)
        for i in range(6):
            pixels = generator.integers(0, 256, (14, 14, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "images" / cls / f"{i}.png")
    return tmp_path


def test_search_streams_an_image_folder_with_power_at_a_budget(user_folder, capsys):
    argv = ARGS + ["--data", "images", "--image-size", "12", "--power-images", "2", "--workers", "1", "--out", "out"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "power CI" in printed and "test accuracy on 9 held-out images" in printed
    report = json.loads((user_folder / "out" / "report.json").read_text())
    assert [row["name"] for row in report["classes"]] == ["cat", "dog", "fox"]
    for row in report["classes"]:
        low, high = row["power_interval"]
        assert 0 <= low <= row["predictive_power"] <= high <= 1 and row["measured"] == 4
    assert report["settings"]["streamed"] and report["settings"]["power_images"] == 2
    assert "power low" in (user_folder / "out" / "report.html").read_text()


def test_a_streamed_folder_search_resumes(user_folder, capsys):
    argv = ARGS + ["--data", "images", "--image-size", "12", "--chunk-size", "1", "--out", "out"]
    assert main(argv) == 0
    first = (user_folder / "out" / "report.json").read_text()
    assert main(argv + ["--resume"]) == 0
    assert json.loads(first)["classes"] == json.loads((user_folder / "out" / "report.json").read_text())["classes"]


@pytest.mark.parametrize(
    "data, message",
    [
        ("./nowhere", "--data ./nowhere: not found: no such folder"),
        ("model.pt/", "is a file"),
        ("empty", "--data empty: Couldn't find any class folder"),
        ("mnist", "--data must be digits, cifar10:PATH or folder:PATH"),
    ],
)
def test_a_missing_file_or_empty_folder_is_one_line(user_folder, capsys, data, message):
    (user_folder / "empty").mkdir()
    if data == "model.pt/":
        data = str(user_folder / "model.pt")
    assert main(ARGS + ["--data", data, "--out", "out"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_bad_stream_options_are_refused(user_folder, capsys):
    with pytest.raises(SystemExit) as stop:
        main(ARGS + ["--data", "images", "--workers", "-1"])
    assert stop.value.code == 2 and "--workers: must be an integer >= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(ARGS + ["--data", "images", "--power-images", "0"])


def test_the_report_says_where_the_time_went_and_that_each_image_was_decoded_once(user_folder, capsys):
    argv = ARGS + ["--data", "images", "--image-size", "12", "--threads", "1", "--out", "out"]
    assert main(argv) == 0
    settings = json.loads((user_folder / "out" / "report.json").read_text())["settings"]
    phases = settings["phase_seconds"]
    assert {"load", "canvas choice", "search", "measurement", "baselines", "figure"} <= set(phases)
    assert all(seconds >= 0 for seconds in phases.values()) and phases["search"] > 0
    assert settings["threads"]["policy"] == "set_threads(1)"
    images = settings["images"]  # 18 images, halved into search and held-out: each decoded once
    assert images["decoded"] == 18 and images["reused"] > 0
    assert "phase_seconds" in (user_folder / "out" / "report.html").read_text()


@pytest.mark.parametrize("value", ["0", "many", "-2"])
def test_a_bad_thread_count_is_one_line(user_folder, capsys, value):
    with pytest.raises(SystemExit) as exit_:
        main(ARGS + ["--data", "images", "--threads", value])
    assert exit_.value.code == 2
    assert "--threads: must be auto, torch or a positive integer" in capsys.readouterr().err

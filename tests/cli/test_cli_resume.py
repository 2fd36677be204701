"""A ``classpattern search`` killed after its first chunk resumes to the uninterrupted result, bit for bit.

The run is killed for real: the private environment variable
``CLASSPATTERN_TEST_EXIT_AFTER_CHUNKS=1`` makes the process exit hard (``os._exit``) right after
its first checkpoint is written, with no clean-up, as a killed job would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from captum_classpattern.cli import _search as cli_search
from captum_classpattern.cli import main

ARGS = ["search", "--model", "resume_nets:build", "--weights", "model.pt", "--classes", "0,3,7", "--no-progress"]

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore:only .* pixels asked for have a positive score"),  # an untrained model
]


@pytest.fixture
def user_folder(tmp_path, install_user_model):
    """A factory module and weights in the current folder (untrained: only determinism matters here)."""
    install_user_model("resume_nets", in_channels=1, num_classes=10, width=8)
    return tmp_path


def _maps(checkpoints):
    """Class position -> map, from every chunk file of a checkpoint folder."""
    maps = {}
    for name in sorted(os.listdir(checkpoints)):
        if name.startswith("classes-"):
            start = int(name.split("-")[1])
            chunk = torch.load(checkpoints / name, weights_only=True)
            maps.update({start + i: chunk["maps"][i] for i in range(len(chunk["maps"]))})
    return maps


@pytest.mark.slow  # end to end: a real process killed, then three default-schedule searches
def test_a_killed_search_resumes_to_the_uninterrupted_result(user_folder, capsys):
    env = dict(os.environ, CLASSPATTERN_TEST_EXIT_AFTER_CHUNKS="1", OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "captum_classpattern.cli", *ARGS, "--chunk-size", "1", "--out", "run"]
    killed = subprocess.run(command, cwd=user_folder, env=env, capture_output=True, text=True, timeout=120)
    assert killed.returncode == 3, killed.stderr
    checkpoints = user_folder / "run" / "checkpoints"
    assert sorted(os.listdir(checkpoints)) == ["classes-000000-000001.pt", "manifest.json"]
    assert sorted(os.listdir(user_folder / "run")) == ["checkpoints"]  # no report, no figure
    stamp = (checkpoints / "classes-000000-000001.pt").stat().st_mtime_ns

    assert main([*ARGS, "--chunk-size", "1", "--out", "run", "--resume"]) == 0
    assert main([*ARGS, "--out", "clean"]) == 0
    capsys.readouterr()
    assert (checkpoints / "classes-000000-000001.pt").stat().st_mtime_ns == stamp  # loaded, not searched again
    resumed = json.loads((user_folder / "run" / "report.json").read_text())
    clean = json.loads((user_folder / "clean" / "report.json").read_text())
    assert resumed["classes"] == clean["classes"] and resumed["test_accuracy"] == clean["test_accuracy"]
    resumed_maps, clean_maps = _maps(checkpoints), _maps(user_folder / "clean" / "checkpoints")
    assert sorted(resumed_maps) == sorted(clean_maps) == [0, 1, 2]
    assert all(torch.equal(resumed_maps[i], clean_maps[i]) for i in range(3))
    assert (user_folder / "run" / "patterns.png").stat().st_size > 1000

    # Resuming with other settings is refused, in one line, and leaves the checkpoints alone.
    assert main([*ARGS, "--out", "run", "--resume", "--seed", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "belong to another run (seed 0 now 1)" in err[0]
    assert len(os.listdir(checkpoints)) == 4


@pytest.mark.parametrize("failing", [".png", ".html"])
def test_a_failed_figure_or_page_leaves_no_report(failing, user_folder, monkeypatch, capsys):
    write = cli_search.write_atomic

    def disk_full(path, data):
        if str(path).endswith(failing):
            raise OSError(28, "No space left on device")
        write(path, data)

    monkeypatch.setattr(cli_search, "write_atomic", disk_full)
    # The fast schedule: what happens after the search is under test, not the search itself.
    assert main([*ARGS, "--schedule", "fast", "--out", "out"]) == 2
    assert "No space left on device" in capsys.readouterr().err
    # No report, page or figure, no temporary file: the search itself is kept.
    assert sorted(os.listdir(user_folder / "out")) == ["checkpoints"]

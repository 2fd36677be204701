"""Resuming never deletes finished work: a missing or unreadable manifest, a folder that is a file.

Each fault goes through every entry point that resumes: :func:`search_classes` and
``classpattern search --resume`` (whose checkpoints live in ``OUT/checkpoints``). The chunk
files are written by hand: the faults are found before any chunk is read or searched.
"""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch

from captum_classpattern.attr import SearchSchedule
from captum_classpattern.cli import main
from captum_classpattern.data import Split
from captum_classpattern.models import SmallCNN
from captum_classpattern.pipeline import search_classes

CHUNKS = ("classes-000000-000001.pt", "classes-000001-000002.pt")
FACTORY = "from captum_classpattern.models import SmallCNN\n\n\ndef build():\n    return SmallCNN(1, 10, 4)\n"


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A user's model factory in the current folder, and a checkpoint folder under ``out``."""
    (tmp_path / "safety_nets.py").write_text(textwrap.dedent(FACTORY))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("safety_nets", None)
    return tmp_path


def _library(folder, capsys):
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    data = Split(torch.rand(20, 1, 8, 8, generator=generator), torch.arange(20) % 10)
    with pytest.raises((ValueError, TypeError)) as caught:
        search_classes(
            SmallCNN(1, 10, 4).eval(),
            data,
            data,
            [0, 1],
            schedule=SearchSchedule(steps=2),
            baselines=(),
            show_progress=False,
            checkpoint_dir=folder,
            chunk_size=1,
            resume=True,
        )
    return str(caught.value)


def _command_line(folder, capsys):
    out = folder.parent
    argv = ["search", "--model", "safety_nets:build", "--classes", "0,1", "--chunk-size", "1", "--resume"]
    code = main(argv + ["--out", str(out), "--no-progress", "--schedule", "fast"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


ENTRY_POINTS = [("search_classes", _library), ("classpattern search", _command_line)]
IDS = [name for name, _ in ENTRY_POINTS]


def _chunks(folder):
    folder.mkdir(parents=True)
    for name in CHUNKS:
        (folder / name).write_bytes(b"finished work")


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name, run", ENTRY_POINTS, ids=IDS)
def test_resuming_without_a_manifest_keeps_every_finished_chunk(name, run, project, capsys):
    folder = project / "out" / "checkpoints"
    _chunks(folder)
    message = run(folder, capsys)
    assert "manifest (manifest.json) is missing" in message and "nothing was deleted" in message
    assert "start afresh without resume" in message and "without --resume" in message
    assert sorted(p.name for p in folder.iterdir()) == list(CHUNKS)
    assert all((folder / name).read_bytes() == b"finished work" for name in CHUNKS)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name, run", ENTRY_POINTS, ids=IDS)
def test_an_unreadable_manifest_is_an_error_that_keeps_the_chunks(name, run, project, capsys):
    folder = project / "out" / "checkpoints"
    _chunks(folder)
    (folder / "manifest.json").write_bytes(b"\x00{ not json")
    message = run(folder, capsys)
    assert "cannot read the checkpoint manifest" in message and "nothing was deleted" in message
    assert sorted(p.name for p in folder.iterdir()) == sorted(CHUNKS + ("manifest.json",))


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name, run", ENTRY_POINTS, ids=IDS)
def test_a_checkpoint_folder_that_is_a_file_is_a_message(name, run, project, capsys):
    folder = project / "out" / "checkpoints"
    folder.parent.mkdir()
    folder.write_text("not a folder")
    message = run(folder, capsys)
    assert "is a file, not a folder" in message and "FileExistsError" not in message
    assert folder.read_text() == "not a folder"


@pytest.mark.usefixtures("one_thread")
def test_resume_on_an_empty_folder_starts_the_run(project):
    # Not a fault: the first run of a job script that always passes resume=True.
    generator = torch.Generator().manual_seed(0)
    data = Split(torch.rand(20, 1, 8, 8, generator=generator), torch.arange(20) % 10)
    torch.manual_seed(0)
    outcome = search_classes(
        SmallCNN(1, 10, 4).eval(),
        data,
        data,
        [0, 1],
        schedule=SearchSchedule(steps=2),
        baselines=(),
        show_progress=False,
        checkpoint_dir=project / "fresh",
        chunk_size=1,
        resume=True,
    )
    assert len(outcome.report.classes) == 2
    assert sorted(p.name for p in (project / "fresh").iterdir()) == [*CHUNKS, "manifest.json"]

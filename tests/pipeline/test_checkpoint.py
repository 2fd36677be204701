"""Checkpointed, chunked and resumed searches give the outcome of one uninterrupted call, bit for bit."""

from __future__ import annotations

import json
import os

import pytest
import torch

from captum_classpattern.attr import SearchSchedule
from captum_classpattern.data import Split
from captum_classpattern.pipeline import search_classes

SETTINGS = dict(schedule=SearchSchedule(steps=15), baselines=("Saliency",), seed=2, show_progress=False)
CLASSES = [0, 2, 5, 7, 9]

pytestmark = pytest.mark.usefixtures("one_thread")


def assert_same_outcome(first, second):
    assert first.report == second.report
    assert torch.equal(first.maps, second.maps) and torch.equal(first.canvases, second.canvases)
    assert len(first.patterns) == len(second.patterns)
    for a, b in zip(first.patterns, second.patterns):
        assert torch.equal(a.mask, b.mask) and torch.equal(a.values, b.values)


@pytest.fixture(scope="module")
def uninterrupted(trained_digits_model, digits16):
    """The plain call, without chunks or checkpoints: the reference."""
    return search_classes(trained_digits_model, digits16.search, digits16.eval, CLASSES, **SETTINGS)


def _run(model, data, folder, **extra):
    return search_classes(model, data.search, data.eval, CLASSES, checkpoint_dir=folder, **SETTINGS, **extra)


def test_chunks_checkpoints_and_resume_change_nothing(trained_digits_model, digits16, uninterrupted, tmp_path):
    folder = tmp_path / "ckpt"
    chunked = _run(trained_digits_model, digits16, folder, chunk_size=2)
    assert_same_outcome(chunked, uninterrupted)
    names = sorted(os.listdir(folder))
    assert names == [
        "classes-000000-000002.pt",
        "classes-000002-000004.pt",
        "classes-000004-000005.pt",
        "manifest.json",
    ]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["classes"] == CLASSES and manifest["seed"] == 2 and manifest["schedule"]["steps"] == 15
    assert {"model", "search_data", "held_out_data", "package_version", "k", "baselines"} <= set(manifest)

    # A lost chunk is searched again, the others are loaded; a resume with another chunk size also fits.
    os.remove(folder / "classes-000002-000004.pt")
    stamp = (folder / "classes-000000-000002.pt").stat().st_mtime_ns
    resumed = _run(trained_digits_model, digits16, folder, chunk_size=3, resume=True)
    assert_same_outcome(resumed, uninterrupted)
    assert (folder / "classes-000000-000002.pt").stat().st_mtime_ns == stamp  # loaded, not rewritten
    assert (folder / "classes-000002-000004.pt").exists()

    # Without resume the folder's checkpoints are replaced by the new run's.
    again = _run(trained_digits_model, digits16, folder)
    assert_same_outcome(again, uninterrupted)
    assert sorted(os.listdir(folder)) == ["classes-000000-000005.pt", "manifest.json"]


def test_chunks_without_checkpoints(trained_digits_model, digits16, uninterrupted):
    chunked = search_classes(trained_digits_model, digits16.search, digits16.eval, CLASSES, chunk_size=2, **SETTINGS)
    assert_same_outcome(chunked, uninterrupted)


def test_resuming_another_run_is_refused(trained_digits_model, digits16, tmp_path):
    folder = tmp_path / "ckpt"
    _run(trained_digits_model, digits16, folder, chunk_size=5)
    model, data = trained_digits_model, digits16
    with pytest.raises(ValueError, match=r"belong to another run \(seed 2 now 3\)"):
        search_classes(
            model, data.search, data.eval, CLASSES, checkpoint_dir=folder, resume=True, **dict(SETTINGS, seed=3)
        )
    with pytest.raises(ValueError, match=r"k 0.05 now 0.1"):
        _run(model, data, folder, resume=True, k=0.1)
    with pytest.raises(ValueError, match=r"schedule"):
        search_classes(
            model,
            data.search,
            data.eval,
            CLASSES,
            checkpoint_dir=folder,
            resume=True,
            **dict(SETTINGS, schedule=SearchSchedule(steps=16)),
        )
    with pytest.raises(ValueError, match=r"classes \[0, 2, 5, 7, 9\] now \[0, 2\]"):
        search_classes(model, data.search, data.eval, [0, 2], checkpoint_dir=folder, resume=True, **SETTINGS)
    with pytest.raises(ValueError, match=r"held_out_data"):
        fewer = Split(data.eval.images[:-1], data.eval.labels[:-1])
        search_classes(model, data.search, fewer, CLASSES, checkpoint_dir=folder, resume=True, **SETTINGS)
    with pytest.raises(ValueError, match=r"search_data"):  # the same images in another order
        flipped = Split(data.search.images.flip(0), data.search.labels.flip(0))
        search_classes(model, flipped, data.eval, CLASSES, checkpoint_dir=folder, resume=True, **SETTINGS)
    other = type(model)(in_channels=1, num_classes=10, width=8)
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        other.head.bias.add_(0.01)
    with pytest.raises(ValueError, match=r"\(model "):
        _run(other.eval(), data, folder, resume=True)
    # The refusals left the checkpoints alone: the right settings still resume.
    assert len(os.listdir(folder)) == 2
    _run(model, data, folder, resume=True)


def test_damaged_checkpoints_are_reported(trained_digits_model, digits16, tmp_path):
    folder = tmp_path / "ckpt"
    _run(trained_digits_model, digits16, folder, chunk_size=3)
    (folder / "classes-000000-000003.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="classes-000000-000003.pt is unreadable .*delete it"):
        _run(trained_digits_model, digits16, folder, resume=True)
    (folder / "manifest.json").write_text("[]")
    with pytest.raises(ValueError, match="not a checkpoint manifest"):
        _run(trained_digits_model, digits16, folder, resume=True)


def test_bad_checkpoint_arguments(trained_digits_model, digits16, tmp_path):
    model, data = trained_digits_model, digits16
    with pytest.raises(ValueError, match="resume=True needs the checkpoint_dir"):
        search_classes(model, data.search, data.eval, CLASSES, resume=True, **SETTINGS)
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        search_classes(model, data.search, data.eval, CLASSES, chunk_size=0, **SETTINGS)
    # Resuming from an empty folder simply starts the run.
    assert len(_run(model, data, tmp_path / "fresh", resume=True).patterns) == len(CLASSES)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_stochastic_captum_baseline_does_not_depend_on_the_classes_searched_before(trained_digits_model, digits16):
    """Lime draws its samples from the global generator; each class's draws are seeded by the seed and the class."""
    settings = dict(SETTINGS, schedule=SearchSchedule(steps=3), baselines=("Lime",))
    model, data = trained_digits_model, digits16
    together = search_classes(model, data.search, data.eval, [0, 1, 2, 3], **settings)
    later = search_classes(model, data.search, data.eval, [2, 3], **settings)
    assert together.report.classes[2:] == later.report.classes

"""search_classes takes grouped settings (ClassSearchSettings, Chunking); the older keywords give the same outcome."""

from __future__ import annotations

import inspect

import pytest
import torch

from captum_classpattern.attr import SearchSchedule
from captum_classpattern.pipeline import Chunking, ClassSearchSettings, search_classes

pytestmark = pytest.mark.usefixtures("one_thread")
SHORT = SearchSchedule(steps=4)
COMMON = dict(baselines=(), seed=3, show_progress=False)


def test_grouped_and_older_keywords_give_the_same_outcome(trained_digits_model, digits16, tmp_path):
    data = digits16
    older = search_classes(
        trained_digits_model, data.search, data.eval, [1, 4], k=9, schedule=SHORT, canvas_strategy="index",
        checkpoint_dir=tmp_path / "a", chunk_size=1, **COMMON,
    )  # fmt: skip
    grouped = search_classes(
        trained_digits_model, data.search, data.eval, [1, 4], ClassSearchSettings(9, SHORT, "index"),
        chunks=Chunking(tmp_path / "b", chunk_size=1), **COMMON,
    )  # fmt: skip
    assert older.report == grouped.report and torch.equal(older.maps, grouped.maps)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == sorted(p.name for p in (tmp_path / "a").iterdir())
    assert len(inspect.signature(search_classes).parameters) <= 10


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(settings=ClassSearchSettings(), k=5), TypeError, "settings= or the older k="),
        (dict(chunks=Chunking(), resume=True), TypeError, "chunks= or the older resume="),
        (dict(settings={"k": 5}), TypeError, "settings must be a ClassSearchSettings"),
        (dict(chunks="ckpt"), TypeError, "chunks must be a Chunking"),
        (dict(chunks=Chunking(resume=True)), ValueError, "resume=True needs the checkpoint_dir"),
    ],
)
def test_bad_groups_are_refused(trained_digits_model, digits16, kwargs, error, match):
    with pytest.raises(error, match=match):
        search_classes(trained_digits_model, digits16.search, digits16.eval, [1, 4], **COMMON, **kwargs)


def test_class_search_settings_check_their_fields():
    with pytest.raises(ValueError, match="schedule must be"):
        ClassSearchSettings(schedule="slow")
    with pytest.raises(ValueError, match="canvas_strategy"):
        ClassSearchSettings(canvas_strategy="random")
    assert ClassSearchSettings().replace(schedule="fast").schedule == "fast"

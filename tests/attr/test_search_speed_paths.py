"""The fast paths of the search give the same numbers as the general ones, and the new settings."""

import numpy as np
import pytest
import torch

from captum_classpattern import (
    DEFAULT_SCHEDULE,
    PAPER_SCHEDULE,
    ClassPattern,
    SearchSchedule,
    select_canvases,
)
from captum_classpattern.attr import ForwardSettings
from captum_classpattern.attr._search_data import TensorSearchSet

CLASSES = [2, 5, 8]


@pytest.fixture
def canvases(trained_digits_model, digits16):
    return select_canvases(trained_digits_model, digits16.search.images, digits16.search.labels, CLASSES)


def _search(model, data, canvases, **kwargs):
    kwargs = {"baselines": data.search.images, "baseline_labels": data.search.labels, "seed": 1, **kwargs}
    return ClassPattern(model).attribute(canvases, **kwargs)


def test_batched_equals_alone_bit_for_bit_with_epochs_and_annealing(trained_digits_model, digits16, canvases):
    # Classes have different numbers of other-class images: the epochs end on different
    # steps (partial batches, the gathered path) and each canvas anneals over its own length.
    schedule = PAPER_SCHEDULE.replace(epochs=1, step_size=0.05, final_step_size=0.005)
    together = _search(trained_digits_model, digits16, canvases, target=CLASSES, schedule=schedule)
    for i, c in enumerate(CLASSES):
        alone = _search(trained_digits_model, digits16, canvases[i : i + 1], target=c, schedule=schedule)
        assert torch.equal(together[i : i + 1], alone)


def test_default_schedule_batched_equals_alone_bit_for_bit(trained_digits_model, digits16, canvases):
    schedule = DEFAULT_SCHEDULE.replace(steps=20)
    together = _search(trained_digits_model, digits16, canvases, target=CLASSES, schedule=schedule)
    alone = torch.cat(
        [
            _search(trained_digits_model, digits16, canvases[i : i + 1], target=c, schedule=schedule)
            for i, c in enumerate(CLASSES)
        ]
    )
    assert torch.equal(together, alone)


def test_gathered_and_broadcast_composites_agree(linear_model, toy_split):
    # max_forward_batch forces the gathered path; without it every step is broadcast.
    kwargs = dict(
        target=[0, 1],
        baselines=toy_split.images,
        baseline_labels=toy_split.labels,
        seed=2,
        schedule=SearchSchedule(batch_size=4, steps=6),
    )
    broadcast = ClassPattern(linear_model).attribute(toy_split.images[:2], **kwargs)
    gathered = ClassPattern(linear_model).attribute(toy_split.images[:2], max_forward_batch=3, **kwargs)
    torch.testing.assert_close(broadcast, gathered, atol=1e-6, rtol=0)


def test_canvases_of_one_class_share_their_stream(trained_digits_model, digits16, canvases):
    schedule = DEFAULT_SCHEDULE.replace(steps=10)
    pair = _search(trained_digits_model, digits16, canvases[[0, 0]], target=[CLASSES[0]] * 2, schedule=schedule)
    one = _search(trained_digits_model, digits16, canvases[:1], target=CLASSES[0], schedule=schedule)
    assert torch.equal(pair[:1], one) and torch.equal(pair[1:], one)
    search_set = TensorSearchSet(digits16.search.images, digits16.search.labels, torch.tensor([3, 3, 4]), 2, 0)
    assert len(search_set._pools) == 2 and search_set.pool_sizes()[0] == search_set.pool_sizes()[1]


def test_stats_report_throughput(trained_digits_model, digits16, canvases):
    explainer = ClassPattern(trained_digits_model)
    explainer.attribute(
        canvases,
        target=CLASSES,
        baselines=digits16.search.images,
        baseline_labels=digits16.search.labels,
        schedule=DEFAULT_SCHEDULE.replace(steps=3),
    )
    stats = explainer.last_stats
    assert stats.images_forwarded == 3 * len(CLASSES) * DEFAULT_SCHEDULE.batch_size
    assert stats.images_per_second > 0


def test_annealed_step_sizes():
    schedule = SearchSchedule(step_size=0.1, final_step_size=0.01, steps=10)
    assert schedule.step_size_at(0.0) == pytest.approx(0.1)
    assert schedule.step_size_at(0.5) == pytest.approx(0.055)
    assert schedule.step_size_at(1.0) == pytest.approx(0.01)
    assert PAPER_SCHEDULE.final_step_size is None and not PAPER_SCHEDULE.anneals
    assert PAPER_SCHEDULE.step_size_at(0.7) == 0.02
    assert SearchSchedule() == DEFAULT_SCHEDULE and DEFAULT_SCHEDULE.anneals
    with pytest.raises(ValueError, match="final_step_size"):
        SearchSchedule(final_step_size=-0.1)


def test_annealing_over_an_iterable_of_unknown_length_is_refused(linear_model, toy_split):
    def batches():
        yield toy_split.images, toy_split.labels

    explainer = ClassPattern(linear_model)
    with pytest.raises(ValueError, match="needs the number of steps"):
        explainer.attribute(
            toy_split.images[:1], target=0, baselines=batches(), schedule=SearchSchedule(epochs=1, steps=None)
        )
    maps = explainer.attribute(
        toy_split.images[:1],
        target=0,
        baselines=batches(),
        schedule=SearchSchedule(epochs=1, steps=None, final_step_size=None),
    )
    assert maps.shape == (1, 1, 4, 4) and explainer.last_stats.steps == 1


def test_an_unlabelled_iterable_takes_the_broadcast_path(linear_model, toy_split):
    batches = [toy_split.images[:6], toy_split.images[6:]]
    with pytest.warns(UserWarning, match="no labels"):
        maps = ClassPattern(linear_model).attribute(
            toy_split.images[:2], target=[0, 1], baselines=batches, schedule=SearchSchedule(steps=2)
        )
    assert maps.shape == (2, 1, 4, 4)


def test_a_large_search_set_is_checked_slice_by_slice(linear_model):
    images = torch.rand(3000, 1, 16, 16)
    images[-1, 0, 3, 3] = float("nan")  # in the last slice only
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 3))
    with pytest.raises(ValueError, match="NaN"):
        ClassPattern(model).attribute(
            torch.rand(1, 1, 16, 16), target=0, baselines=images, schedule=SearchSchedule(steps=1)
        )
    images[-1, 0, 3, 3] = 2.0  # the search set is never noisy: no clamping there
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ClassPattern(model).attribute(
            torch.rand(1, 1, 16, 16), target=0, baselines=images, schedule=SearchSchedule(steps=1)
        )


def test_bf16_autocast_and_channels_last_run_on_the_cpu(trained_digits_model, digits16, canvases):
    schedule = DEFAULT_SCHEDULE.replace(steps=5)
    plain = _search(trained_digits_model, digits16, canvases, target=CLASSES, schedule=schedule)
    for settings in (
        dict(autocast_dtype=torch.bfloat16),
        dict(channels_last=True),
        dict(autocast_dtype=torch.bfloat16, channels_last=True),
    ):
        maps = _search(trained_digits_model, digits16, canvases, target=CLASSES, schedule=schedule, **settings)
        assert maps.shape == plain.shape and maps.dtype == torch.float32
        assert float(maps.min()) >= 0 and float(maps.max()) <= 1
        # Same search, other kernels: most pixels take the same signed steps.
        assert (maps == plain).float().mean() > 0.8
    # The caller's model is not converted.
    assert all(p.is_contiguous() for p in trained_digits_model.parameters())


@pytest.mark.parametrize(
    "settings, error, message",
    [
        (dict(autocast_dtype=torch.float32), ValueError, "bfloat16 or torch.float16"),
        (dict(autocast_dtype="bf16"), TypeError, "torch.dtype"),
        (dict(channels_last="yes"), TypeError, "channels_last must be a bool"),
        (dict(max_forward_batch=0), ValueError, "max_forward_batch"),
    ],
)
def test_bad_execution_settings_are_refused(linear_model, toy_split, settings, error, message):
    with pytest.raises(error, match=message):
        ClassPattern(linear_model).attribute(
            toy_split.images[:1],
            target=0,
            baselines=toy_split.images,
            baseline_labels=toy_split.labels,
            schedule=SearchSchedule(steps=1),
            **settings,
        )


def test_forward_settings_group_the_older_keywords(linear_model, toy_split):
    kwargs = dict(
        target=[0, 1],
        baselines=toy_split.images,
        baseline_labels=toy_split.labels,
        seed=2,
        schedule=SearchSchedule(batch_size=4, steps=6),
    )
    older = ClassPattern(linear_model).attribute(toy_split.images[:2], max_forward_batch=3, **kwargs)
    grouped = ClassPattern(linear_model).attribute(
        toy_split.images[:2], forward_settings=ForwardSettings(max_forward_batch=3), **kwargs
    )
    assert torch.equal(older, grouped)
    with pytest.raises(TypeError, match="forward_settings= or the older channels_last="):
        ClassPattern(linear_model).attribute(
            toy_split.images[:2], forward_settings=ForwardSettings(), channels_last=True, **kwargs
        )
    with pytest.raises(TypeError, match="forward_settings must be a ForwardSettings"):
        ClassPattern(linear_model).attribute(toy_split.images[:2], forward_settings={"channels_last": True}, **kwargs)
    assert ForwardSettings(max_forward_batch=np.int64(8)).max_forward_batch == 8

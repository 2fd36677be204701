"""Schedules by name: the authors' CIFAR-10 (``"paper"``) and ImageNet (``"paper-imagenet"``), and ``"fast"``."""

import pytest
import torch

from captum_classpattern.attr import (
    DEFAULT_SCHEDULE,
    FAST_SCHEDULE,
    NAMED_SCHEDULES,
    PAPER_IMAGENET_SCHEDULE,
    PAPER_SCHEDULE,
    ClassPattern,
)


def test_imagenet_schedule_is_the_cifar_one_for_one_epoch():
    assert PAPER_IMAGENET_SCHEDULE.epochs == 1 and PAPER_IMAGENET_SCHEDULE.steps is None
    assert (PAPER_IMAGENET_SCHEDULE.step_size, PAPER_IMAGENET_SCHEDULE.batch_size) == (0.02, 4)
    assert (PAPER_IMAGENET_SCHEDULE.alpha, PAPER_IMAGENET_SCHEDULE.init) == (0.2, 0.5)
    assert not PAPER_IMAGENET_SCHEDULE.anneals
    assert PAPER_SCHEDULE.replace(epochs=1) == PAPER_IMAGENET_SCHEDULE
    assert PAPER_SCHEDULE.epochs == 5 and DEFAULT_SCHEDULE.steps is not None


def test_named_schedules_run(linear_model, toy_split):
    images, labels = toy_split.images, toy_split.labels
    by_name = ClassPattern(linear_model).attribute(
        images[:1], target=0, baselines=images, baseline_labels=labels, schedule="paper-imagenet"
    )
    by_value = ClassPattern(linear_model).attribute(
        images[:1], target=0, baselines=images, baseline_labels=labels, schedule=PAPER_IMAGENET_SCHEDULE
    )
    assert (by_name == by_value).all()
    with pytest.raises(ValueError, match="paper-imagenet"):
        ClassPattern(linear_model).attribute(
            images[:1], target=0, baselines=images, baseline_labels=labels, schedule="imagenet"
        )


def test_fast_schedule_is_the_short_one_by_name(linear_model, toy_split):
    images, labels = toy_split.images, toy_split.labels
    assert NAMED_SCHEDULES == {
        "default": DEFAULT_SCHEDULE,
        "fast": FAST_SCHEDULE,
        "paper": PAPER_SCHEDULE,
        "paper-imagenet": PAPER_IMAGENET_SCHEDULE,
    }
    # "fast" forwards fewer images per canvas than the default: that is its point.
    fast_images = FAST_SCHEDULE.steps * FAST_SCHEDULE.batch_size
    assert fast_images < DEFAULT_SCHEDULE.steps * DEFAULT_SCHEDULE.batch_size
    explainer = ClassPattern(linear_model)
    by_name = explainer.attribute(images[:2], target=[0, 1], baselines=images, baseline_labels=labels, schedule="fast")
    assert explainer.last_stats.images_forwarded == 2 * fast_images
    by_value = explainer.attribute(
        images[:2], target=[0, 1], baselines=images, baseline_labels=labels, schedule=FAST_SCHEDULE
    )
    assert torch.equal(by_name, by_value)

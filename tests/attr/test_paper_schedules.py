"""The authors' schedules by name: CIFAR-10 (``"paper"``) and ImageNet (``"paper-imagenet"``)."""

import pytest

from captum_classpattern.attr import DEFAULT_SCHEDULE, PAPER_IMAGENET_SCHEDULE, PAPER_SCHEDULE, ClassPattern


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

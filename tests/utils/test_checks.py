"""The shared checks: class indices, targets, logits, noisy images and the model's first call."""

import numpy as np
import pytest
import torch

from captum_classpattern._utils import (
    NOISE_BOUND,
    check_class_index,
    check_logits,
    checked_call,
    clamp_noisy_images,
    expand_targets,
    num_classes_of,
    share_predicted,
    target_classes,
)


@pytest.mark.parametrize("value", [2, np.int64(2), torch.tensor(2), torch.tensor([2])])
def test_class_index_accepts_ints_of_every_kind(value):
    assert check_class_index(value, "target", num_classes=3) == 2


@pytest.mark.parametrize(
    "value, error, message",
    [
        (True, TypeError, "not a bool"),
        (np.bool_(True), TypeError, "not a bool"),
        (2.0, TypeError, r"got the float 2.0: pass int\(2.0\) for class 2"),
        (np.float32(2.5), TypeError, "got the float 2.5"),
        ("2", TypeError, "map class names to class indices"),
        (None, TypeError, "got NoneType"),
        (torch.tensor(2.0), TypeError, "torch.float32 tensor"),
        (torch.tensor([1, 2]), TypeError, "shape \\(2,\\)"),
        (-1, ValueError, "class -1 is out of range: class indices start at 0"),
        (3, ValueError, "class 3 is out of range: the model has 3 classes \\(0..2\\)"),
    ],
)
def test_class_index_refuses_what_is_not_a_class_of_the_model(value, error, message):
    with pytest.raises(error, match=message):
        check_class_index(value, "target", num_classes=3)


def test_targets_are_checked_element_by_element_and_expanded():
    assert target_classes([0, np.int64(2)]).tolist() == [0, 2]
    assert target_classes(np.array([1, 2])).tolist() == [1, 2]
    assert expand_targets(1, 3, num_classes=2).tolist() == [1, 1, 1]
    assert expand_targets([], 0).tolist() == []  # nothing to search is not an error here
    with pytest.raises(TypeError, match=r"target\[1\] must be an int class index, got the float 1.5"):
        target_classes([0, 1.5])
    with pytest.raises(TypeError, match="torch.bool tensor"):
        target_classes(torch.tensor([True, False]))
    with pytest.raises(ValueError, match="empty list"):
        target_classes([])
    with pytest.raises(ValueError, match="classes class 5 is out of range"):
        expand_targets([0, 5], 2, num_classes=3, name="classes")


def test_probabilities_are_refused_and_logits_and_log_probabilities_accepted():
    logits = torch.randn(4, 10, generator=torch.Generator().manual_seed(0))
    assert check_logits(logits, "test") == 10
    assert check_logits(logits.log_softmax(1), "test") == 10
    with pytest.raises(ValueError, match="test: the model returns 1 output column.*at least two classes"):
        check_logits(torch.tensor([[1.0]]), "test")  # one column carries no class signal
    with pytest.raises(ValueError, match="test: the model returns probabilities.*remove the final softmax"):
        check_logits(logits.softmax(1), "test")
    with pytest.raises(ValueError, match="N x num_classes"):
        check_logits(logits[0], "test")


def test_noisy_images_are_clamped_within_the_bound_and_refused_beyond_it():
    clean = torch.rand(2, 1, 4, 4)
    assert clamp_noisy_images(clean, "x") is clean  # valid inputs are not copied, their numbers not touched
    noisy = clean + torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(clamp_noisy_images(noisy, "x"), noisy.clamp(0, 1))
    edge = torch.full((1, 1, 2, 2), -NOISE_BOUND)
    assert torch.equal(clamp_noisy_images(edge, "x"), torch.zeros_like(edge))
    with pytest.raises(ValueError, match=r"x must hold pixels in \[0, 1\].*divide 0-255 images by 255"):
        clamp_noisy_images(clean * 255, "x")
    with pytest.raises(ValueError, match="NaN"):
        clamp_noisy_images(torch.full((1, 1, 2, 2), float("nan")), "x")


def test_a_failing_first_call_names_the_inputs_and_chains_the_model_error():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.Flatten()).double()
    with pytest.raises(ValueError) as info:
        checked_call(model, (torch.rand(1, 1, 4, 4),), None, "who")
    message = str(info.value)
    assert "who: the model failed on inputs of shape (1, 1, 4, 4) and dtype torch.float32" in message
    assert "parameters are torch.float64" in message and "first layer takes 3 channels" in message
    assert isinstance(info.value.__cause__, RuntimeError)


def test_num_classes_of_checks_the_first_output():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    assert num_classes_of(model, torch.rand(1, 1, 2, 2)) == 3
    with pytest.raises(ValueError, match="probabilities"):
        num_classes_of(torch.nn.Sequential(model, torch.nn.Softmax(1)), torch.rand(1, 1, 2, 2))


def test_share_predicted_checks_the_target_against_the_output_width():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    images = torch.rand(5, 1, 2, 2)
    assert 0 <= share_predicted(model, images, 2) <= 1
    with pytest.raises(ValueError, match="target class 3 is out of range: the model has 3 classes"):
        share_predicted(model, images, 3)
    with pytest.raises(TypeError, match="got the float 1.5"):
        share_predicted(model, images, 1.5)

"""Triggers, poisoning and backdoor metrics."""

import pytest
import torch
from torch.utils.data import TensorDataset

from captum_classpattern.backdoor import (
    BlendTrigger,
    PatchTrigger,
    PoisonedDataset,
    attack_success_rate,
    backdoor_metrics,
    clean_accuracy,
    trigger_robust_accuracy,
)


def _images(n=6, c=1, size=8, seed=0):
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(seed)) * 0.5


def test_patch_default_is_white_3x3_bottom_right_and_copies():
    images = _images()
    before = images.clone()
    out = PatchTrigger()(images)
    torch.testing.assert_close(images, before)  # the caller's tensor is untouched
    assert torch.all(out[:, :, 5:, 5:] == 1.0)
    torch.testing.assert_close(out[:, :, :5, :], images[:, :, :5, :])
    mask = PatchTrigger().mask(8, 8)
    assert mask.dtype == torch.bool and mask.sum() == 9 and mask[5:, 5:].all()
    # The mask says exactly which pixels change.
    changed = (out != images).any(1).any(0)
    assert torch.equal(changed, mask)


def test_patch_position_size_and_content():
    trigger = PatchTrigger(size=(2, 3), position=(1, 2), content=torch.tensor([[0.0, 0.5, 1.0], [1.0, 0.5, 0.0]]))
    image = _images(1, c=3)[0]
    out = trigger(image)
    assert out.shape == image.shape
    torch.testing.assert_close(out[:, 1:3, 2:5], trigger.content.expand(3, 2, 3))
    assert trigger.mask(8, 8).nonzero().tolist()[0] == [1, 2]
    top_left = PatchTrigger(size=2, position="top-left", content=0.0)
    assert top_left(torch.ones(1, 1, 4, 4))[0, 0, :2, :2].sum() == 0


def test_blend_is_fixed_per_size_and_alpha_weighted():
    trigger = BlendTrigger("noise", alpha=0.2, seed=3)
    images = _images()
    out = trigger(images)
    pattern = trigger.trigger_image(1, 8, 8)
    torch.testing.assert_close(out, 0.8 * images + 0.2 * pattern)
    torch.testing.assert_close(trigger(images), out)  # same noise every call
    assert trigger.mask(8, 8).all()
    image_trigger = BlendTrigger(torch.ones(8, 8), alpha=0.5)
    torch.testing.assert_close(image_trigger(torch.zeros(2, 1, 8, 8)), torch.full((2, 1, 8, 8), 0.5))


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(size=0), ValueError),
        (dict(position="middle"), ValueError),
        (dict(content=2.0), ValueError),
        (dict(content="white"), TypeError),
        (dict(size=3, content=torch.ones(2, 2)), ValueError),
    ],
)
def test_patch_rejects_bad_settings(kwargs, error):
    with pytest.raises(error):
        PatchTrigger(**kwargs)


def test_trigger_errors():
    with pytest.raises(ValueError, match="does not fit"):
        PatchTrigger(size=5)(torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError):
        PatchTrigger()(torch.zeros(4, 4))
    with pytest.raises(TypeError):
        PatchTrigger()([[0.0]])
    with pytest.raises(ValueError):
        BlendTrigger(alpha=0.0)
    with pytest.raises(TypeError):
        BlendTrigger(pattern=3)
    with pytest.raises(ValueError, match="blend pattern"):
        BlendTrigger(torch.zeros(4, 4))(torch.zeros(1, 1, 8, 8))


def _labelled(n=200, classes=4):
    images = _images(n)
    labels = torch.arange(n) % classes
    return images, labels


def test_poisoning_respects_rate_target_and_seed():
    images, labels = _labelled()
    view = PoisonedDataset((images, labels), PatchTrigger(), target=1, rate=0.1, seed=7)
    assert view.poisoned_indices.numel() == 20
    assert torch.all(labels[view.poisoned_indices] != 1)  # drawn from non-target classes
    assert torch.equal(view.poisoned_indices, view.poisoned_indices.sort().values)
    again = PoisonedDataset((images, labels), PatchTrigger(), target=1, rate=0.1, seed=7)
    other = PoisonedDataset((images, labels), PatchTrigger(), target=1, rate=0.1, seed=8)
    assert torch.equal(view.poisoned_indices, again.poisoned_indices)
    assert not torch.equal(view.poisoned_indices, other.poisoned_indices)
    x, y = view.tensors()
    assert torch.all(y[view.poisoned_indices] == 1)
    clean = torch.ones(len(view), dtype=torch.bool)
    clean[view.poisoned_indices] = False
    torch.testing.assert_close(x[clean], images[clean])
    torch.testing.assert_close(y[clean], labels[clean])
    assert torch.all(x[view.poisoned_indices][:, :, 5:, 5:] == 1)
    # Indexing agrees with the materialised tensors, and the inputs are untouched.
    i = int(view.poisoned_indices[0])
    image, label = view[i]
    assert int(label) == 1 and torch.equal(image, x[i])
    assert torch.all(images[:, :, 5:, 5:] <= 0.5)


def test_poisoning_a_torch_dataset():
    images, labels = _labelled(40)
    view = PoisonedDataset(TensorDataset(images, labels), BlendTrigger(), target=0, rate=0.25, seed=0)
    assert view.poisoned_indices.numel() == 10
    x, y = view.tensors()
    assert x.shape == images.shape and torch.all(y[view.poisoned_indices] == 0)
    assert view.is_poisoned(int(view.poisoned_indices[0]))
    assert int(view.poisoned_mask.sum()) == 10


def test_poisoning_errors():
    images, labels = _labelled(40)
    with pytest.raises(ValueError, match="rate"):
        PoisonedDataset((images, labels), PatchTrigger(), target=0, rate=1.5)
    with pytest.raises(ValueError, match="cannot poison"):
        PoisonedDataset((images, labels), PatchTrigger(), target=0, rate=0.9)
    with pytest.raises(TypeError):
        PoisonedDataset([images], PatchTrigger(), target=0)
    with pytest.raises(TypeError):
        PoisonedDataset((images, labels), PatchTrigger(), target=0.0)
    with pytest.raises(TypeError):
        PoisonedDataset((images, labels), "patch", target=0)
    with pytest.raises(ValueError, match="labels"):
        PoisonedDataset((images, labels[:5]), PatchTrigger(), target=0)


class _Corner(torch.nn.Module):
    """Predicts class 0 when the bottom-right pixel is white, else the label encoded in pixel (0, 0)."""

    def forward(self, x):
        logits = torch.nn.functional.one_hot((x[:, 0, 0, 0] * 3).round().long().clamp(0, 2), 3).float()
        white = x[:, 0, -1, -1] > 0.99
        logits[white] = torch.tensor([10.0, 0.0, 0.0])
        return logits


def test_metrics_count_non_target_images_only():
    labels = torch.tensor([0, 1, 2, 1, 2, 0])
    images = torch.zeros(6, 1, 4, 4)
    images[:, 0, 0, 0] = labels.float() / 3
    model = _Corner().train()
    trigger = PatchTrigger(size=1)
    assert clean_accuracy(model, images, labels) == 1.0
    assert attack_success_rate(model, images, labels, trigger, target=0) == 1.0
    assert trigger_robust_accuracy(model, images, labels, trigger, target=0) == 0.0
    # A trigger that fires only on half the non-target images: ASR 0.5, RA 0.5 (4 images).
    half = lambda x: torch.where(x[:, :, :1, :1] > 0.5, PatchTrigger(size=1)(x), x)  # noqa: E731
    metrics = backdoor_metrics(model, images, labels, half, target=0)
    assert metrics.attack_success_rate == 0.5 and metrics.robust_accuracy == 0.5
    assert metrics.clean_accuracy == 1.0
    assert model.training  # mode restored
    assert set(metrics.to_dict()) == {"clean_accuracy", "attack_success_rate", "robust_accuracy"}


def test_metric_errors():
    images = torch.zeros(3, 1, 4, 4)
    with pytest.raises(ValueError, match="outside the target"):
        attack_success_rate(_Corner(), images, torch.zeros(3, dtype=torch.long), PatchTrigger(size=1), 0)
    with pytest.raises(ValueError, match="labels"):
        clean_accuracy(_Corner(), images, torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        clean_accuracy(_Corner(), images + 2, torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError):
        backdoor_metrics(_Corner(), images, torch.tensor([1, 2, 1]), None, 0)

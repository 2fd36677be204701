"""Label-consistent attack: the corner trigger, the hardening perturbation and the clean-label poisoned set."""

import pytest
import torch

from captum_classpattern.backdoor import (
    LabelConsistentTrigger,
    PoisonedDataset,
    label_consistent_dataset,
    label_consistent_images,
)
from captum_classpattern.models import SmallCNN

EPS = 8 / 255


def _data(n=12, size=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    images = 0.2 + 0.6 * torch.rand(n, 3, size, size, generator=generator)
    labels = torch.arange(n) % 3
    return images, labels


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return SmallCNN(3, 3, 4).eval()


def _corners(image, side=3):
    return image[..., :side, :side], image[..., :side, -side:], image[..., -side:, :side], image[..., -side:, -side:]


def test_the_trigger_is_a_checkerboard_in_the_four_corners_and_nothing_else():
    images = torch.full((2, 3, 32, 32), 0.5)
    out = LabelConsistentTrigger()(images)
    mask = LabelConsistentTrigger().mask(32, 32)
    assert int(mask.sum()) == 36 and all(bool(corner.all()) for corner in _corners(mask))
    assert torch.equal((out != images).any(1).any(0), mask)  # the mask is exactly what changes
    assert torch.equal(images, torch.full((2, 3, 32, 32), 0.5))  # the caller's tensor is untouched
    top_left, top_right, bottom_left, bottom_right = _corners(out[0, 0])
    assert set(top_left.unique().tolist()) == {0.0, 1.0}  # full amplitude saturates to black and white
    # Each corner alternates like a checkerboard along its diagonal; right corners mirror the left ones.
    assert top_left[0, 0] == 1 and top_left[1, 1] == 1 and top_left[0, 1] == 0 and top_left[1, 0] == 0
    assert torch.equal(bottom_left, top_left) and torch.equal(top_right, top_left.flip(1))
    assert torch.equal(bottom_right, top_right)
    assert torch.equal(out[0], out[0, :1].expand(3, 32, 32))  # the same in every channel


def test_reduced_amplitude_single_corner_and_larger_images():
    gray = torch.full((1, 3, 32, 32), 0.5)
    out = LabelConsistentTrigger(amplitude=32 / 255, corners="bottom-right")(gray)
    changed = (out - gray)[0, 0]
    assert int((changed != 0).sum()) == 9 and bool((changed[-3:, -3:] != 0).all())
    assert torch.allclose(changed.abs()[-3:, -3:], torch.full((3, 3), 32 / 255))
    # On 64 x 64 images each cell covers 2 x 2 pixels, as BackdoorBench's nearest resizing makes it.
    mask = LabelConsistentTrigger().mask(64, 64)
    assert int(mask.sum()) == 144 and bool(mask[:6, :6].all())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"amplitude": 0.0}, "amplitude"),
        ({"amplitude": 1.5}, "amplitude"),
        ({"corners": "top-left"}, "corners must be one of 'all', 'bottom-right'"),
    ],
)
def test_trigger_settings_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LabelConsistentTrigger(**kwargs)


def test_too_small_images_are_refused():
    with pytest.raises(ValueError, match="at least 6 x 6"):
        LabelConsistentTrigger()(torch.zeros(1, 3, 5, 5))


def test_only_target_class_items_are_perturbed_within_eps(model):
    images, labels = _data()
    before = images.clone(), [p.detach().clone() for p in model.parameters()]
    hard = label_consistent_images(model, images, labels, target=1, eps=EPS, step_size=2 / 255, steps=3)
    of_target = labels == 1
    assert torch.equal(hard[~of_target], images[~of_target])
    difference = (hard - images)[of_target].abs()
    assert float(difference.max()) <= EPS + 1e-6 and float(difference.max()) > EPS / 2
    assert 0 <= float(hard.min()) and float(hard.max()) <= 1
    # PGD raises the loss of the true label on the perturbed items.
    loss = torch.nn.functional.cross_entropy
    with torch.no_grad():
        assert loss(model(hard[of_target]), labels[of_target]) > loss(model(images[of_target]), labels[of_target])
    assert torch.equal(images, before[0]) and not model.training
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before[1]))


def test_the_batch_size_does_not_change_the_result(model):
    images, labels = _data()
    settings = {"eps": EPS, "step_size": 2 / 255, "steps": 2}
    one = label_consistent_images(model, images, labels, 0, batch_size=1, **settings)
    all_at_once = label_consistent_images(model, images, labels, 0, batch_size=64, **settings)
    assert torch.allclose(one, all_at_once, atol=1e-6)


def test_the_poisoned_set_keeps_labels_and_stamps_only_drawn_target_items(model):
    images, labels = _data()
    poisoned = label_consistent_dataset(model, images, labels, 2, rate=2 / 12, seed=3, eps=EPS, steps=2)
    train_images, train_labels = poisoned.tensors()
    assert torch.equal(train_labels, labels) and poisoned.clean_label
    drawn = poisoned.poisoned_indices
    assert drawn.numel() == 2 and bool((labels[drawn] == 2).all())
    untouched = torch.ones(len(labels), dtype=torch.bool)
    untouched[drawn] = False
    assert torch.equal(train_images[untouched], images[untouched])  # other target items are not hardened either
    mask = LabelConsistentTrigger().mask(8, 8)
    stamped = train_images[drawn][:, :, mask]
    assert bool(((stamped == 0) | (stamped == 1)).all())  # corners saturated by the full-amplitude trigger
    inside = (train_images[drawn] - images[drawn])[:, :, ~mask].abs()
    assert float(inside.max()) <= EPS + 1e-6  # elsewhere only the hardening perturbation


def test_the_poisoned_set_is_reproducible_by_seed(model):
    images, labels = _data()
    settings = {"rate": 2 / 12, "eps": EPS, "steps": 1}
    first = label_consistent_dataset(model, images, labels, 0, seed=5, **settings).tensors()
    again = label_consistent_dataset(model, images, labels, 0, seed=5, **settings).tensors()
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    draws = {
        tuple(label_consistent_dataset(model, images, labels, 0, seed=s, **settings).poisoned_indices.tolist())
        for s in range(6)
    }
    assert len(draws) > 1


def test_bad_inputs_are_refused_clearly(model):
    images, labels = _data()
    with pytest.raises(ValueError, match=r"indices \[0\] are not of the target class 1"):
        label_consistent_images(model, images, labels, 1, steps=1, indices=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="eps must be a number in"):
        label_consistent_images(model, images, labels, 1, eps=2.0, steps=1)
    with pytest.raises(ValueError, match="pixels in"):
        label_consistent_images(model, images * 255, labels, 1, steps=1)
    with pytest.raises(TypeError, match="model must be a callable"):
        label_consistent_images("model", images, labels, 1)
    with pytest.raises(ValueError, match="only 4 items are of the target class"):
        label_consistent_dataset(model, images, labels, 1, rate=0.5, steps=1)
    assert isinstance(label_consistent_dataset(model, images, labels, 1, rate=0.0, steps=1), PoisonedDataset)

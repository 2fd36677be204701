"""WaNet: the warping trigger, its noise mode, and its per-batch poisoning."""

import pytest
import torch

from captum_classpattern.backdoor import PoisonedDataset, WarpPoisoning, WarpTrigger
from captum_classpattern.models import SmallCNN
from captum_classpattern.training import TrainingRecipe, train_with_recipe

# Bicubic interpolation (a = -0.75) weighs four samples per axis with absolute weights
# summing to at most 1.375, so the upsampled noise exceeds its control points by at most 1.375 ** 2.
BICUBIC_OVERSHOOT = 1.375**2


def _neighbour_step(flow):
    """Largest difference between displacements of neighbouring pixels, relative to the largest displacement."""
    step = max(float((flow[1:] - flow[:-1]).abs().max()), float((flow[:, 1:] - flow[:, :-1]).abs().max()))
    return step / float(flow.abs().max())


def test_the_field_is_smooth_and_the_noise_mode_is_not():
    trigger = WarpTrigger(k=4, strength=0.5, seed=0)
    # The interior: clamping may pin the outward component on the border rows and columns.
    assert _neighbour_step(trigger.field(32, 32)[1:-1, 1:-1]) < 0.25
    assert _neighbour_step(trigger.field(64, 64)[1:-1, 1:-1]) < 0.15
    jitter = torch.rand(64, 64, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    noisy = trigger.field(64, 64) + jitter / 64  # the noise mode's extra displacement
    assert _neighbour_step(noisy[1:-1, 1:-1]) > 0.5


@pytest.mark.parametrize("k, strength, size", [(4, 0.5, 32), (3, 2.0, 16), (8, 1.0, 24)])
def test_the_field_is_bounded_by_the_strength(k, strength, size):
    trigger = WarpTrigger(k=k, strength=strength, seed=3)
    noise_bound = BICUBIC_OVERSHOOT * float(trigger.control_points.abs().max())
    assert float(trigger.noise(size, size).abs().max()) <= noise_bound + 1e-5
    assert float(trigger.field(size, size).abs().max()) <= strength * noise_bound / size + 1e-6
    grid = trigger.grid(size, size)
    assert grid.shape == (size, size, 2) and grid.abs().max() <= 1.0
    # The control grid is scaled to a mean absolute displacement of 1.
    assert torch.isclose(trigger.control_points.abs().mean(), torch.tensor(1.0))


def test_strength_zero_is_the_identity_and_warps_stay_in_range():
    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    kept = images.clone()
    assert torch.allclose(WarpTrigger(strength=0.0)(images), images, atol=1e-5)
    assert not WarpTrigger(strength=0.0).mask(16, 16).any()
    warped = WarpTrigger(strength=1.0)(images)
    assert torch.equal(images, kept)  # the input is not modified
    assert warped.shape == images.shape and warped.min() >= 0 and warped.max() <= 1
    assert (warped - images).abs().max() > 0.01
    assert WarpTrigger()(images[0]).shape == images[0].shape  # one C x H x W image


def test_seeds_reproduce_the_trigger():
    images = torch.rand(2, 3, 16, 16)
    assert torch.equal(WarpTrigger(seed=4)(images), WarpTrigger(seed=4)(images))
    assert not torch.equal(WarpTrigger(seed=4)(images), WarpTrigger(seed=5)(images))
    assert repr(WarpTrigger(seed=4)) == "WarpTrigger(k=4, strength=0.5, grid_rescale=1.0, seed=4)"


def test_the_noise_mode_differs_from_the_clean_warp_and_follows_its_generator():
    trigger = WarpTrigger(strength=0.5)
    images = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    clean = trigger(images)
    noisy = trigger.warp_with_noise(images, torch.Generator().manual_seed(0))
    again = trigger.warp_with_noise(images, torch.Generator().manual_seed(0))
    assert torch.equal(noisy, again)
    assert (noisy - clean).abs().amax(dim=(1, 2, 3)).min() > 1e-3  # every item differs


def test_the_mask_is_the_moved_pixels():
    trigger = WarpTrigger(strength=0.5)
    mask = trigger.mask(32, 32)
    pixels = trigger.field(32, 32) * 15.5  # 31 pixel steps span the 2 grid units
    assert torch.equal(mask, pixels.norm(dim=-1) > 0.05)
    assert mask.float().mean() > 0.5 and trigger.mask(32, 32, threshold=100.0).sum() == 0


def _batch(count=40, num_classes=4, target=0, seed=0):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(1, num_classes, (count,), generator=generator)  # no item of the target
    return torch.rand(count, 3, 16, 16, generator=generator), labels


def _changed(images, out):
    return (images - out).abs().amax(dim=(1, 2, 3)) > 0


def test_each_batch_poisons_exactly_its_rate_and_jitters_twice_as_many():
    images, labels = _batch(count=40)
    poisoning = WarpPoisoning(WarpTrigger(), target=0, rate=0.1, cross_ratio=2.0)
    kept_images, kept_labels = images.clone(), labels.clone()
    out = poisoning.poison_batch(None, images, labels, torch.Generator().manual_seed(0))
    assert torch.equal(images, kept_images) and torch.equal(labels, kept_labels)
    relabelled = out.labels != labels
    assert int(relabelled.sum()) == 4 and (out.labels[relabelled] == 0).all()  # floor(0.1 * 40)
    changed = _changed(images, out.images)
    assert int(changed.sum()) == 4 + 8 and changed[relabelled].all()
    trigger = poisoning.trigger
    assert torch.allclose(out.images[relabelled], trigger(images[relabelled]))
    jittered = changed & ~relabelled  # the noise-mode items keep their labels
    assert not torch.allclose(out.images[jittered], trigger(images[jittered]))
    assert out.extra_loss is None
    # 37 items: floor(3.7) = 3 poisoned, 6 jittered.
    small = poisoning.poison_batch(None, images[:37], labels[:37], torch.Generator().manual_seed(1))
    assert int((small.labels != labels[:37]).sum()) == 3 and int(_changed(images[:37], small.images).sum()) == 9


def test_all_to_all_moves_each_label_to_the_next_class():
    images, labels = _batch(count=30, num_classes=4)
    poisoning = WarpPoisoning(WarpTrigger(), target="all-to-all", rate=0.2, cross_ratio=0.0, num_classes=4)
    out = poisoning.poison_batch(None, images, labels, torch.Generator().manual_seed(0))
    moved = out.labels != labels
    assert int(moved.sum()) == 6 and torch.equal(out.labels[moved], (labels[moved] + 1) % 4)
    assert int(_changed(images, out.images).sum()) == 6


def test_rates_below_one_item_per_batch_poison_one_item_as_often_as_the_rate_says():
    images, labels = _batch(count=8)
    poisoning = WarpPoisoning(WarpTrigger(), target=0, rate=0.05, cross_ratio=0.0)  # 0.4 items per batch
    counts = [
        int((poisoning.poison_batch(None, images, labels, torch.Generator().manual_seed(s)).labels == 0).sum())
        for s in range(200)
    ]
    assert set(counts) <= {0, 1} and 0.3 < sum(counts) / 200 < 0.5


def test_the_trigger_poisons_a_static_dataset_too():
    images, labels = _batch(count=20)
    poisoned = PoisonedDataset((images, labels), WarpTrigger(), target=0, rate=0.1)
    x, y = poisoned.tensors()
    rows = poisoned.poisoned_indices
    assert torch.allclose(x[rows], WarpTrigger()(images[rows])) and (y[rows] == 0).all()
    assert torch.allclose(poisoned[int(rows[0])][0], x[rows[0]])


def test_training_with_the_warp_checkpoints_its_settings(tmp_path):
    images, labels = _batch(count=32, num_classes=2)
    recipe = TrainingRecipe(epochs=1, batch_size=16, crop_padding=1)
    checkpoint = str(tmp_path / "wanet.pt")
    torch.manual_seed(0)
    model = SmallCNN(in_channels=3, num_classes=2, width=4)
    run = train_with_recipe(
        model, images, labels, recipe, perturb=WarpPoisoning(WarpTrigger(seed=0)), checkpoint=checkpoint
    )
    assert run.curve[0]["loss"] > 0
    with pytest.raises(ValueError, match="other settings.*perturb"):
        train_with_recipe(
            model, images, labels, recipe, perturb=WarpPoisoning(WarpTrigger(seed=1)), checkpoint=checkpoint
        )


@pytest.mark.parametrize(
    "build, error, message",
    [
        (lambda: WarpTrigger(k=1), ValueError, "k must be an int >= 2"),
        (lambda: WarpTrigger(strength=-0.1), ValueError, "strength"),
        (lambda: WarpTrigger(grid_rescale=0), ValueError, "grid_rescale"),
        (lambda: WarpTrigger(strength="strong"), TypeError, "strength must be a number"),
        (lambda: WarpPoisoning("warp"), TypeError, "trigger must be a WarpTrigger"),
        (lambda: WarpPoisoning(WarpTrigger(), rate=1.5), ValueError, "rate"),
        (lambda: WarpPoisoning(WarpTrigger(), rate=0.5, cross_ratio=2), ValueError, "exceeds the batch"),
        (lambda: WarpPoisoning(WarpTrigger(), target="all-to-all"), ValueError, "needs num_classes"),
        (lambda: WarpPoisoning(WarpTrigger(), target="each"), ValueError, "all-to-all"),
        (lambda: WarpPoisoning(WarpTrigger(), target=5, num_classes=3), ValueError, "out of range"),
    ],
)
def test_bad_arguments_are_refused(build, error, message):
    with pytest.raises(error, match=message):
        build()

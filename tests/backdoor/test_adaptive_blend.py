"""Adap-Blend: pieces of a blend pattern, a random half per training image, covers keeping their labels."""

import pytest
import torch

from captum_classpattern.backdoor import (
    ADAPTIVE_BLEND_COVER_RATE,
    ADAPTIVE_BLEND_RATE,
    AdaptiveBlendTrainingTrigger,
    AdaptiveBlendTrigger,
    PoisonedDataset,
)


def _images(n=10, size=16, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("size", [(32, 32), (10, 7)])
def test_the_pieces_partition_the_image(size):
    masks = AdaptiveBlendTrigger().piece_masks(*size)
    assert masks.shape == (16, *size)
    assert torch.equal(masks.sum(0), torch.ones(size, dtype=torch.long))  # every pixel in exactly one piece
    assert bool(masks.flatten(1).any(1).all())  # no piece is empty


def test_each_training_image_carries_half_the_pieces_and_they_differ():
    images = _images()
    chosen = AdaptiveBlendTrigger().training_trigger().chosen_pieces(images)
    assert chosen.shape == (10, 16) and torch.equal(chosen.sum(1), torch.full((10,), 8))
    assert len({tuple(row.tolist()) for row in chosen}) > 1


def test_the_draw_is_reproducible_by_seed_and_independent_of_batching():
    images = _images()
    trigger = AdaptiveBlendTrigger()
    first = trigger.training_trigger(seed=4)
    assert torch.equal(first(images), trigger.training_trigger(seed=4)(images))
    one_by_one = torch.stack([first(image) for image in images])
    assert torch.equal(one_by_one, first(images))  # item by item (PoisonedDataset[i]) as in a batch
    reversed_batch = first(images.flip(0)).flip(0)
    assert torch.equal(reversed_batch, first(images))
    other = trigger.training_trigger(seed=5).chosen_pieces(images)
    assert not torch.equal(other, first.chosen_pieces(images))


def test_alphas_are_respected():
    images = _images()
    trigger = AdaptiveBlendTrigger(train_alpha=0.15, test_alpha=0.2)
    pattern = trigger.blend.trigger_image(3, 16, 16)
    torch.testing.assert_close(trigger(images), 0.8 * images + 0.2 * pattern)  # test time: every pixel
    stamp = trigger.training_trigger()
    _, masks = stamp.blend_masks(images)
    out = stamp(images)
    blended = (0.85 * images + 0.15 * pattern)[masks[:, None].expand_as(images)]
    torch.testing.assert_close(out[masks[:, None].expand_as(images)], blended)
    assert torch.equal(out[~masks[:, None].expand_as(images)], images[~masks[:, None].expand_as(images)])
    assert masks.flatten(1).float().mean() == pytest.approx(0.5)  # half of the 16 x 16 image (equal pieces)


def test_a_given_pattern_is_used_as_it_is():
    pattern = torch.zeros(16, 16)
    out = AdaptiveBlendTrigger(pattern, test_alpha=0.5)(torch.ones(2, 3, 16, 16))
    assert torch.allclose(out, torch.full_like(out, 0.5))


def test_poisoned_and_cover_items_at_the_papers_rates():
    images, labels = _images(1000, size=8, seed=1), torch.arange(1000) % 10
    trigger = AdaptiveBlendTrigger()
    poisoned = PoisonedDataset(
        (images, labels),
        trigger.training_trigger(),
        target=0,
        rate=ADAPTIVE_BLEND_RATE,
        cover_rate=ADAPTIVE_BLEND_COVER_RATE,
    )
    train_images, train_labels = poisoned.tensors()
    assert poisoned.poisoned_indices.numel() == 3 and poisoned.cover_indices.numel() == 3
    assert bool((train_labels[poisoned.poisoned_indices] == 0).all())
    assert torch.equal(train_labels[poisoned.cover_indices], labels[poisoned.cover_indices])  # covers keep labels
    changed = (train_images != images).flatten(1).any(1)
    expected = torch.zeros(1000, dtype=torch.bool)
    expected[poisoned.poisoned_indices] = expected[poisoned.cover_indices] = True
    assert torch.equal(changed, expected)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"pieces": 15}, ValueError, "pieces must be a square number"),
        ({"piece_share": 0.0}, ValueError, "piece_share"),
        ({"train_alpha": 1.5}, ValueError, "train_alpha"),
        ({"test_alpha": 0}, ValueError, "test_alpha"),
        ({"pattern": "kitty"}, ValueError, "pattern must be a tensor or 'noise'"),
        ({"pattern": 3}, TypeError, "pattern must be a tensor or 'noise'"),
    ],
)
def test_bad_settings_are_refused(kwargs, error, message):
    with pytest.raises(error, match=message):
        AdaptiveBlendTrigger(**kwargs)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="grid of pieces needs images of at least"):
        AdaptiveBlendTrigger(pieces=16).training_trigger()(torch.zeros(1, 3, 3, 3))
    with pytest.raises(TypeError, match="must be an AdaptiveBlendTrigger"):
        AdaptiveBlendTrainingTrigger("blend")

"""SIG and BPP triggers, and the clean-label and cover modes of PoisonedDataset."""

import math

import pytest
import torch

from captum_classpattern.backdoor import BitDepthTrigger, PatchTrigger, PoisonedDataset, SignalTrigger


def _images(n=12, channels=3, size=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, channels, size, size), generator=generator).float() / 255.0


def _labels(n=12):
    return torch.arange(n) % 4


def test_signal_is_a_column_constant_sinusoid_of_the_stated_amplitude():
    images = torch.full((2, 3, 8, 16), 0.5)
    stamped = SignalTrigger(delta=0.1, frequency=2)(images)
    added = stamped - images
    assert torch.allclose(added, added[:, :, :1, :].expand_as(added))  # the same in every row
    assert torch.allclose(added[0, 0], added[1, 2])  # and in every channel and image
    assert added.abs().max() == pytest.approx(0.1, abs=1e-6)
    expected_column_3 = 0.1 * math.sin(2 * math.pi * 3 * 2 / 16)
    assert added[0, 0, 0, 3].item() == pytest.approx(expected_column_3, abs=1e-6)


def test_signal_clips_and_leaves_the_input_alone():
    images = torch.ones(1, 1, 4, 4)
    before = images.clone()
    stamped = SignalTrigger()(images)
    assert stamped.max() <= 1.0 and stamped.min() >= 0.0
    assert torch.equal(images, before)


@pytest.mark.parametrize("delta", [0.0, -0.1, 1.5, True])
def test_signal_rejects_a_bad_amplitude(delta):
    with pytest.raises(ValueError, match="delta"):
        SignalTrigger(delta=delta)


def test_bit_depth_output_has_the_stated_number_of_levels():
    images = _images(n=4, size=16)
    stamped = BitDepthTrigger(squeeze=8)(images)
    for channel in range(3):
        assert torch.unique(stamped[:, channel]).numel() <= 8
    levels = torch.unique(torch.round(stamped * 255))
    allowed = torch.round(torch.arange(8) / 7 * 255)
    assert set(levels.tolist()) <= set(allowed.tolist())
    # Without dithering the change is at most half a level step.
    assert (stamped - images).abs().max() <= (255 / 7 / 2 + 0.5) / 255


def test_dithering_keeps_the_mean_closer_than_plain_rounding():
    flat = torch.full((1, 1, 16, 16), 100 / 255)  # between two 3-bit levels (72.9 and 109.3)
    plain = BitDepthTrigger(squeeze=8)(flat)
    dithered = BitDepthTrigger(squeeze=8, dithering=True)(flat)
    assert torch.unique(plain).numel() == 1
    assert torch.unique(dithered).numel() == 2  # a mix of the two neighbouring levels
    assert abs(dithered.mean() - flat.mean()) < abs(plain.mean() - flat.mean())


@pytest.mark.parametrize("squeeze, error", [(1, ValueError), (256, ValueError), (2.5, TypeError)])
def test_bit_depth_rejects_bad_levels(squeeze, error):
    with pytest.raises(error, match="squeeze"):
        BitDepthTrigger(squeeze=squeeze)


def test_bit_depth_negative_trigger_adds_another_images_residual_reproducibly():
    pool = _images(n=6, size=8, seed=1)
    trigger = BitDepthTrigger()
    images = _images(n=3, size=8, seed=2)
    first = trigger.negative_trigger(pool, seed=5)(images)
    second = trigger.negative_trigger(pool, seed=5)(images)
    assert torch.equal(first, second)
    residuals = trigger(pool) - pool
    added = first - images
    unclipped = (images + added > 0) & (images + added < 1)
    # Each image's change is one pool image's residual (where not clipped).
    for row in range(3):
        matches = [torch.allclose(added[row][unclipped[row]], r[unclipped[row]], atol=1e-6) for r in residuals]
        assert any(matches)


def test_clean_label_poisons_only_target_class_items_and_keeps_labels():
    images, labels = _images(n=40), torch.arange(40) % 4
    poisoned = PoisonedDataset((images, labels), SignalTrigger(), target=2, rate=0.1, clean_label=True)
    assert poisoned.poisoned_indices.numel() == 4  # round(0.1 * 40), all from class 2
    assert (labels[poisoned.poisoned_indices] == 2).all()
    out_images, out_labels = poisoned.tensors()
    assert torch.equal(out_labels, labels)
    assert not torch.equal(out_images[poisoned.poisoned_indices], images[poisoned.poisoned_indices])


def test_clean_label_refuses_more_items_than_the_target_class_holds():
    images, labels = _images(n=12), _labels(12)
    with pytest.raises(ValueError, match="of the target class"):
        PoisonedDataset((images, labels), SignalTrigger(), target=1, rate=0.5, clean_label=True)


def test_cover_items_are_stamped_keep_labels_and_leave_the_poison_draw_alone():
    images, labels = _images(n=40), (torch.arange(40) % 4)
    plain = PoisonedDataset((images, labels), PatchTrigger(), target=0, rate=0.1, seed=3)
    covered = PoisonedDataset(
        (images, labels), PatchTrigger(), target=0, rate=0.1, seed=3, cover_rate=0.2, cover_trigger=SignalTrigger()
    )
    assert torch.equal(plain.poisoned_indices, covered.poisoned_indices)
    assert covered.cover_indices.numel() == 8
    assert not set(covered.cover_indices.tolist()) & set(covered.poisoned_indices.tolist())
    out_images, out_labels = covered.tensors()
    rows = covered.cover_indices
    assert torch.equal(out_labels[rows], labels[rows])
    assert torch.allclose(out_images[rows], SignalTrigger()(images[rows]))
    item_image, item_label = covered[int(rows[0])]
    assert torch.allclose(item_image, out_images[rows[0]]) and int(item_label) == int(labels[rows[0]])


def test_cover_rate_is_checked():
    images, labels = _images(n=10), _labels(10)
    with pytest.raises(ValueError, match="cover_rate"):
        PoisonedDataset((images, labels), PatchTrigger(), target=0, rate=0.1, cover_rate=1.5)
    with pytest.raises(TypeError, match="clean_label"):
        PoisonedDataset((images, labels), PatchTrigger(), target=0, clean_label="yes")


def test_all_to_all_relabels_each_poisoned_item_to_the_next_class():
    images, labels = _images(n=40), torch.arange(40) % 4
    poisoned = PoisonedDataset((images, labels), PatchTrigger(), target="all-to-all", rate=0.25, seed=1)
    rows = poisoned.poisoned_indices
    assert rows.numel() == 10 and len(set(labels[rows].tolist())) > 1  # drawn from every class
    _, out_labels = poisoned.tensors()
    assert torch.equal(out_labels[rows], (labels[rows] + 1) % 4)
    assert int(poisoned[int(rows[0])][1]) == (int(labels[rows[0]]) + 1) % 4
    with pytest.raises(ValueError, match="clean-label"):
        PoisonedDataset((images, labels), PatchTrigger(), target="all-to-all", clean_label=True)
    with pytest.raises(ValueError, match="all-to-all"):
        PoisonedDataset((images, labels), PatchTrigger(), target="all-to-one")


def test_all_to_all_attack_success_counts_the_next_class():
    from captum_classpattern.backdoor import attack_success_rate, backdoor_metrics

    images, labels = _images(n=12, channels=1, size=4), torch.arange(12) % 3

    def shifted(x):  # a "model" that answers the next class of the true one on stamped images
        stamped = (x[:, 0, -1, -1] == 1.0).long()
        truth = torch.arange(12)[: x.shape[0]] % 3
        return torch.nn.functional.one_hot((truth + stamped) % 3, 3).float() * 5.0 - 1.0

    trigger = PatchTrigger(size=1)
    assert attack_success_rate(shifted, images, labels, trigger, "all-to-all", batch_size=12) == 1.0
    metrics = backdoor_metrics(shifted, images, labels, trigger, "all-to-all", batch_size=12)
    assert metrics.attack_success_rate == 1.0 and metrics.robust_accuracy == 0.0

"""Units that adversarial attacks move: targeted PGD, per-unit change, overlap with reference units."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from captum_classpattern.dissection import (
    AttackSettings,
    AttackUnitShift,
    ConceptDataset,
    UnitOverlap,
    UnitRanking,
    attack_unit_shift,
    unit_overlap,
)
from captum_classpattern.training import train_classifier

STRONG = AttackSettings(eps=0.3, step_size=0.05, steps=10)


def planted_model():
    """Unit 3 reads colour channel 2 (x4) and alone feeds class 2; units 0, 1 feed classes 0, 1; unit 2 reads 0 + 1."""
    conv = nn.Conv2d(3, 4, 1)
    head = nn.Linear(4, 3)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[0, 0] = conv.weight[1, 1] = 1.0
        conv.weight[2, 0] = conv.weight[2, 1] = 1.0
        conv.weight[3, 2] = 4.0
        head.weight.zero_()
        head.weight[0, 0] = head.weight[1, 1] = head.weight[2, 3] = 5.0
        head.bias.copy_(torch.tensor([0.0, 0.0, -12.0]))
    model = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)
    images = torch.rand(12, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    return model.eval(), images, torch.arange(12) % 3


@pytest.mark.usefixtures("one_thread")
def test_planted_unit_is_the_most_raised_toward_its_class():
    model, images, labels = planted_model()
    shift = attack_unit_shift(model, "0", images, labels, 2, settings=STRONG)
    assert shift.num_images == 8 and shift.sources == [0, 1] and shift.num_units == 4
    assert shift.clean_rate == 0.0 and shift.success_rate == 1.0 and shift.target_logit_change > 0
    assert shift.top(1) == [3] and shift.top(1, standardized=False) == [3]
    assert shift.change[3] > 0 and (shift.change[[0, 1, 2]] < 0).all()
    np.testing.assert_allclose(shift.standardized, shift.change / shift.clean_std)
    only_zero = attack_unit_shift(model, model[0], images, labels, 2, source=0, settings=STRONG)
    assert only_zero.sources == [0] and only_zero.num_images == 4
    back = AttackUnitShift.from_dict(shift.to_dict())
    np.testing.assert_array_equal(back.change, shift.change)
    assert back.top(4) == shift.top(4) and back.success_rate == shift.success_rate


@pytest.mark.usefixtures("one_thread")
def test_attack_on_a_trained_model_succeeds_and_raises_the_target_logit():
    data = ConceptDataset(240, image_size=16, seed=0, shapes=("circle", "square", "triangle"))
    images, _, _, labels = data.tensors()
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 12, 3, padding=1),
        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, 3),
    )  # fmt: skip
    model = train_classifier(model, images, labels, epochs=10, lr=1e-2, batch_size=32, seed=0)
    settings = AttackSettings(eps=32 / 255, step_size=8 / 255, steps=8)
    shift = attack_unit_shift(model, "5", images[:60], labels[:60], 1, settings=settings)
    assert shift.success_rate > 0.5 and shift.success_rate > shift.clean_rate
    assert shift.target_logit_change > 0 and shift.num_units == 12
    assert not model.training


def hand_shift(target, order, width=10):
    change = np.zeros(width)
    change[order] = np.arange(len(order), 0, -1, dtype=float)
    return AttackUnitShift(
        layer="x", target=target, sources=[0], change=change, clean_mean=np.zeros(width),
        clean_std=np.ones(width), success_rate=1.0, clean_rate=0.0, target_logit_change=1.0, num_images=1,
    )  # fmt: skip


def test_overlap_and_chance_arithmetic_on_a_hand_made_case():
    shift = hand_shift(1, [0, 1, 2])
    overlap = unit_overlap(shift, [1, 2, 5, 7], n=3, random_trials=20000)
    assert overlap.raised == [[0, 1, 2]] and overlap.overlaps == [2]
    assert overlap.expected == [pytest.approx(1.2)]
    assert overlap.p_values[0] == pytest.approx((6 * 6 + 4) / 120)  # P(X >= 2), hypergeometric(10, 4, 3)
    assert overlap.random_overlaps[0] == pytest.approx(1.2, abs=0.03)
    pair = unit_overlap([shift, hand_shift(2, [0, 1, 2])], {1: [1, 2, 5, 7], 2: [0, 3, 8, 9]}, n=3)
    assert pair.overlaps == [2, 1]
    pmf = np.array([20, 60, 36, 4]) / 120
    assert pair.p_value == pytest.approx(sum(pmf[i] * pmf[j] for i in range(4) for j in range(4) if i + j >= 3))
    summary = pair.summary()
    assert summary["overlap"] == 1.5 and summary["expected"] == pytest.approx(1.2) and summary["targets"] == 2
    ranking = UnitRanking(
        baseline=np.ones(3), drops=np.zeros((10, 3)), log_prob_drops=np.tile(np.arange(10.0)[:, None], (1, 3)),
        units=list(range(10)), num_units=10,
    )  # fmt: skip
    from_ranking = unit_overlap(shift, ranking, n=3, m=2)
    assert from_ranking.reference == [[9, 8]] and from_ranking.overlaps == [0]
    assert UnitOverlap.from_dict(pair.to_dict()) == pair
    same_seed = unit_overlap(shift, [1, 2, 5, 7], n=3, random_trials=50, seed=3)
    assert same_seed.random_overlaps == unit_overlap(shift, [1, 2, 5, 7], n=3, random_trials=50, seed=3).random_overlaps


@pytest.mark.usefixtures("one_thread")
def test_errors():
    model, images, labels = planted_model()
    with pytest.raises(ValueError, match="both class 2"):
        attack_unit_shift(model, "0", images, labels, 2, source=2)
    with pytest.raises(ValueError, match="out of range"):
        attack_unit_shift(model, "0", images, labels, 3)
    with pytest.raises(ValueError, match="empty"):
        attack_unit_shift(model, "0", images[:0], labels[:0], 1)
    with pytest.raises(ValueError, match="no image of class 1"):
        attack_unit_shift(model, "0", images[::3], labels[::3], 2, source=1)
    with pytest.raises(ValueError, match="every image is of class 0"):
        attack_unit_shift(model, "0", images[::3], labels[::3], 0)
    with pytest.raises(ValueError, match="eps must be a positive"):
        AttackSettings(eps=-1.0)
    with pytest.raises(TypeError, match="AttackSettings"):
        attack_unit_shift(model, "0", images, labels, 1, settings={"eps": 0.1})
    shift = hand_shift(1, [0, 1, 2])
    with pytest.raises(ValueError, match="n must be"):
        shift.top(11)
    with pytest.raises(ValueError, match="shifts is empty"):
        unit_overlap([], [1])
    with pytest.raises(ValueError, match="distinct units"):
        unit_overlap(shift, [1, 12], n=3)
    with pytest.raises(ValueError, match="no units for target class 1"):
        unit_overlap(shift, {2: [1]}, n=3)
    with pytest.raises(ValueError, match="different widths"):
        unit_overlap([shift, hand_shift(2, [0], width=12)], [1], n=3)

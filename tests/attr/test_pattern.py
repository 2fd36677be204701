"""Top-k patterns and stamping."""

import warnings

import pytest
import torch

from captum_classpattern import Pattern, random_pattern, top_k_pattern
from captum_classpattern.attr import pixel_budget


def test_top_k_keeps_the_largest_pixels_with_canvas_values():
    canvas = torch.arange(2 * 3 * 3, dtype=torch.float).reshape(2, 3, 3) / 20
    scores = torch.tensor([[0.1, 0.9, 0.2], [0.8, 0.0, 0.3], [0.4, 0.5, 0.7]])
    pattern = top_k_pattern(scores, canvas, 3)
    expected = torch.tensor([[0, 1, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.bool)
    assert torch.equal(pattern.mask, expected)
    assert torch.equal(pattern.values[:, expected], canvas[:, expected])
    assert float(pattern.values[:, ~expected].abs().sum()) == 0
    assert pattern.k == 3


def test_channels_are_summed_and_fraction_budget():
    canvas = torch.rand(3, 10, 10)
    attribution = torch.zeros(3, 10, 10)
    attribution[0, 0, 0] = 5
    attribution[1, 0, 0] = -4  # the sum (1.0) still ranks first
    attribution[2, 9, 9] = 0.5
    pattern = top_k_pattern(attribution, canvas, 0.02)
    assert pattern.k == 2 and pattern.mask[0, 0] and pattern.mask[9, 9]


def test_absolute_ranks_negative_evidence():
    scores = torch.tensor([[-5.0, 1.0], [0.0, 2.0]])
    assert top_k_pattern(scores, torch.rand(1, 2, 2), 1, absolute=True).mask[0, 0]
    assert top_k_pattern(scores, torch.rand(1, 2, 2), 1).mask[1, 1]


def test_stamp_sets_only_the_mask_and_copies():
    canvas = torch.ones(1, 4, 4)
    pattern = top_k_pattern(torch.eye(4), canvas, 4)
    images = torch.zeros(5, 1, 4, 4)
    stamped = pattern.stamp(images)
    assert float(images.sum()) == 0  # untouched
    assert torch.equal(stamped[:, 0], torch.eye(4).expand(5, 4, 4))


def test_random_pattern_is_seeded():
    canvas = torch.rand(1, 8, 8)
    a = random_pattern(canvas, 5, torch.Generator().manual_seed(0))
    b = random_pattern(canvas, 5, torch.Generator().manual_seed(0))
    assert torch.equal(a.mask, b.mask) and a.k == 5


@pytest.mark.parametrize(
    "k, error",
    [(0, ValueError), (17, ValueError), (1.5, ValueError), (0.0, ValueError), ("3", TypeError), (True, TypeError)],
)
def test_bad_budgets(k, error):
    with pytest.raises(error):
        pixel_budget(k, 4, 4)


def test_shape_errors():
    with pytest.raises(ValueError, match="per pixel"):
        top_k_pattern(torch.rand(5, 5), torch.rand(1, 4, 4), 2)
    with pytest.raises(ValueError, match="NaN"):
        top_k_pattern(torch.full((4, 4), float("nan")), torch.rand(1, 4, 4), 2)
    pattern = top_k_pattern(torch.rand(4, 4), torch.rand(1, 4, 4), 2)
    with pytest.raises(ValueError, match="cannot stamp"):
        pattern.stamp(torch.rand(2, 3, 4, 4))
    with pytest.raises(ValueError, match="bool"):
        Pattern(torch.zeros(4, 4), torch.zeros(1, 4, 4))


def test_top_k_warns_when_the_budget_exceeds_the_supporting_pixels():
    canvas = torch.rand(1, 4, 4)
    collapsed = torch.zeros(4, 4)
    collapsed[0, :3] = 1.0
    with pytest.warns(RuntimeWarning, match="only 3 of the 5 pixels"):
        top_k_pattern(collapsed, canvas, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert int(top_k_pattern(collapsed, canvas, 3).mask.sum()) == 3

"""The top-k rule for ties: score, then the tie-break score, then the lowest pixel index."""

import pytest
import torch

from captum_classpattern.attr import ClassPattern, SearchSchedule, top_k_mask, top_k_pattern


def _grid_map(seed: int = 0) -> torch.Tensor:
    """A 6 x 6 map on a coarse grid of values, as signed steps leave it: many equal values."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 4, (6, 6), generator=generator).float() / 4


def test_documented_rule_on_a_hand_made_map():
    scores = torch.tensor([[0.5, 1.0, 0.5], [1.0, 0.0, 0.5], [0.5, 1.0, 0.25]])
    # Three 1.0s, then four 0.5s in row-major order: indices 0, 2, 5, 6.
    mask = top_k_mask(scores, 5)
    expected = torch.zeros(9, dtype=torch.bool)
    expected[[1, 3, 7, 0, 2]] = True
    assert torch.equal(mask.flatten(), expected)
    # The tie-break score reorders the 0.5s: index 6 has the most evidence, then 5.
    tie_break = torch.zeros(3, 3)
    tie_break.view(-1)[6] = 2.0
    tie_break.view(-1)[5] = 1.0
    mask = top_k_mask(scores, 5, tie_break)
    expected = torch.zeros(9, dtype=torch.bool)
    expected[[1, 3, 7, 6, 5]] = True
    assert torch.equal(mask.flatten(), expected)


def test_tie_break_changes_the_choice_only_among_ties():
    scores = _grid_map()
    base = top_k_mask(scores, 10)
    kth = scores.flatten().sort(descending=True).values[9]
    for seed in range(5):
        tie_break = torch.randn(6, 6, generator=torch.Generator().manual_seed(seed))
        mask = top_k_mask(scores, 10, tie_break)
        assert int(mask.sum()) == 10
        # Pixels above the k-th value are always kept, those below never.
        assert bool(mask[scores > kth].all()) and not bool(mask[scores < kth].any())
        assert torch.equal(mask[scores != kth], base[scores != kth])
        # Among the tied pixels, the kept ones have the highest tie-break scores.
        tied = scores == kth
        kept, dropped = tie_break[tied & mask], tie_break[tied & ~mask]
        if kept.numel() and dropped.numel():
            assert float(kept.min()) >= float(dropped.max())


def test_same_map_same_mask_in_any_dtype_and_order():
    scores = _grid_map(1)
    reference = top_k_mask(scores, 12)
    assert torch.equal(top_k_mask(scores.double(), 12), reference)
    assert torch.equal(top_k_mask(scores.t().contiguous().t(), 12), reference)  # another memory layout
    assert torch.equal(top_k_mask(scores.half(), 12), reference)  # the grid values are exact in float16
    # A map of one value everywhere: the first k pixels in row-major order.
    flat = top_k_mask(torch.full((6, 6), 0.5), 7).flatten()
    assert flat[:7].all() and not flat[7:].any()
    # Rolling the tie-break with the scores rolls the mask (the rule follows the values, not memory order).
    tie_break = torch.randn(6, 6, generator=torch.Generator().manual_seed(3))
    rolled = top_k_mask(scores.roll(1, 0), 12, tie_break.roll(1, 0))
    unique = torch.unique(torch.stack([scores.flatten(), tie_break.flatten()], 1), dim=0).shape[0] == 36
    if unique:
        assert torch.equal(rolled, top_k_mask(scores, 12, tie_break).roll(1, 0))


def test_top_k_pattern_takes_the_tie_break_and_checks_it():
    canvas = torch.rand(3, 6, 6, generator=torch.Generator().manual_seed(0))
    scores = _grid_map(2)
    tie_break = torch.randn(6, 6, generator=torch.Generator().manual_seed(1))
    pattern = top_k_pattern(scores, canvas, 8, tie_break=tie_break, warn_filler=False)
    assert torch.equal(pattern.mask, top_k_mask(scores, 8, tie_break))
    # Channels of a C x H x W tie-break are summed, like those of the attribution.
    same = top_k_pattern(scores, canvas, 8, tie_break=tie_break.expand(3, 6, 6), warn_filler=False)
    assert torch.equal(same.mask, pattern.mask)
    with pytest.raises(ValueError, match="tie_break"):
        top_k_mask(scores, 8, torch.zeros(5, 5))
    with pytest.raises(ValueError, match="NaN"):
        top_k_mask(scores, 8, torch.full((6, 6), float("nan")))


def test_class_pattern_records_the_tie_break(linear_model, toy_split):
    images, labels = toy_split.images, toy_split.labels
    explainer = ClassPattern(linear_model)
    assert explainer.last_tie_break is None
    plan = SearchSchedule(steps=4, batch_size=2)
    maps = explainer.attribute(images[:2], target=[0, 1], baselines=images, baseline_labels=labels, schedule=plan)
    evidence = explainer.last_tie_break
    assert evidence is not None and evidence.shape == (2, 4, 4)
    assert torch.isfinite(evidence).all() and bool((evidence != 0).any())
    # A canvas searched alone gets the same evidence (each canvas has its own stream of images).
    alone = ClassPattern(linear_model)
    alone.attribute(images[:1], target=0, baselines=images, baseline_labels=labels, schedule=plan)
    assert torch.equal(alone.last_tie_break[0], evidence[0])
    pattern = top_k_pattern(maps[0], images[0], 5, tie_break=evidence[0], warn_filler=False)
    assert torch.equal(pattern.mask, top_k_mask(maps[0, 0], 5, evidence[0]))

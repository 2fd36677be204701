"""Shape measures of top-k masks."""

import math

import numpy as np
import pytest
import torch

from captum_classpattern.attr import Pattern
from captum_classpattern.metrics import (
    compactness,
    connected_components,
    simplicity,
    summarise_simplicity,
    total_variation,
)


def _mask(points, size=8):
    mask = torch.zeros(size, size, dtype=torch.bool)
    for r, c in points:
        mask[r, c] = True
    return mask


def test_components_use_8_connectivity():
    assert connected_components(_mask([(0, 0), (1, 1)])) == 1  # diagonal neighbours join
    assert connected_components(_mask([(0, 0), (0, 2)])) == 2
    assert connected_components(_mask([(0, 0), (7, 7), (3, 3), (3, 4), (4, 5)])) == 3
    assert connected_components(torch.zeros(4, 4, dtype=torch.bool)) == 0
    ring = torch.ones(5, 5, dtype=torch.bool)
    ring[1:4, 1:4] = False
    assert connected_components(ring) == 1


def test_components_match_scipy_on_random_masks():
    ndimage = pytest.importorskip("scipy.ndimage")
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        mask = torch.rand(32, 32, generator=generator) < 0.2
        _, expected = ndimage.label(mask.numpy(), structure=np.ones((3, 3)))
        assert connected_components(mask) == expected


def test_total_variation_counts_boundary_edges():
    assert total_variation(_mask([(3, 3)])) == 4
    square = torch.zeros(8, 8, dtype=torch.bool)
    square[2:5, 2:5] = True
    assert total_variation(square) == 12
    corner = torch.zeros(8, 8, dtype=torch.bool)
    corner[5:, 5:] = True
    assert total_variation(corner) == 6  # the image border is not a boundary


def test_compactness_prefers_blobs_to_scatter():
    square = torch.zeros(16, 16, dtype=torch.bool)
    square[4:10, 4:10] = True
    scattered = _mask([(0, 0), (0, 15), (15, 0), (15, 15), (7, 7), (3, 12)], size=16)
    fill, spread = compactness(square)
    assert fill == 1.0 and 0.9 < spread < 1.2
    fill_s, spread_s = compactness(scattered)
    assert fill_s < 0.1 and spread_s > 2 * spread
    with pytest.raises(ValueError):
        compactness(torch.zeros(3, 3, dtype=torch.bool))


def test_simplicity_bundle_accepts_patterns_and_summarises():
    mask = _mask([(1, 1), (1, 2), (6, 6)])
    pattern = Pattern(mask, torch.zeros(1, 8, 8))
    measures = simplicity(pattern)
    assert measures.k == 3 and measures.components == 2
    assert math.isclose(measures.boundary_per_pixel, measures.total_variation / 3)
    summary = summarise_simplicity([mask, _mask([(0, 0)])])
    assert summary["components"] == 1.5 and summary["k"] == 2


def test_bad_masks():
    with pytest.raises(TypeError, match="boolean"):
        simplicity(torch.ones(4, 4))
    with pytest.raises(ValueError, match="H x W"):
        simplicity(torch.ones(1, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="empty"):
        simplicity(torch.zeros(4, 4, dtype=torch.bool))
    with pytest.raises(TypeError):
        connected_components([[True]])
    with pytest.raises(ValueError):
        summarise_simplicity([])

"""How simple is a pattern's shape? Measures of a top-k pixel mask.

Zhao et al. (2021) observe that adversarially trained models have simpler class
patterns than naturally trained ones. These measures make "simpler"
countable for a boolean H x W mask (e.g. :attr:`Pattern.mask`):

* :func:`connected_components`: number of 8-connected blobs (fewer is simpler);
* :func:`total_variation`: number of 4-neighbour pixel pairs with one pixel in and one out
  of the mask, i.e. the length of the boundary (:func:`simplicity` divides it by the
  mask's area: a lone pixel scores 4, a large square close to 0);
* :func:`compactness`: the share of the bounding box the mask fills, and its spread, the
  mean distance of its pixels to their centroid divided by that of a disc of the same
  area (1 for a disc, larger when scattered).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass
from typing import Dict, Iterable, List, Tuple, Union

import numpy as np
from torch import Tensor

from ..attr import Pattern

MaskLike = Union[Tensor, np.ndarray, Pattern]


def _as_mask(mask: MaskLike) -> np.ndarray:
    if isinstance(mask, Pattern):
        mask = mask.mask
    if isinstance(mask, Tensor):
        mask = mask.detach().cpu().numpy()
    if not isinstance(mask, np.ndarray):
        raise TypeError(f"mask must be an H x W bool tensor/array or a Pattern, got {type(mask).__name__}.")
    if mask.ndim != 2:
        raise ValueError(f"mask must be H x W, got shape {mask.shape}.")
    if mask.dtype != np.bool_:
        raise TypeError(f"mask must be boolean (e.g. Pattern.mask or map >= t), got dtype {mask.dtype}.")
    return mask


def connected_components(mask: MaskLike) -> int:
    """Number of 8-connected components of the mask's pixels.

    Args:
        mask: H x W boolean mask (tensor, array or :class:`Pattern`).

    Returns:
        The number of components (0 for an empty mask).

    Raises:
        TypeError: a non-boolean mask.
        ValueError: a mask that is not 2-d.

    Example:
        >>> connected_components(pattern.mask)
        3
    """
    grid = _as_mask(mask)
    height, width = grid.shape
    seen = np.zeros_like(grid)
    count = 0
    # A breadth-first flood fill: masks are small (a few hundred pixels at most).
    for start in zip(*np.nonzero(grid)):
        if seen[start]:
            continue
        count += 1
        seen[start] = True
        queue = deque([start])
        while queue:
            row, col = queue.popleft()
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    r, c = row + dr, col + dc
                    if 0 <= r < height and 0 <= c < width and grid[r, c] and not seen[r, c]:
                        seen[r, c] = True
                        queue.append((r, c))
    return count


def total_variation(mask: MaskLike) -> float:
    """Anisotropic total variation: 4-neighbour pairs with exactly one pixel in the mask.

    The image border does not count as a boundary, so a pattern touching the edge is
    not penalised for it.

    Args:
        mask: H x W boolean mask.

    Returns:
        The boundary length in pixel edges.
    """
    grid = _as_mask(mask).astype(np.int8)
    return float(np.abs(np.diff(grid, axis=0)).sum() + np.abs(np.diff(grid, axis=1)).sum())


def compactness(mask: MaskLike) -> Tuple[float, float]:
    """Bounding-box fill and normalised spread of the mask.

    Args:
        mask: H x W boolean mask (not empty).

    Returns:
        ``(bbox_fill, spread)``: the area divided by the bounding box's area (1 for a
        filled rectangle), and the mean distance of the pixels to their centroid divided
        by ``(2 / 3) sqrt(area / pi)``, the value for a disc of the same area (about 1 for
        a compact blob, larger when the pixels are scattered).

    Raises:
        ValueError: an empty mask.
    """
    grid = _as_mask(mask)
    rows, cols = np.nonzero(grid)
    area = rows.size
    if area == 0:
        raise ValueError("compactness of an empty mask is undefined.")
    box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
    distance = np.hypot(rows - rows.mean(), cols - cols.mean()).mean()
    disc = (2.0 / 3.0) * math.sqrt(area / math.pi)
    return float(area / box), float(distance / disc)


@dataclass
class Simplicity:
    """Shape measures of one mask (see the module docstring).

    Attributes:
        k: pixels in the mask.
        components: 8-connected components (fewer is simpler).
        total_variation: boundary length in pixel edges.
        boundary_per_pixel: ``total_variation / k`` (lower is simpler).
        bbox_fill: area over bounding-box area (higher is simpler).
        spread: mean distance to the centroid relative to a disc (lower is simpler).
    """

    k: int
    components: int
    total_variation: float
    boundary_per_pixel: float
    bbox_fill: float
    spread: float

    def to_dict(self) -> Dict[str, float]:
        """The measures as a plain dict."""
        return asdict(self)


def simplicity(mask: MaskLike) -> Simplicity:
    """All shape measures of one mask.

    Args:
        mask: H x W boolean mask or a :class:`Pattern`.

    Returns:
        A :class:`Simplicity`.

    Raises:
        TypeError: a non-boolean mask.
        ValueError: an empty or non-2-d mask.

    Example:
        >>> pattern = top_k_pattern(maps[3], canvases[3], k=0.05)
        >>> simplicity(pattern).components
    """
    grid = _as_mask(mask)
    area = int(grid.sum())
    if area == 0:
        raise ValueError("the mask is empty.")
    tv = total_variation(grid)
    fill, spread = compactness(grid)
    return Simplicity(
        k=area,
        components=connected_components(grid),
        total_variation=tv,
        boundary_per_pixel=tv / area,
        bbox_fill=fill,
        spread=spread,
    )


def summarise_simplicity(masks: Iterable[MaskLike]) -> Dict[str, float]:
    """Mean of each measure over several masks (e.g. one pattern per class).

    Args:
        masks: masks or patterns.

    Returns:
        A dict of mean values keyed by measure name.

    Raises:
        ValueError: no masks.
    """
    measures: List[Simplicity] = [simplicity(m) for m in masks]
    if not measures:
        raise ValueError("no masks to summarise.")
    keys = measures[0].to_dict().keys()
    return {key: float(np.mean([m.to_dict()[key] for m in measures])) for key in keys}

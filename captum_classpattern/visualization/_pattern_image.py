"""Patterns as pictures: the pattern's pixels with their values, the rest of the image a blank ground."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from ..attr import Pattern
from ._figure import bare

if TYPE_CHECKING:
    from matplotlib.axes import Axes

RGB_GROUND = (1.0, 1.0, 1.0)
"""Ground of a colour pattern: white, as in the figures of Zhao et al. (2021)."""

GRAY_GROUND = (0.45, 0.70, 0.95)
"""Ground of a grayscale pattern: light blue. White would hide the white strokes of
digits, black their background pixels; a hue no gray pixel can take keeps both visible."""


def pattern_image(pattern: Pattern, ground: Optional[Sequence[float]] = None) -> np.ndarray:
    """Render a pattern as an RGB picture: its pixels with their values, the rest blank.

    Args:
        pattern: the :class:`~captum_classpattern.attr.Pattern` to draw.
        ground: RGB colour (three floats in [0, 1]) of the pixels outside the pattern.
            Defaults to white (:data:`RGB_GROUND`) for colour patterns and to light blue
            (:data:`GRAY_GROUND`) for grayscale ones, where white would hide white strokes.

    Returns:
        An H x W x 3 float array in [0, 1], ready for ``ax.imshow``.

    Raises:
        TypeError: ``pattern`` is not a Pattern.
        ValueError: ``ground`` is not three values in [0, 1], or the pattern has neither
            1 nor 3 channels.

    Example:
        >>> picture = pattern_image(top_k_pattern(maps[0], canvases[0], k=0.05))
        >>> ax.imshow(picture)
    """
    if not isinstance(pattern, Pattern):
        raise TypeError(f"pattern must be a Pattern (see top_k_pattern), got {type(pattern).__name__}.")
    values = pattern.values.detach().cpu().float().clamp(0, 1).numpy().transpose(1, 2, 0)
    if values.shape[2] not in (1, 3):
        raise ValueError(f"a pattern must have 1 or 3 channels to be drawn, got {values.shape[2]}.")
    if ground is None:
        ground = GRAY_GROUND if values.shape[2] == 1 else RGB_GROUND
    ground_array = np.asarray(ground, dtype=np.float64).reshape(-1)
    if ground_array.shape != (3,) or ground_array.min() < 0 or ground_array.max() > 1:
        raise ValueError(f"ground must be three RGB values in [0, 1], got {ground!r}.")
    mask = pattern.mask.detach().cpu().numpy()[:, :, None]
    return np.where(mask, np.repeat(values, 3, axis=2) if values.shape[2] == 1 else values, ground_array)


def draw_pattern_panel(ax: Axes, pattern: Pattern, ground: Optional[Sequence[float]]) -> None:
    """Draw :func:`pattern_image` on ``ax`` in a thin grey frame, so the image bounds show on a white figure."""
    ax.imshow(pattern_image(pattern, ground), interpolation="nearest")
    bare(ax)
    for spine in ax.spines.values():
        spine.set_visible(True)
        spine.set_edgecolor("0.7")
        spine.set_linewidth(0.8)

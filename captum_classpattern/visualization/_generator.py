"""Figures of generator interventions: generated images before and after, the changed region marked."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from .._utils import check_images, check_positive_int
from ._figure import FloatPair, finish, grid_figure, show_image

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def plot_generated_edits(
    before: Tensor,
    after: Tensor,
    region: Optional[Tensor] = None,
    *,
    num_images: int = 6,
    row_labels: Sequence[str] = ("before", "after"),
    outline_color: str = "white",
    use_pyplot: bool = True,
    fig_size: Optional[FloatPair] = None,
) -> Tuple[Figure, np.ndarray]:
    """Draw generated (or edited) images before and after an intervention, the region outlined.

    Args:
        before: N x 3 x H x W images in [0, 1] without the intervention.
        after: the same images with it (same shape).
        region: optional H x W or N x H x W bool region that was changed, outlined on
            both rows.
        num_images: columns (the first ``num_images`` images).
        row_labels: the two rows' labels.
        outline_color: colour of the region's outline.
        use_pyplot: create the figure through pyplot and show it (Captum's default);
            ``False`` builds a :class:`matplotlib.figure.Figure` directly.
        fig_size: figure size in inches; by default about 1.3 inches per panel.

    Returns:
        ``(fig, axes)`` with ``axes`` a 2 x num_images array.

    Raises:
        ValueError: images of different shapes or not RGB, ``num_images`` out of range, a
            region of the wrong size, not two row labels.
        TypeError: a region that is not a bool tensor.

    Example:
        >>> with intervene(net.decoder, "relu1", red_units, value=values, mask=region):
        ...     edited = net.decoder(latents)
        >>> fig, axes = plot_generated_edits(net.decoder(latents), edited, region, use_pyplot=False)
    """
    check_images(before, "before")
    check_images(after, "after")
    if before.shape != after.shape or before.shape[1] != 3:
        raise ValueError(
            f"before and after must be RGB images of the same shape, got {tuple(before.shape)} and "
            f"{tuple(after.shape)}."
        )
    check_positive_int(num_images, "num_images")
    if num_images > before.shape[0]:
        raise ValueError(f"num_images must be at most the number of images ({before.shape[0]}), got {num_images}.")
    labels = [str(label) for label in row_labels]
    if len(labels) != 2:
        raise ValueError(f"row_labels must name the two rows, got {row_labels!r}.")
    outlines = _outlines(region, before)
    fig, axes = grid_figure(2, num_images, use_pyplot, fig_size)
    for row, images in enumerate((before, after)):
        for col in range(num_images):
            ax = axes[row, col]
            show_image(ax, images[col])
            if outlines is not None:
                outline = outlines[col if outlines.shape[0] > 1 else 0]
                if outline.any() and not outline.all():
                    ax.contour(outline.astype(float), levels=[0.5], colors=outline_color, linewidths=1.2)
            if col == 0:
                ax.set_ylabel(labels[row])
    finish(use_pyplot)
    return fig, axes


def _outlines(region: Optional[Tensor], images: Tensor) -> Optional[np.ndarray]:
    if region is None:
        return None
    if not isinstance(region, Tensor) or region.dtype != torch.bool:
        raise TypeError("region must be a bool tensor H x W or N x H x W.")
    if region.dim() not in (2, 3) or tuple(region.shape[-2:]) != tuple(images.shape[-2:]):
        raise ValueError(
            f"region must be H x W or N x H x W at the images' size {tuple(images.shape[-2:])}, "
            f"got {tuple(region.shape)}."
        )
    if region.dim() == 3 and region.shape[0] not in (1, images.shape[0]):
        raise ValueError(f"region holds {region.shape[0]} masks for {images.shape[0]} images.")
    return region.reshape(-1, *region.shape[-2:]).cpu().numpy()

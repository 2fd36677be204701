"""Figures of network dissection: the images that most activate a unit, its thresholded region marked."""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._utils import accepts_older_keywords, check_positive_int
from ..dissection import DissectionResult, LayerSpec, unit_activations
from ._display import OLDER_TOP_ACTIVATIONS_KEYWORDS, TopActivationsOptions, check_display, display_folder
from ._figure import FloatPair, finish, new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _as_rgb(image: Tensor) -> np.ndarray:
    """H x W x 3 for a 3-channel image, else the H x W mean over channels (drawn in gray)."""
    array = image.detach().float().cpu().clamp(0, 1)
    if array.shape[0] == 3:
        return array.permute(1, 2, 0).numpy()
    return array.mean(0).numpy()  # one (or an unusual number of) channels: grey


_DEFAULT_DISPLAY = TopActivationsOptions()


@accepts_older_keywords(
    OLDER_TOP_ACTIVATIONS_KEYWORDS, display_folder(TopActivationsOptions, OLDER_TOP_ACTIVATIONS_KEYWORDS)
)
def plot_top_activations(
    model: nn.Module,
    layer: LayerSpec,
    result: DissectionResult,
    images: Tensor,
    units: Sequence[int],
    *,
    display: TopActivationsOptions = _DEFAULT_DISPLAY,
    batch_size: int = 64,
    device: Optional[Union[str, torch.device]] = None,
    use_pyplot: bool = True,
    fig_size: Optional[FloatPair] = None,
) -> Tuple[Figure, np.ndarray]:
    """Draw each unit's top-activating images with the region above its threshold outlined.

    Images are ranked by the unit's maximum activation; the outline is the unit's map
    upsampled bilinearly to the image and cut at its dissection threshold.

    Args:
        model: the dissected network (left as found).
        layer: the dissected layer (module or dotted name).
        result: the :class:`DissectionResult` of that layer.
        images: N x C x H x W images in [0, 1] to search for top activations.
        units: the units to draw, one row each.
        display: the images per unit (``num_images``, the columns) and the outline's
            colour (``outline_color``) (:class:`TopActivationsOptions`); those keywords
            are still accepted.
        batch_size: images per model call.
        device: where to run; default the model's device.
        use_pyplot: create the figure through pyplot and show it (Captum's default);
            ``False`` builds a :class:`matplotlib.figure.Figure` directly (no global
            state, safe in threads and servers).
        fig_size: figure size in inches; by default 1.6 x 1.7 inches per panel.

    Returns:
        ``(fig, axes)`` with ``axes`` a len(units) x num_images array.

    Raises:
        ValueError: units out of range, ``num_images`` or ``batch_size`` out of range, images
            of the wrong shape.
        TypeError: ``display`` is not a :class:`TopActivationsOptions`.

    Example:
        >>> fig, axes = plot_top_activations(model, "features.relu4", result, images,
        ...                                  result.units_for("circle")[:3], use_pyplot=False)
    """
    check_display(display, TopActivationsOptions)
    num_images, outline_color = display.num_images, display.outline_color
    if not isinstance(images, Tensor) or images.dim() != 4:
        raise ValueError("images must be a tensor N x C x H x W.")
    chosen = [int(u) for u in units]
    if not chosen or any(u < 0 or u >= result.num_units for u in chosen):
        raise ValueError(f"units must be a non-empty list of unit indices in 0..{result.num_units - 1}, got {units}.")
    if isinstance(num_images, bool) or not isinstance(num_images, int) or not 1 <= num_images <= images.shape[0]:
        raise ValueError(f"num_images must be an int in 1..{images.shape[0]}, got {num_images!r}.")
    check_positive_int(batch_size, "batch_size")
    scores = torch.empty(images.shape[0], len(chosen))
    for start, features in unit_activations(model, layer, images, chosen, batch_size=batch_size, device=device):
        scores[start : start + features.shape[0]] = features.amax((2, 3)).cpu()
    top = scores.topk(num_images, dim=0).indices.t()  # units x num_images
    picked = sorted(set(top.flatten().tolist()))
    maps: Dict[int, Tensor] = {}
    for start, features in unit_activations(model, layer, images[picked], chosen, batch_size=batch_size, device=device):
        upsampled = F.interpolate(features, size=tuple(images.shape[2:]), mode="bilinear", align_corners=False)
        for offset, image_index in enumerate(picked[start : start + features.shape[0]]):
            maps[image_index] = upsampled[offset].cpu()
    fig = new_figure(use_pyplot, fig_size or (1.6 * num_images, 1.7 * len(chosen)))
    axes = fig.subplots(len(chosen), num_images, squeeze=False)
    concepts, ious = result.unit_concepts, result.unit_ious
    for row, unit in enumerate(chosen):
        for col in range(num_images):
            image_index = int(top[row, col])
            ax = axes[row, col]
            ax.imshow(_as_rgb(images[image_index]), cmap="gray", vmin=0, vmax=1)
            region = (maps[image_index][row] > float(result.thresholds[unit])).numpy()
            if region.any() and not region.all():  # contour needs both sides of the level
                ax.contour(region.astype(float), levels=[0.5], colors=outline_color, linewidths=1.5)
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_title(f"unit {unit}: {concepts[unit] or '-'} (IoU {ious[unit]:.2f})", fontsize=8, loc="left")
    finish(use_pyplot)
    return fig, axes

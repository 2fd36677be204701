"""One panel, Captum-style: :func:`visualize_class_pattern` with Captum's arguments, plus the ``"pattern"`` method."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from .._utils import accepts_older_keywords, check_choice
from ..attr import Budget, pixel_budget, top_k_pattern
from ._display import OLDER_PANEL_KEYWORDS, PanelOptions, check_display, display_folder
from ._figure import FloatPair, figure_and_axis, finish
from ._inputs import as_hwc, as_unit_image, gray_to_rgb, signed
from ._pattern_image import draw_pattern_panel

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

IMAGE_METHODS = ("heat_map", "blended_heat_map", "original_image", "masked_image", "alpha_scaling", "pattern")
"""The ``method`` values of :func:`visualize_class_pattern`: Captum's five, plus ``"pattern"``."""

SIGNS = ("positive", "absolute_value", "negative", "all")
"""The ``sign`` values of :func:`visualize_class_pattern` (Captum's vocabulary)."""

_NEEDS_IMAGE = ("blended_heat_map", "original_image", "masked_image", "alpha_scaling", "pattern")
# These methods show one magnitude per pixel, so positive and negative evidence cannot both
# be shown; Captum asserts on sign="all" for the first two, we raise ValueError up front.
_ONE_SIGN_ONLY = ("masked_image", "alpha_scaling", "pattern")


_DEFAULT_PANEL = PanelOptions()


def _validate_single(
    method: str, sign: str, attr: Any, original_image: Any, display: PanelOptions, k: Budget
) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    check_choice(method, IMAGE_METHODS, "method")
    check_choice(sign, SIGNS, "sign")
    if method in _ONE_SIGN_ONLY and sign == "all":
        raise ValueError(
            f"method {method!r} shows one magnitude per pixel and cannot show sign='all'; "
            "use 'positive', 'negative' or 'absolute_value'."
        )
    check_display(display, PanelOptions)
    scores = as_hwc(attr, "attr")
    image = None
    if original_image is not None:
        image = as_unit_image(as_hwc(original_image, "original_image"), "original_image")
        if image.shape[:2] != scores.shape[:2]:
            raise ValueError(
                f"attr is {scores.shape[0]} x {scores.shape[1]} pixels but original_image is "
                f"{image.shape[0]} x {image.shape[1]}."
            )
        if scores.shape[2] not in (1, image.shape[2]):
            raise ValueError(f"attr has {scores.shape[2]} channels; expected 1 or {image.shape[2]} (the image's).")
    elif method in _NEEDS_IMAGE:
        raise ValueError(f"method {method!r} needs original_image (the canvas); only 'heat_map' draws without it.")
    if method != "original_image" and not np.any(signed(scores.sum(axis=2), sign)):
        raise ValueError(
            f"attr has no {sign} values, so there is nothing to draw (Captum would fail dividing by zero). "
            "ClassPattern maps lie in [0, 1]: use sign='positive'."
        )
    if method == "pattern":
        pixel_budget(k, scores.shape[0], scores.shape[1])  # raises a clear error for a bad k
    return scores, image


@accepts_older_keywords(OLDER_PANEL_KEYWORDS, display_folder(PanelOptions, OLDER_PANEL_KEYWORDS))
def visualize_class_pattern(
    attr: Union[np.ndarray, Tensor],
    original_image: Union[np.ndarray, Tensor, None] = None,
    method: str = "heat_map",
    sign: str = "positive",
    plt_fig_axis: Optional[Tuple[Figure, Axes]] = None,
    display: PanelOptions = _DEFAULT_PANEL,
    fig_size: FloatPair = (6, 6),
    use_pyplot: bool = True,
    k: Budget = 0.05,
) -> Tuple[Figure, Axes]:
    """Draw a ClassPattern map (or any attribution of a canvas) the way Captum draws attributions.

    The arguments and the return value are those of Captum's
    :func:`~captum.attr.visualization.visualize_image_attr` (its display arguments grouped
    in ``display``, and accepted by their names too), and its five methods are
    drawn by that function, so normalisation and colour maps are identical. Differences:
    tensors are accepted (C x H x W, converted explicitly), grayscale canvases are shown in
    gray, the default ``sign`` is ``"positive"`` (a ClassPattern map lies in [0, 1]), bad
    arguments raise :class:`ValueError` before anything is drawn, and there is a sixth
    method, ``"pattern"``.

    Args:
        attr: the map or attribution of one canvas: a numpy array H x W or H x W x C, or
            a tensor H x W, C x H x W or 1 x C x H x W. Channels are summed per pixel.
        original_image: the canvas, in the same layout, with pixels in [0, 1] (or 0-255).
            Needed by every method but ``"heat_map"``. One channel (grayscale) or three.
        method: one of :data:`IMAGE_METHODS`: ``"heat_map"``, ``"blended_heat_map"``
            (heat map over the grayscale canvas), ``"original_image"``,
            ``"masked_image"`` (canvas multiplied by the normalised map),
            ``"alpha_scaling"`` (the normalised map as the canvas's opacity) or
            ``"pattern"`` (the ``k`` highest-scoring canvas pixels on a blank ground,
            exactly the pixels :func:`~captum_classpattern.attr.top_k_pattern`
            keeps).
        sign: one of :data:`SIGNS`. For ``"pattern"``: ``"positive"`` ranks by value,
            ``"absolute_value"`` by magnitude, ``"negative"`` by the most negative values.
        plt_fig_axis: a ``(figure, axis)`` pair to draw on; a new figure if ``None``.
        display: Captum's ``outlier_perc``, ``cmap``, ``alpha_overlay``, ``show_colorbar``
            and ``title`` (:class:`PanelOptions`); those keywords are still accepted.
        fig_size: size in inches of a new figure.
        use_pyplot: create the figure with pyplot and call ``pyplot.show()`` (Captum's
            default); ``False`` builds a :class:`matplotlib.figure.Figure` directly.
        k: pixels of the ``"pattern"`` method: a count, or a fraction of the image.

    Returns:
        ``(figure, axis)``: the figure and the axis drawn on.

    Raises:
        ValueError: an unknown ``method`` or ``sign`` (the message lists the allowed
            values), ``sign="all"`` with a method that shows one sign, a missing
            ``original_image``, shapes that disagree, pixels outside [0, 1]/[0, 255],
            an attribution with no values of the chosen sign, a bad ``k``, or
            ``outlier_perc``/``alpha_overlay`` out of range.
        TypeError: ``attr`` or ``original_image`` is neither a numpy array nor a tensor, or
            ``display`` is not a :class:`PanelOptions`.

    Example:
        >>> maps = ClassPattern(model).attribute(canvases, target=[3], baselines=images,
        ...                                      baseline_labels=labels)
        >>> fig, ax = visualize_class_pattern(maps[0], canvases[0], method="pattern",
        ...                                   k=0.05, use_pyplot=False)
        >>> fig.savefig("pattern_3.png")
    """
    scores, image = _validate_single(method, sign, attr, original_image, display, k)
    if method == "pattern":
        assert image is not None  # checked by _validate_single
        return _visualize_pattern(scores, image, sign, plt_fig_axis, display, fig_size, use_pyplot, k)
    from captum.attr import visualization as captum_viz

    if method == "original_image":
        # Captum normalises the attribution even when it only shows the image; a constant
        # stand-in keeps that from failing on an all-zero map that is not drawn anyway.
        scores = np.ones_like(scores)
    return captum_viz.visualize_image_attr(
        scores,
        None if image is None else gray_to_rgb(image),
        method=method,
        sign=sign,
        plt_fig_axis=plt_fig_axis,
        outlier_perc=display.outlier_perc,
        cmap=display.cmap,
        alpha_overlay=display.alpha_overlay,
        show_colorbar=display.show_colorbar,
        title=display.title,
        fig_size=fig_size,
        use_pyplot=use_pyplot,
    )


def _visualize_pattern(
    scores: np.ndarray,
    image: np.ndarray,
    sign: str,
    plt_fig_axis: Optional[Tuple[Figure, Axes]],
    display: PanelOptions,
    fig_size: FloatPair,
    use_pyplot: bool,
    k: Budget,
) -> Tuple[Figure, Axes]:
    fig, ax = figure_and_axis(plt_fig_axis, use_pyplot, fig_size)
    per_pixel = scores.sum(axis=2)
    ranking = -per_pixel if sign == "negative" else per_pixel
    pattern = top_k_pattern(
        torch.from_numpy(ranking),
        torch.from_numpy(image.transpose(2, 0, 1).copy()),
        k,
        absolute=sign == "absolute_value",
    )
    draw_pattern_panel(ax, pattern, None)
    if display.show_colorbar:
        # Captum adds an empty colour-bar axis for methods without a heat map, so panels
        # with and without colour bars stay aligned in a row; do the same.
        from mpl_toolkits.axes_grid1 import make_axes_locatable

        make_axes_locatable(ax).append_axes("bottom", size="5%", pad=0.1).axis("off")
    if display.title:
        ax.set_title(display.title)
    finish(use_pyplot)
    return fig, ax

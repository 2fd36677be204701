"""Figures for class patterns, in Captum's visualization vocabulary.

:func:`visualize_class_pattern` mirrors :func:`captum.attr.visualization.visualize_image_attr`
(same arguments, same ``(fig, ax)`` return) and draws Captum's own methods through Captum's
public function, so a ClassPattern map is normalised exactly like any other Captum
attribution. It adds the ``"pattern"`` method: the top-k canvas pixels on a blank ground,
as in the figures of Zhao et al. (2021).

The ``plot_*`` functions draw the figures the paper and the examples use: the per-class grid
(canvas, map, pattern), a side-by-side of settings (natural, backdoored, adversarial),
predictive-power curves and anomaly indices.

Every function works without a display. With ``use_pyplot=False`` (the default of the
``plot_*`` functions) a :class:`matplotlib.figure.Figure` is built directly and no global
pyplot state is touched, so figures can be made in threads, servers and tests; save them
with ``fig.savefig(path)``.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from .._utils import check_choice
from ..attr import Budget, Pattern, pixel_budget, top_k_pattern
from ..metrics import PowerCurve
from ._figure import _bare, _figure_and_axis, _finish, _FloatPair, _grid_figure, _show_image
from ._inputs import _as_hwc, _as_unit_image, _check_lengths, _gray_to_rgb, _prepare_setting, _signed, _unpack_setting

IMAGE_METHODS = ("heat_map", "blended_heat_map", "original_image", "masked_image", "alpha_scaling", "pattern")
"""The ``method`` values of :func:`visualize_class_pattern`: Captum's five, plus ``"pattern"``."""

SIGNS = ("positive", "absolute_value", "negative", "all")
"""The ``sign`` values of :func:`visualize_class_pattern` (Captum's vocabulary)."""

PATTERN_ROWS = ("canvas", "map", "pattern")
"""The rows :func:`plot_settings_comparison` can draw for each setting."""

RGB_GROUND = (1.0, 1.0, 1.0)
"""Ground of a colour pattern: white, as in the paper's figures."""

GRAY_GROUND = (0.45, 0.70, 0.95)
"""Ground of a grayscale pattern: light blue. White would hide the white strokes of
digits, black their background pixels; a hue no gray pixel can take keeps both visible."""

_NEEDS_IMAGE = ("blended_heat_map", "original_image", "masked_image", "alpha_scaling", "pattern")
# These methods show one magnitude per pixel, so positive and negative evidence cannot both
# be shown; Captum asserts on sign="all" for the first two, we raise ValueError up front.
_ONE_SIGN_ONLY = ("masked_image", "alpha_scaling", "pattern")
_MAP_CMAP = "viridis"
_BANDS = ("sem", "range")


# --------------------------------------------------------------------------------------
# Patterns as pictures
# --------------------------------------------------------------------------------------


def pattern_image(pattern: Pattern, ground: Optional[Sequence[float]] = None) -> np.ndarray:
    """Render a pattern as an RGB picture: its pixels with their values, the rest blank.

    Args:
        pattern: the :class:`~captum_classpattern.pattern.Pattern` to draw.
        ground: RGB colour (three floats in [0, 1]) of the pixels outside the pattern.
            Defaults to white (:data:`RGB_GROUND`) for colour patterns, as in the paper,
            and to light blue (:data:`GRAY_GROUND`) for grayscale ones, where white would
            hide white strokes.

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


def _draw_pattern_panel(ax, pattern: Pattern, ground: Optional[Sequence[float]]) -> None:
    ax.imshow(pattern_image(pattern, ground), interpolation="nearest")
    _bare(ax)
    # A white ground on a white figure has no visible edge; a thin frame shows the image
    # bounds, so the position of the pattern's pixels can be read.
    for spine in ax.spines.values():
        spine.set_visible(True)
        spine.set_edgecolor("0.7")
        spine.set_linewidth(0.8)


# --------------------------------------------------------------------------------------
# One panel, Captum-style
# --------------------------------------------------------------------------------------


def _validate_single(method, sign, attr, original_image, outlier_perc, alpha_overlay, k):
    check_choice(method, IMAGE_METHODS, "method")
    check_choice(sign, SIGNS, "sign")
    if method in _ONE_SIGN_ONLY and sign == "all":
        raise ValueError(
            f"method {method!r} shows one magnitude per pixel and cannot show sign='all'; "
            "use 'positive', 'negative' or 'absolute_value'."
        )
    if isinstance(outlier_perc, bool) or not isinstance(outlier_perc, (int, float)) or not 0 <= outlier_perc < 100:
        raise ValueError(f"outlier_perc must be a number in [0, 100), got {outlier_perc!r}.")
    if not 0.0 <= float(alpha_overlay) <= 1.0:
        raise ValueError(f"alpha_overlay must lie in [0, 1], got {alpha_overlay!r}.")
    scores = _as_hwc(attr, "attr")
    image = None
    if original_image is not None:
        image = _as_unit_image(_as_hwc(original_image, "original_image"), "original_image")
        if image.shape[:2] != scores.shape[:2]:
            raise ValueError(
                f"attr is {scores.shape[0]} x {scores.shape[1]} pixels but original_image is "
                f"{image.shape[0]} x {image.shape[1]}."
            )
        if scores.shape[2] not in (1, image.shape[2]):
            raise ValueError(f"attr has {scores.shape[2]} channels; expected 1 or {image.shape[2]} (the image's).")
    elif method in _NEEDS_IMAGE:
        raise ValueError(f"method {method!r} needs original_image (the canvas); only 'heat_map' draws without it.")
    if method != "original_image" and not np.any(_signed(scores.sum(axis=2), sign)):
        raise ValueError(
            f"attr has no {sign} values, so there is nothing to draw (Captum would fail dividing by zero). "
            "ClassPattern maps lie in [0, 1]: use sign='positive'."
        )
    if method == "pattern":
        pixel_budget(k, scores.shape[0], scores.shape[1])  # raises a clear error for a bad k
    return scores, image


def visualize_class_pattern(
    attr: Union[np.ndarray, Tensor],
    original_image: Union[np.ndarray, Tensor, None] = None,
    method: str = "heat_map",
    sign: str = "positive",
    plt_fig_axis: Optional[Tuple[Any, Any]] = None,
    outlier_perc: Union[int, float] = 2,
    cmap: Optional[Any] = None,
    alpha_overlay: float = 0.5,
    show_colorbar: bool = False,
    title: Optional[str] = None,
    fig_size: _FloatPair = (6, 6),
    use_pyplot: bool = True,
    k: Budget = 0.05,
):
    """Draw a ClassPattern map (or any attribution of a canvas) the way Captum draws attributions.

    The arguments and the return value are those of Captum's
    :func:`~captum.attr.visualization.visualize_image_attr`, and its five methods are
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
            exactly the pixels :func:`~captum_classpattern.pattern.top_k_pattern`
            keeps).
        sign: one of :data:`SIGNS`. For ``"pattern"``: ``"positive"`` ranks by value,
            ``"absolute_value"`` by magnitude, ``"negative"`` by the most negative values.
        plt_fig_axis: a ``(figure, axis)`` pair to draw on; a new figure if ``None``.
        outlier_perc: the share (percent) of total attribution treated as outliers and
            clipped to the top of the colour scale, as in Captum.
        cmap: colour map of the heat map; Captum's default for the sign if ``None``.
        alpha_overlay: opacity of the heat map in ``"blended_heat_map"``.
        show_colorbar: add a colour bar below heat maps (an empty one keeps panels
            aligned for the other methods).
        title: the panel's title.
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
            an attribution with no values of the chosen sign, or a bad ``k``.
        TypeError: ``attr`` or ``original_image`` is neither a numpy array nor a tensor.

    Example:
        >>> maps = ClassPattern(model).attribute(canvases, target=[3], baselines=images,
        ...                                      baseline_labels=labels)
        >>> fig, ax = visualize_class_pattern(maps[0], canvases[0], method="pattern",
        ...                                   k=0.05, use_pyplot=False)
        >>> fig.savefig("pattern_3.png")
    """
    scores, image = _validate_single(method, sign, attr, original_image, outlier_perc, alpha_overlay, k)
    if method == "pattern":
        return _visualize_pattern(scores, image, sign, plt_fig_axis, show_colorbar, title, fig_size, use_pyplot, k)
    from captum.attr import visualization as captum_viz

    if method == "original_image":
        # Captum normalises the attribution even when it only shows the image; a constant
        # stand-in keeps that from failing on an all-zero map that is not drawn anyway.
        scores = np.ones_like(scores)
    return captum_viz.visualize_image_attr(
        scores,
        None if image is None else _gray_to_rgb(image),
        method=method,
        sign=sign,
        plt_fig_axis=plt_fig_axis,
        outlier_perc=outlier_perc,
        cmap=cmap,
        alpha_overlay=alpha_overlay,
        show_colorbar=show_colorbar,
        title=title,
        fig_size=fig_size,
        use_pyplot=use_pyplot,
    )


def _visualize_pattern(scores, image, sign, plt_fig_axis, show_colorbar, title, fig_size, use_pyplot, k):
    fig, ax = _figure_and_axis(plt_fig_axis, use_pyplot, fig_size)
    per_pixel = scores.sum(axis=2)
    ranking = -per_pixel if sign == "negative" else per_pixel
    pattern = top_k_pattern(
        torch.from_numpy(ranking), torch.from_numpy(image.transpose(2, 0, 1).copy()), k,
        absolute=sign == "absolute_value",
    )
    _draw_pattern_panel(ax, pattern, None)
    if show_colorbar:
        # Captum adds an empty colour-bar axis for methods without a heat map, so panels
        # with and without colour bars stay aligned in a row; do the same.
        from mpl_toolkits.axes_grid1 import make_axes_locatable

        make_axes_locatable(ax).append_axes("bottom", size="5%", pad=0.1).axis("off")
    if title:
        ax.set_title(title)
    _finish(use_pyplot)
    return fig, ax


# --------------------------------------------------------------------------------------
# Grids: canvas / map / pattern per class, and settings side by side
# --------------------------------------------------------------------------------------


def _map_display(one_map: Tensor) -> Tuple[np.ndarray, bool]:
    """An H x W picture of a map and whether it is on the absolute [0, 1] scale.

    ClassPattern maps are mixing weights in [0, 1] with the same meaning for every class,
    so they share one fixed colour scale. Anything else (e.g. a Captum attribution passed
    for comparison) has no common unit: its positive part is scaled to its own maximum.
    """
    scores = one_map.detach().cpu().double()
    scores = scores.mean(0) if scores.dim() == 3 else scores
    if float(scores.min()) >= 0.0 and float(scores.max()) <= 1.0:
        return scores.numpy(), True
    positive = scores.clamp(min=0)
    top = float(positive.max())
    return (positive / top if top > 0 else positive).numpy(), False


def _draw_cell(ax, row: str, canvas: Tensor, one_map: Tensor, pattern: Pattern, ground):
    """Draw one grid cell; returns the map image (for the colour bar) or None."""
    if row == "canvas":
        _show_image(ax, canvas)
        return None
    if row == "pattern":
        _draw_pattern_panel(ax, pattern, ground)
        return None
    picture, absolute = _map_display(one_map)
    image = ax.imshow(picture, cmap=_MAP_CMAP, vmin=0.0, vmax=1.0, interpolation="nearest")
    _bare(ax)
    return image if absolute else None


def _row_label(name: str, k_pixels: Optional[int], area: int) -> str:
    if name == "pattern" and k_pixels is not None:
        return f"pattern\n(top {k_pixels} px, {100.0 * k_pixels / area:.0f}%)"
    return name


def plot_class_patterns(
    canvases: Union[Tensor, Sequence[Tensor]],
    maps: Union[Tensor, Sequence[Tensor]],
    patterns: Optional[Sequence[Pattern]] = None,
    class_names: Optional[Sequence[str]] = None,
    k: Budget = 0.05,
    powers: Optional[Sequence[float]] = None,
    use_pyplot: bool = False,
    fig_size: Optional[_FloatPair] = None,
    *,
    ground: Optional[Sequence[float]] = None,
):
    """The paper's figure: for each class its canvas, its map and its pattern.

    One column per class, three rows: the canvas, the learned map (fixed [0, 1] colour
    scale, shared by all classes, with a colour bar) and the pattern (the top-k canvas
    pixels on a blank ground). Column titles give the class name and, if given, the
    pattern's predictive power.

    Args:
        canvases: N x C x H x W canvases in [0, 1] (or a list of C x H x W tensors).
        maps: the N maps, as returned by :meth:`ClassPattern.attribute
            <captum_classpattern.class_pattern.ClassPattern.attribute>` (N x C x H x W or
            N x H x W). Maps outside [0, 1] (other attributions) are scaled per class.
        patterns: the N patterns to draw; by default the top-``k`` pixels of each map.
        class_names: a title for each column; ``"class i"`` by default.
        k: pattern size used when ``patterns`` is ``None``: pixels, or a fraction.
        powers: predictive power of each pattern, shown under the class name.
        use_pyplot: create the figure through pyplot and show it; by default a
            :class:`matplotlib.figure.Figure` is built without touching pyplot.
        fig_size: size in inches; by default about 1.3 inches per panel.
        ground: colour of the pixels outside the patterns (see :func:`pattern_image`).

    Returns:
        ``(figure, axes)``: axes is a 3 x N numpy array of axes (rows: canvas, map,
        pattern).

    Raises:
        ValueError: shapes disagree, pixels outside [0, 1], or ``class_names``,
            ``powers`` or ``patterns`` do not have one entry per canvas.
        TypeError: canvases or maps are not tensors, or patterns are not Patterns.

    Example:
        >>> maps = ClassPattern(model).attribute(canvases, target=list(range(10)),
        ...                                      baselines=images, baseline_labels=labels)
        >>> fig, axes = plot_class_patterns(canvases, maps, class_names=DIGIT_CLASSES)
        >>> fig.savefig("patterns.png", dpi=120)
    """
    canvases, maps, patterns = _prepare_setting(canvases, maps, patterns, k, "")
    count = canvases.shape[0]
    _check_lengths(count, class_names=class_names, powers=powers)
    fig, axes = _grid_figure(len(PATTERN_ROWS), count, use_pyplot, fig_size)
    area = canvases.shape[2] * canvases.shape[3]
    color_image = None
    for col in range(count):
        for row, name in enumerate(PATTERN_ROWS):
            drawn = _draw_cell(axes[row, col], name, canvases[col], maps[col], patterns[col], ground)
            color_image = drawn if drawn is not None else color_image
        title = class_names[col] if class_names is not None else f"class {col}"
        if powers is not None:
            title += f"\npower {float(powers[col]):.2f}"
        axes[0, col].set_title(str(title), fontsize=11)
    for row, name in enumerate(PATTERN_ROWS):
        axes[row, 0].set_ylabel(_row_label(name, _common_k(patterns), area), fontsize=10)
    if color_image is not None:
        fig.colorbar(color_image, ax=list(axes[1, :]), shrink=0.9, pad=0.01, aspect=12, label="map value")
    _finish(use_pyplot)
    return fig, axes


def _common_k(patterns: Sequence[Pattern]) -> Optional[int]:
    sizes = {p.k for p in patterns}
    return sizes.pop() if len(sizes) == 1 else None


def plot_settings_comparison(
    settings: Mapping[str, Tuple[Any, ...]],
    class_names: Optional[Sequence[str]] = None,
    k: Budget = 0.05,
    rows: Sequence[str] = ("pattern",),
    powers: Optional[Mapping[str, Sequence[float]]] = None,
    use_pyplot: bool = False,
    fig_size: Optional[_FloatPair] = None,
    *,
    ground: Optional[Sequence[float]] = None,
):
    """Patterns of the same classes under several settings, one block of rows per setting.

    Shows what the paper compares: a naturally trained model's patterns (shape and
    texture), a backdoored model's (the trigger, for the backdoor class) and an
    adversarially trained model's (simpler shapes). Any labelled set of maps works, for
    example ClassPattern against the top-k pixels of Captum attributions.

    Args:
        settings: setting name to ``(canvases, maps)`` or ``(canvases, maps, patterns)``,
            in display order; every setting has the same number of classes, in the same
            order.
        class_names: column titles (one per class).
        k: pattern size when a setting gives no patterns: pixels, or a fraction.
        rows: what to draw for each setting, any of :data:`PATTERN_ROWS` in order;
            patterns only by default.
        powers: setting name to one predictive power per class, written under each
            pattern.
        use_pyplot: create the figure through pyplot and show it.
        fig_size: size in inches; by default about 1.3 inches per panel.
        ground: colour of the pixels outside the patterns (see :func:`pattern_image`).

    Returns:
        ``(figure, axes)``: axes is a ``(len(settings) * len(rows)) x N`` numpy array.

    Raises:
        ValueError: no settings, an unknown row, settings with different numbers of
            classes, or lists without one entry per class.

    Example:
        >>> fig, axes = plot_settings_comparison(
        ...     {"natural": (canvases, natural_maps), "backdoored": (canvases, backdoor_maps)},
        ...     class_names=DIGIT_CLASSES, k=0.05)
    """
    if not isinstance(settings, Mapping) or not settings:
        raise ValueError("settings must be a non-empty mapping of name to (canvases, maps[, patterns]).")
    rows = tuple(rows)
    if not rows:
        raise ValueError(f"rows must name at least one of {PATTERN_ROWS}.")
    for row in rows:
        check_choice(row, PATTERN_ROWS, "each entry of rows")
    prepared = {name: _unpack_setting(name, value, k) for name, value in settings.items()}
    counts = {name: value[0].shape[0] for name, value in prepared.items()}
    if len(set(counts.values())) != 1:
        raise ValueError(f"every setting needs the same number of classes; got {counts}.")
    count = next(iter(counts.values()))
    _check_lengths(count, class_names=class_names)
    powers = dict(powers or {})
    for name, values in powers.items():
        if name not in prepared:
            raise ValueError(f"powers names a setting {name!r} that is not in settings {list(prepared)}.")
        _check_lengths(count, **{f"powers[{name!r}]": values})
    fig, axes = _grid_figure(len(prepared) * len(rows), count, use_pyplot, fig_size)
    color_image = None
    for block, (name, (canvases, maps, patterns)) in enumerate(prepared.items()):
        for offset, row in enumerate(rows):
            line = block * len(rows) + offset
            for col in range(count):
                ax = axes[line, col]
                drawn = _draw_cell(ax, row, canvases[col], maps[col], patterns[col], ground)
                color_image = drawn if drawn is not None else color_image
                if row == "pattern" and name in powers:
                    ax.set_xlabel(f"power {float(powers[name][col]):.2f}", fontsize=9)
            label = name if len(rows) == 1 else f"{name}\n{row}"
            axes[line, 0].set_ylabel(label, fontsize=10)
    for col in range(count):
        title = class_names[col] if class_names is not None else f"class {col}"
        axes[0, col].set_title(str(title), fontsize=11)
    if color_image is not None:
        fig.colorbar(color_image, ax=list(axes.ravel()), shrink=0.6, pad=0.01, aspect=20, label="map value")
    _finish(use_pyplot)
    return fig, axes


# --------------------------------------------------------------------------------------
# Curves and bars
# --------------------------------------------------------------------------------------


def _curve_stack(name: str, curves: Any) -> Tuple[np.ndarray, np.ndarray]:
    """Fractions (K,) and powers (n_curves, K) of one entry of :func:`plot_power_curves`."""
    group = [curves] if isinstance(curves, PowerCurve) else list(curves)
    if not group or not all(isinstance(c, PowerCurve) for c in group):
        raise TypeError(f"{name!r} must map to a PowerCurve or a list of PowerCurves (see power_curve).")
    fractions = np.asarray(group[0].fractions, dtype=np.float64)
    for curve in group[1:]:
        if not np.allclose(curve.fractions, fractions):
            raise ValueError(f"the curves of {name!r} use different k; averaging needs the same ks.")
    return fractions, np.asarray([c.powers for c in group], dtype=np.float64)


def plot_power_curves(
    curves: Mapping[str, Any],
    title: Optional[str] = None,
    floor: Optional[float] = None,
    plt_fig_axis: Optional[Tuple[Any, Any]] = None,
    use_pyplot: bool = False,
    fig_size: _FloatPair = (6.0, 4.0),
    band: Optional[str] = None,
):
    """Predictive power against pattern size, one line per method.

    Each entry is one :class:`~captum_classpattern.metrics.PowerCurve` or a list of them
    (one per class); a list is drawn as its mean. The legend gives each method's (mean)
    area under the curve.

    Args:
        curves: method name to a PowerCurve or a list of PowerCurves, in legend order.
        title: the axis title.
        floor: the share of unstamped images already classified as the target (see
            :func:`~captum_classpattern.metrics.floor_rate`), drawn as a dotted line.
        plt_fig_axis: a ``(figure, axis)`` pair to draw on; a new figure if ``None``.
        use_pyplot: create the figure through pyplot and show it.
        fig_size: size in inches of a new figure.
        band: shading around each mean of several curves: ``None`` (none, the
            default: per-class powers on small data spread so widely that bands of
            several methods cover each other), ``"sem"`` (the standard error of the mean)
            or ``"range"`` (lowest to highest class).

    Returns:
        ``(figure, axis)``.

    Raises:
        ValueError: no curves, curves of one method with different sizes, or an
            unknown ``band``.
        TypeError: an entry is not a PowerCurve or a list of them.

    Example:
        >>> curves = {"ClassPattern": power_curve(model, maps[0], canvas, images, labels, 3),
        ...           "Saliency": power_curve(model, saliency, canvas, images, labels, 3)}
        >>> fig, ax = plot_power_curves(curves, title="class 3")
    """
    if not isinstance(curves, Mapping) or not curves:
        raise ValueError("curves must be a non-empty mapping of method name to PowerCurve(s).")
    if band is not None:
        check_choice(band, _BANDS, "band")
    fig, ax = _figure_and_axis(plt_fig_axis, use_pyplot, fig_size, constrained=True)
    for name, entry in curves.items():
        fractions, powers = _curve_stack(name, entry)
        mean = powers.mean(0)
        area = _mean_area(entry)
        count = powers.shape[0]
        label = f"{name} (area {area:.2f})" if count == 1 else f"{name} (mean of {count}, area {area:.2f})"
        (line,) = ax.plot(100 * fractions, mean, marker="o", linewidth=2, label=label)
        if band is not None and powers.shape[0] > 1:
            low, high = _band(powers, band)
            ax.fill_between(100 * fractions, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
    if floor is not None:
        ax.axhline(float(floor), color="0.3", linestyle=":", linewidth=1.5, label=f"floor (no pattern) {floor:.2f}")
    ax.set_xlabel("pattern size (% of pixels)")
    ax.set_ylabel("predictive power")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=9, framealpha=0.9)
    if title:
        ax.set_title(title)
    _finish(use_pyplot)
    return fig, ax


def _band(powers: np.ndarray, band: str) -> Tuple[np.ndarray, np.ndarray]:
    if band == "range":
        return powers.min(0), powers.max(0)
    sem = powers.std(0, ddof=1) / np.sqrt(powers.shape[0])
    mean = powers.mean(0)
    return mean - sem, mean + sem


def _mean_area(entry: Any) -> float:
    group = [entry] if isinstance(entry, PowerCurve) else list(entry)
    return float(np.mean([c.area for c in group]))


def plot_anomaly_indices(
    anomaly_index: Union[Sequence[float], np.ndarray, Tensor],
    flagged: Optional[Sequence[Union[int, bool]]] = None,
    class_names: Optional[Sequence[str]] = None,
    threshold: float = 2.0,
    title: Optional[str] = None,
    plt_fig_axis: Optional[Tuple[Any, Any]] = None,
    use_pyplot: bool = False,
    fig_size: _FloatPair = (6.0, 3.5),
):
    """Bar chart of one anomaly index per class, flagged classes in red.

    Args:
        anomaly_index: one index per class (see
            :func:`~captum_classpattern.metrics.anomaly_index`).
        flagged: the flagged classes, as a boolean per class or a list of class
            indices. By default every class above ``threshold``; pass the scan's own
            decision when it also checks the suspicious direction.
        class_names: bar labels; the class indices by default.
        threshold: the decision threshold, drawn as a dashed line (Neural Cleanse uses 2).
        title: the axis title.
        plt_fig_axis: a ``(figure, axis)`` pair to draw on; a new figure if ``None``.
        use_pyplot: create the figure through pyplot and show it.
        fig_size: size in inches of a new figure.

    Returns:
        ``(figure, axis)``.

    Raises:
        ValueError: the indices are not one finite number per class, or ``flagged`` /
            ``class_names`` do not fit them.

    Example:
        >>> index = anomaly_index(scores)
        >>> fig, ax = plot_anomaly_indices(index, class_names=DIGIT_CLASSES)
    """
    values = np.asarray(anomaly_index.detach().cpu() if isinstance(anomaly_index, Tensor) else anomaly_index,
                        dtype=np.float64)
    if values.ndim != 1 or values.size == 0 or not np.isfinite(values).all():
        raise ValueError("anomaly_index must be a 1-d sequence of finite numbers, one per class.")
    count = values.size
    _check_lengths(count, class_names=class_names)
    marked = _flag_mask(flagged, values, threshold)
    fig, ax = _figure_and_axis(plt_fig_axis, use_pyplot, fig_size, constrained=True)
    colors = ["#d62728" if m else "#7f7f7f" for m in marked]
    positions = np.arange(count)
    ax.bar(positions, values, color=colors)
    for x, value in zip(positions, values):
        ax.text(x, value, f"{value:.1f}", ha="center", va="bottom", fontsize=8)
    ax.axhline(threshold, color="black", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    ax.set_xticks(positions)
    ax.set_xticklabels([str(n) for n in class_names] if class_names is not None else [str(i) for i in positions])
    ax.set_xlabel("class")
    ax.set_ylabel("anomaly index")
    ax.set_ylim(0, max(float(values.max()), threshold) * 1.18)
    from matplotlib.patches import Patch

    handles = [ax.get_lines()[-1]]
    if marked.any():
        handles.append(Patch(color="#d62728", label="flagged"))
    ax.legend(handles=handles, loc="upper right", fontsize=9)
    if title:
        ax.set_title(title)
    _finish(use_pyplot)
    return fig, ax


def _flag_mask(flagged: Any, values: np.ndarray, threshold: float) -> np.ndarray:
    if flagged is None:
        return values > threshold
    flags = np.asarray(flagged.detach().cpu() if isinstance(flagged, Tensor) else flagged)
    if flags.dtype == bool:
        if flags.shape != values.shape:
            raise ValueError(f"flagged has {flags.size} booleans for {values.size} classes.")
        return flags
    if flags.size == 0:
        return np.zeros(values.shape, dtype=bool)
    if not np.issubdtype(flags.dtype, np.integer) or flags.min() < 0 or flags.max() >= values.size:
        raise ValueError(f"flagged must be booleans per class or class indices in 0..{values.size - 1}.")
    mask = np.zeros(values.shape, dtype=bool)
    mask[flags.reshape(-1)] = True
    return mask



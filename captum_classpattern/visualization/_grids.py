"""Grids of panels: canvas, map and pattern per class, and several settings side by side."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from torch import Tensor

from .._utils import check_choice
from ..attr import Budget, Pattern
from ._figure import FloatPair, bare, finish, grid_figure, show_image
from ._inputs import check_lengths, prepare_setting, unpack_setting
from ._pattern_image import draw_pattern_panel

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.image import AxesImage

PATTERN_ROWS = ("canvas", "map", "pattern")
"""The rows :func:`plot_settings_comparison` can draw for each setting."""

_MAP_CMAP = "viridis"


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


def _draw_cell(
    ax: Axes, row: str, canvas: Tensor, one_map: Tensor, pattern: Pattern, ground: Optional[Sequence[float]]
) -> Optional[AxesImage]:
    """Draw one grid cell; returns the map image (for the colour bar) or None."""
    if row == "canvas":
        show_image(ax, canvas)
        return None
    if row == "pattern":
        draw_pattern_panel(ax, pattern, ground)
        return None
    picture, absolute = _map_display(one_map)
    image = ax.imshow(picture, cmap=_MAP_CMAP, vmin=0.0, vmax=1.0, interpolation="nearest")
    bare(ax)
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
    use_pyplot: bool = True,
    fig_size: Optional[FloatPair] = None,
    *,
    ground: Optional[Sequence[float]] = None,
) -> Tuple[Figure, np.ndarray]:
    """The figure of Zhao et al. (2021): for each class its canvas, its map and its pattern.

    One column per class, three rows: the canvas, the learned map (fixed [0, 1] colour
    scale, shared by all classes, with a colour bar) and the pattern (the top-k canvas
    pixels on a blank ground). Column titles give the class name and, if given, the
    pattern's predictive power.

    Args:
        canvases: N x C x H x W canvases in [0, 1] (or a list of C x H x W tensors).
        maps: the N maps, as returned by :meth:`ClassPattern.attribute
            <captum_classpattern.attr.ClassPattern.attribute>` (N x C x H x W or
            N x H x W). Maps outside [0, 1] (other attributions) are scaled per class.
        patterns: the N patterns to draw; by default the top-``k`` pixels of each map.
        class_names: a title for each column; ``"class i"`` by default.
        k: pattern size used when ``patterns`` is ``None``: pixels, or a fraction.
        powers: predictive power of each pattern, shown under the class name.
        use_pyplot: create the figure through pyplot and show it (Captum's default);
            ``False`` builds a :class:`matplotlib.figure.Figure` without touching pyplot.
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
    canvases, maps, patterns = prepare_setting(canvases, maps, patterns, k, "")
    count = canvases.shape[0]
    check_lengths(count, class_names=class_names, powers=powers)
    fig, axes = grid_figure(len(PATTERN_ROWS), count, use_pyplot, fig_size)
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
    finish(use_pyplot)
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
    use_pyplot: bool = True,
    fig_size: Optional[FloatPair] = None,
    *,
    ground: Optional[Sequence[float]] = None,
) -> Tuple[Figure, np.ndarray]:
    """Patterns of the same classes under several settings, one block of rows per setting.

    For example a naturally trained model's patterns, a backdoored model's and an
    adversarially trained model's; or ClassPattern against the top-k pixels of Captum
    attributions. Any labelled set of maps works.

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
        use_pyplot: create the figure through pyplot and show it (Captum's default);
            ``False`` builds a :class:`matplotlib.figure.Figure` without touching pyplot.
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
    rows, prepared, count = _prepare_settings(settings, rows, k)
    check_lengths(count, class_names=class_names)
    powers = _check_powers(powers, prepared, count)
    fig, axes = grid_figure(len(prepared) * len(rows), count, use_pyplot, fig_size)
    color_image = _draw_settings(axes, prepared, rows, count, powers, ground)
    for col in range(count):
        title = class_names[col] if class_names is not None else f"class {col}"
        axes[0, col].set_title(str(title), fontsize=11)
    if color_image is not None:
        fig.colorbar(color_image, ax=list(axes.ravel()), shrink=0.6, pad=0.01, aspect=20, label="map value")
    finish(use_pyplot)
    return fig, axes


_Setting = Tuple[Tensor, Tensor, List[Pattern]]


def _prepare_settings(
    settings: Mapping[str, Tuple[Any, ...]], rows: Sequence[str], k: Budget
) -> Tuple[Tuple[str, ...], Dict[str, _Setting], int]:
    """Check the settings and rows of a comparison: the rows, each setting's checked entry and the class count."""
    if not isinstance(settings, Mapping) or not settings:
        raise ValueError("settings must be a non-empty mapping of name to (canvases, maps[, patterns]).")
    rows = tuple(rows)
    if not rows:
        raise ValueError(f"rows must name at least one of {PATTERN_ROWS}.")
    for row in rows:
        check_choice(row, PATTERN_ROWS, "each entry of rows")
    prepared = {name: unpack_setting(name, value, k) for name, value in settings.items()}
    counts = {name: value[0].shape[0] for name, value in prepared.items()}
    if len(set(counts.values())) != 1:
        raise ValueError(f"every setting needs the same number of classes; got {counts}.")
    return rows, prepared, next(iter(counts.values()))


def _check_powers(
    powers: Optional[Mapping[str, Sequence[float]]], prepared: Mapping[str, _Setting], count: int
) -> Dict[str, Sequence[float]]:
    """The powers as a dict, each naming a setting and giving one power per class."""
    checked = dict(powers or {})
    for name, values in checked.items():
        if name not in prepared:
            raise ValueError(f"powers names a setting {name!r} that is not in settings {list(prepared)}.")
        check_lengths(count, **{f"powers[{name!r}]": values})
    return checked


def _draw_settings(
    axes: np.ndarray,
    prepared: Mapping[str, _Setting],
    rows: Tuple[str, ...],
    count: int,
    powers: Mapping[str, Sequence[float]],
    ground: Optional[Sequence[float]],
) -> Optional[AxesImage]:
    """Draw each setting's block of rows with its row labels; returns the last map image (for the colour bar)."""
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
    return color_image

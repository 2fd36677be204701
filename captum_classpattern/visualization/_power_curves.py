"""Predictive power against pattern size, one line per method."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Optional, Tuple

import numpy as np

from .._utils import check_choice
from ..metrics import PowerCurve
from ._figure import FloatPair, figure_and_axis, finish

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_BANDS = ("sem", "range")


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
    plt_fig_axis: Optional[Tuple[Figure, Axes]] = None,
    use_pyplot: bool = True,
    fig_size: FloatPair = (6.0, 4.0),
    band: Optional[str] = None,
) -> Tuple[Figure, Axes]:
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
        use_pyplot: create the figure through pyplot and show it (Captum's default);
            ``False`` builds a :class:`matplotlib.figure.Figure` without touching pyplot.
        fig_size: size in inches of a new figure.
        band: shading around each mean of several curves: ``None`` (no shading),
            ``"sem"`` (the standard error of the mean) or ``"range"`` (lowest to highest
            class).

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
    fig, ax = figure_and_axis(plt_fig_axis, use_pyplot, fig_size, constrained=True)
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
    finish(use_pyplot)
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

"""Bar chart of one anomaly index per class, flagged classes in red."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, List, Optional, Sequence, Tuple, Union

import numpy as np
from torch import Tensor

from ._figure import FloatPair, figure_and_axis, finish
from ._inputs import check_lengths

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def plot_anomaly_indices(
    anomaly_index: Union[Sequence[float], np.ndarray, Tensor],
    flagged: Optional[Sequence[Union[int, bool]]] = None,
    class_names: Optional[Sequence[str]] = None,
    threshold: float = 2.0,
    title: Optional[str] = None,
    plt_fig_axis: Optional[Tuple[Figure, Axes]] = None,
    use_pyplot: bool = True,
    fig_size: FloatPair = (6.0, 3.5),
) -> Tuple[Figure, Axes]:
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
        use_pyplot: create the figure through pyplot and show it (Captum's default);
            ``False`` builds a :class:`matplotlib.figure.Figure` without touching pyplot.
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
    values = np.asarray(
        anomaly_index.detach().cpu() if isinstance(anomaly_index, Tensor) else anomaly_index, dtype=np.float64
    )
    if values.ndim != 1 or values.size == 0 or not np.isfinite(values).all():
        raise ValueError("anomaly_index must be a 1-d sequence of finite numbers, one per class.")
    count = values.size
    check_lengths(count, class_names=class_names)
    marked = _flag_mask(flagged, values, threshold)
    fig, ax = figure_and_axis(plt_fig_axis, use_pyplot, fig_size, constrained=True)
    colors = ["#d62728" if m else "#7f7f7f" for m in marked]
    positions = np.arange(count)
    ax.bar(positions, values, color=colors)
    for x, value in zip(positions, values):
        ax.text(float(x), value, f"{value:.1f}", ha="center", va="bottom", fontsize=8)
    ax.axhline(threshold, color="black", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    ax.set_xticks(positions)
    ax.set_xticklabels([str(n) for n in class_names] if class_names is not None else [str(i) for i in positions])
    ax.set_xlabel("class")
    ax.set_ylabel("anomaly index")
    ax.set_ylim(0, max(float(values.max()), threshold) * 1.18)
    from matplotlib.patches import Patch

    handles: List[Artist] = [ax.get_lines()[-1]]
    if marked.any():
        handles.append(Patch(color="#d62728", label="flagged"))
    ax.legend(handles=handles, loc="upper right", fontsize=9)
    if title:
        ax.set_title(title)
    finish(use_pyplot)
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

"""Figures and axes for :mod:`captum_classpattern.visualization`, with or without pyplot.

With ``use_pyplot=False`` a :class:`matplotlib.figure.Figure` is built directly and no global
pyplot state is touched; these helpers make that choice in one place and draw the bare
image panels (no ticks, no frame) of the grid figures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Tuple

import numpy as np
from torch import Tensor

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FloatPair = Tuple[float, float]
"""A figure size in inches, ``(width, height)``."""


def new_figure(use_pyplot: bool, fig_size: FloatPair) -> Figure:
    """A new figure: through ``pyplot.figure`` or, without pyplot, a bare :class:`~matplotlib.figure.Figure`."""
    if use_pyplot:
        import matplotlib.pyplot as plt

        return plt.figure(figsize=fig_size)
    from matplotlib.figure import Figure

    return Figure(figsize=fig_size)


def figure_and_axis(
    plt_fig_axis: Optional[Tuple[Figure, Axes]], use_pyplot: bool, fig_size: FloatPair, constrained: bool = False
) -> Tuple[Figure, Axes]:
    """The caller's ``(figure, axis)`` pair, or a new figure with one axis.

    Args:
        plt_fig_axis: a ``(figure, axis)`` pair to draw on, or ``None``.
        use_pyplot: create a new figure through pyplot.
        fig_size: size in inches of a new figure.
        constrained: give a new figure the constrained layout engine (charts with axis
            labels need it, or the labels are cut off when saved).

    Raises:
        ValueError: ``plt_fig_axis`` is not a pair.
    """
    if plt_fig_axis is not None:
        if not (isinstance(plt_fig_axis, (tuple, list)) and len(plt_fig_axis) == 2):
            raise ValueError("plt_fig_axis must be a (figure, axis) pair.")
        return plt_fig_axis[0], plt_fig_axis[1]
    fig = new_figure(use_pyplot, fig_size)
    if constrained:
        fig.set_layout_engine("constrained")  # a caller's own figure keeps its own layout
    return fig, fig.add_subplot(1, 1, 1)


def grid_figure(rows: int, cols: int, use_pyplot: bool, fig_size: Optional[FloatPair]) -> Tuple[Figure, np.ndarray]:
    """A new figure with a ``rows`` x ``cols`` array of axes, in the constrained layout.

    The default size gives each panel about 1.3 inches, plus room for row labels and a
    colour bar.
    """
    size = fig_size or (1.3 * cols + 1.6, 1.35 * rows + 0.5)
    fig = new_figure(use_pyplot, size)
    fig.set_layout_engine("constrained")
    return fig, fig.subplots(rows, cols, squeeze=False)


def finish(use_pyplot: bool) -> None:
    """Show the figures, as Captum does, when they were made through pyplot."""
    if use_pyplot:
        import matplotlib.pyplot as plt

        plt.show()


def bare(ax: Any) -> None:
    """Hide ticks and frame but keep the axis labels (used as row labels in grids)."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def show_image(ax: Any, image_chw: Tensor) -> None:
    """Draw a C x H x W image in [0, 1]; grayscale in gray, never in false colour."""
    array = image_chw.detach().cpu().float().clamp(0, 1).numpy()
    if array.shape[0] == 1:
        ax.imshow(array[0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(array.transpose(1, 2, 0), interpolation="nearest")
    bare(ax)

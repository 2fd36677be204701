"""Figures and axes for :mod:`captum_classpattern.visualization`, with or without pyplot.

With ``use_pyplot=False`` a :class:`matplotlib.figure.Figure` is built directly and no global
pyplot state is touched; these helpers make that choice in one place and draw the bare
image panels (no ticks, no frame) of the grid figures.
"""
from __future__ import annotations

from typing import Optional, Tuple

from torch import Tensor

_FloatPair = Tuple[float, float]


# --------------------------------------------------------------------------------------
# Figures and axes
# --------------------------------------------------------------------------------------


def _new_figure(use_pyplot: bool, fig_size: _FloatPair):
    if use_pyplot:
        import matplotlib.pyplot as plt

        return plt.figure(figsize=fig_size)
    from matplotlib.figure import Figure

    return Figure(figsize=fig_size)


def _figure_and_axis(plt_fig_axis, use_pyplot: bool, fig_size: _FloatPair, constrained: bool = False):
    if plt_fig_axis is not None:
        if not (isinstance(plt_fig_axis, (tuple, list)) and len(plt_fig_axis) == 2):
            raise ValueError("plt_fig_axis must be a (figure, axis) pair.")
        return plt_fig_axis
    fig = _new_figure(use_pyplot, fig_size)
    if constrained:
        # Charts with axis labels need the layout engine or labels are cut off when saved;
        # a caller's own figure keeps its own layout.
        fig.set_layout_engine("constrained")
    return fig, fig.add_subplot(1, 1, 1)


def _finish(use_pyplot: bool) -> None:
    if use_pyplot:
        import matplotlib.pyplot as plt

        plt.show()


def _bare(ax) -> None:
    """Hide ticks but keep the axis labels (used as row labels in grids)."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _show_image(ax, image_chw: Tensor) -> None:
    """Draw a C x H x W image in [0, 1]; grayscale in gray, never in false colour."""
    array = image_chw.detach().cpu().float().clamp(0, 1).numpy()
    if array.shape[0] == 1:
        ax.imshow(array[0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(array.transpose(1, 2, 0), interpolation="nearest")
    _bare(ax)


def _grid_figure(rows: int, cols: int, use_pyplot: bool, fig_size: Optional[_FloatPair]):
    # About 1.3 inches per panel keeps 32 x 32 images and 10-point titles readable up to
    # ten classes; the extra width holds the row labels and the map's colour bar.
    size = fig_size or (1.3 * cols + 1.6, 1.35 * rows + 0.5)
    fig = _new_figure(use_pyplot, size)
    fig.set_layout_engine("constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes

"""The backdoor scan's figure: each class's pattern above its anomaly index."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, List, Optional, Sequence, Tuple

from ._figure import FloatPair, finish, new_figure
from ._pattern_image import pattern_image

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

GROUND = (0.75, 0.85, 1.0)
"""Colour of the pixels outside a pattern in the scan figure: light blue, so white and black pattern pixels show."""


def plot_scan(
    result: Any,
    class_names: Optional[Sequence[str]] = None,
    threshold: Optional[float] = None,
    *,
    fig_size: Optional[FloatPair] = None,
    use_pyplot: bool = True,
) -> Tuple[Figure, List[Axes]]:
    """Each class's recovered pattern above a bar chart of the anomaly indices.

    When the scan ran its blend probe, each class has two bars: the top-k patterns' index
    and the blend probe's (hatched, with its own dotted threshold). Classes flagged by the
    patterns show their recovered trigger (see ``ScanResult.recovered_trigger``),
    the others the smallest pattern that reached the power threshold. Pattern pixels are
    drawn with their values; the rest of the image is light blue (:data:`GROUND`), so that
    white and black pattern pixels both show.

    Args:
        result: a :class:`~captum_classpattern.backdoor.ScanResult`.
        class_names: a name per scanned class (default the class indices).
        threshold: the patterns' threshold, drawn as a dashed line (default the scan's own,
            ``result.scoring.threshold``); flagged classes (and, per detector, flagged
            bars) are drawn in red.
        fig_size: size in inches; by default 1.1 inches per class (at least 6) by 4.2.
        use_pyplot: create the figure through pyplot and show it (Captum's default);
            ``False`` builds a :class:`matplotlib.figure.Figure` without touching pyplot.

    Returns:
        ``(figure, axes)``: the figure and the list of its axes, one per class and the
        bar chart last.

    Example:
        >>> fig, axes = plot_scan(scan(model, images, labels), use_pyplot=False)
        >>> fig.savefig("scan.png")
    """
    count = len(result.classes)
    names = [str(c) for c in result.classes] if class_names is None else [str(n) for n in class_names]
    fig = new_figure(use_pyplot, fig_size or (max(6.0, 1.1 * count), 4.2))
    fig.set_layout_engine("constrained")
    grid = fig.add_gridspec(2, count, height_ratios=(1.0, 1.4))
    axes = []
    for column, pattern in enumerate(result.patterns):
        cls = result.classes[column]
        flagged = cls in result.flagged
        label = f"k={pattern.k}"
        if flagged and cls in result.trigger_maps:
            pattern = result.recovered_trigger(cls)
            label = f"trigger {pattern.k}px"
        ax = fig.add_subplot(grid[0, column])
        ax.imshow(pattern_image(pattern, GROUND), interpolation="nearest")
        ax.set_title(f"{names[column]}\n{label}", fontsize=8, color="red" if flagged else "black")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_edgecolor("red" if flagged else "0.7")
            spine.set_linewidth(2 if flagged else 1)
        axes.append(ax)
    bars = fig.add_subplot(grid[1, :])
    blend = list(getattr(result, "blend_anomaly_index", None) or [])
    if blend:
        # Two bars per class: the patterns' index, and the blend probe's (hatched), each red
        # where that detector flags the class.
        pattern_flagged, blend_flagged = result.pattern_flagged, result.blend_flagged
        pattern_colours = ["tab:red" if c in pattern_flagged else "tab:gray" for c in result.classes]
        blend_colours = ["tab:red" if c in blend_flagged else "0.85" for c in result.classes]
        left = [position - 0.2 for position in range(count)]
        right = [position + 0.2 for position in range(count)]
        bars.bar(left, result.anomaly_index, 0.4, color=pattern_colours, label="top-k patterns")
        bars.bar(right, blend, 0.4, color=blend_colours, hatch="//", edgecolor="0.35", label="blend probe")
        blend_threshold = result.scoring.blend_threshold
        label = f"blend threshold {blend_threshold:g}"
        bars.axhline(blend_threshold, color="0.35", linestyle=":", linewidth=1, label=label)
    else:
        colours = ["tab:red" if c in result.flagged else "tab:gray" for c in result.classes]
        bars.bar(range(count), result.anomaly_index, color=colours)
    if threshold is None:
        threshold = result.scoring.threshold
    bars.axhline(threshold, color="black", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    bars.set_xticks(range(count), names, fontsize=8)
    bars.set_ylabel("anomaly index")
    side = "small" if result.direction == "low" else "large"
    compared = " and relative to the references" if getattr(result, "reference_tables", None) else ""
    bars.set_title(f"score: {result.score}{compared} ({side} is suspicious); red: flagged", fontsize=9)
    bars.legend(fontsize=8, loc="upper right")
    axes.append(bars)
    finish(use_pyplot)
    return fig, axes

"""The backdoor scan's figure: each class's pattern above its anomaly index."""

from __future__ import annotations

from typing import Optional, Sequence

import torch

GROUND = (0.75, 0.85, 1.0)  # colour of the pixels outside a pattern in scan.png


def plot_scan(result, class_names: Optional[Sequence[str]] = None, threshold: float = 2.0):
    """Each class's recovered pattern above a bar chart of the anomaly indices.

    Flagged classes show their recovered trigger (see ``ScanResult.recovered_trigger``),
    the others the smallest pattern that reached the power threshold. Pattern pixels are
    drawn with their values; the rest of the image is light blue, so that white and black
    pattern pixels both show.

    Args:
        result: a :class:`~captum_classpattern.scan.ScanResult`.
        class_names: a name per scanned class (default the class indices).
        threshold: drawn as a dashed line; flagged classes are drawn in red.

    Returns:
        ``(figure, axes)``: a :class:`matplotlib.figure.Figure` (pyplot is not used) and
        the list of its axes.
    """
    from matplotlib.figure import Figure

    count = len(result.classes)
    names = [str(c) for c in result.classes] if class_names is None else [str(n) for n in class_names]
    fig = Figure(figsize=(max(6.0, 1.1 * count), 4.2), layout="constrained")
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
        values = pattern.values.detach().cpu().clamp(0, 1)
        rgb = values.expand(3, -1, -1) if values.shape[0] == 1 else values[:3]
        # A tinted ground, so that white and black pattern pixels both show.
        ground = torch.tensor(GROUND).view(3, 1, 1).expand_as(rgb)
        shown = torch.where(pattern.mask.cpu(), rgb, ground)
        ax.imshow(shown.permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(f"{names[column]}\n{label}", fontsize=8, color="red" if flagged else "black")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_edgecolor("red" if flagged else "0.7")
            spine.set_linewidth(2 if flagged else 1)
        axes.append(ax)
    bars = fig.add_subplot(grid[1, :])
    colours = ["tab:red" if c in result.flagged else "tab:gray" for c in result.classes]
    bars.bar(range(count), result.anomaly_index, color=colours)
    bars.axhline(threshold, color="black", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    bars.set_xticks(range(count), names, fontsize=8)
    bars.set_ylabel("anomaly index")
    side = "small" if result.direction == "low" else "large"
    bars.set_title(f"score: {result.score} ({side} is suspicious); red: flagged", fontsize=9)
    bars.legend(fontsize=8, loc="upper right")
    axes.append(bars)
    return fig, axes

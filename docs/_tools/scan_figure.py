"""Draw ``docs/_static/scan_planted_vs_natural.png``: a planted and a natural pattern side by side.

Two tiny ``SmallCNN`` suspects on 16 x 16 digits: one backdoored with a 3 x 3 white patch
(bottom-right) to class 0, one trained on data whose class 3 always carries a 2 x 2 mark in
the top-left corner (a natural shortcut: part of the clean data). Each is scanned alone and
against a clean reference model trained on the same (clean) data, and the figure shows the
pattern of the class in question next to both anomaly indices, flagged at Neural Cleanse's
threshold of 2.0 (:data:`FIGURE_THRESHOLD`): at the scan's stricter default of 3.0 the
natural mark is not an outlier even alone, and the figure would have nothing to clear. Nothing here runs during
the Sphinx build; re-run it when the scan changes (about a minute on one core)::

    .venv/bin/python -m docs._tools.scan_figure
"""

from __future__ import annotations

import argparse
import os

import matplotlib

matplotlib.use("Agg")

import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from captum_classpattern import load_digits  # noqa: E402
from captum_classpattern.backdoor import PatchTrigger, PoisonedDataset, ScanSettings  # noqa: E402
from captum_classpattern.data import Split  # noqa: E402
from captum_classpattern.visualization import pattern_image, plot_anomaly_indices  # noqa: E402
from docs._tools.tiny_suspects import quick_scan, train_tiny_cnn  # noqa: E402

DOCS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TARGET = 0
MARKED = 3
MARK = PatchTrigger(size=2, position="top-left")
SETTINGS = ScanSettings(steps=60)
FIGURE_THRESHOLD = 2.0
"""The anomaly-index threshold the figure flags at (Neural Cleanse's convention)."""


def _marked(split):
    images = split.images.clone()
    chosen = split.labels == MARKED
    images[chosen] = MARK(images[chosen])
    return Split(images, split.labels)


def cases():
    """``(title, class, scan with reference)`` of the planted and the natural case."""
    data = load_digits(size=16)
    poisoned = PoisonedDataset((data.train.images, data.train.labels), PatchTrigger(), TARGET, 0.1, seed=0)
    planted = train_tiny_cnn(*poisoned.tensors(), seed=0, epochs=10)
    clean_model = train_tiny_cnn(data.train.images, data.train.labels, seed=1, epochs=6)
    clean_reference = quick_scan(clean_model, data.search, data.eval, SETTINGS)
    train, search, held = _marked(data.train), _marked(data.search), _marked(data.eval)
    natural = train_tiny_cnn(train.images, train.labels, seed=0, epochs=6)
    marked_model = train_tiny_cnn(train.images, train.labels, seed=1, epochs=6)
    marked_reference = quick_scan(marked_model, search, held, SETTINGS)
    return [
        ("planted patch, class 0", TARGET, quick_scan(planted, data.search, data.eval, SETTINGS, clean_reference)),
        ("natural mark, class 3", MARKED, quick_scan(natural, search, held, SETTINGS, marked_reference)),
    ]


def scan_figure(path: str) -> None:
    """One row per case: the class's pattern, its anomaly index alone and with the reference."""
    rows = cases()
    fig = Figure(figsize=(10.5, 5.4), layout="constrained")
    grid = fig.add_gridspec(len(rows), 3, width_ratios=(0.8, 1.6, 1.6))
    for row, (title, cls, scanned) in enumerate(rows):
        result = scanned.rescore(scanned.score, threshold=FIGURE_THRESHOLD)
        alone = scanned.rescore(scanned.score, reference=False, threshold=FIGURE_THRESHOLD)
        ax = fig.add_subplot(grid[row, 0])
        pattern = alone.patterns[alone.classes.index(cls)]
        ax.imshow(pattern_image(pattern), interpolation="nearest")
        ax.set_title(f"{title}\nits {pattern.k}-pixel pattern", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        for column, (shown, name) in enumerate(((alone, "scan alone"), (result, "scan with a reference")), start=1):
            bars = fig.add_subplot(grid[row, column])
            plot_anomaly_indices(
                shown.anomaly_index,
                [c in shown.flagged for c in shown.classes],
                threshold=shown.scoring.threshold,
                title=f"{name}: flagged {shown.flagged}",
                plt_fig_axis=(fig, bars),
                use_pyplot=False,
            )
    fig.savefig(path, dpi=80)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(DOCS, "_static", "scan_planted_vs_natural.png"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    scan_figure(args.out)
    print(f"wrote {args.out} ({os.path.getsize(args.out) // 1024} KB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

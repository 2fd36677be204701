"""Draw ``docs/_static/scan_blend_probe.png``: what the blend probe sees on a planted blend and on a clean model.

Two tiny ``SmallCNN`` suspects on 16 x 16 digits, each scanned against the same clean
reference: one backdoored with a noise blend (alpha 0.2) to class 2, one clean. For each,
the left panel shows every class's blend-probe power against the blend strength, the right
one the probe's anomaly indices (the scan's default settings but 40 pattern-search steps;
the models are those of ``tests/backdoor/test_blend_probe.py``). Nothing here runs during
the Sphinx build; re-run it when the probe changes (about a minute on one core)::

    .venv/bin/python -m docs._tools.blend_figure
"""

from __future__ import annotations

import argparse
import os

import matplotlib

matplotlib.use("Agg")

import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from captum_classpattern import load_digits  # noqa: E402
from captum_classpattern.backdoor import BlendTrigger, PoisonedDataset, ScanSettings  # noqa: E402
from captum_classpattern.visualization import plot_anomaly_indices  # noqa: E402
from docs._tools.tiny_suspects import quick_scan, train_tiny_cnn  # noqa: E402

DOCS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TARGET = 2
SETTINGS = ScanSettings(steps=40)


def cases():
    """``(title, scan with the reference)`` of the blend-backdoored and the clean model."""
    data = load_digits(size=16)
    reference_model = train_tiny_cnn(data.train.images, data.train.labels, seed=11, epochs=8)
    reference = quick_scan(reference_model, data.search, data.eval, SETTINGS)
    poisoned = PoisonedDataset((data.train.images, data.train.labels), BlendTrigger("noise", alpha=0.2), TARGET, 0.1)
    planted = train_tiny_cnn(*poisoned.tensors(), seed=0, epochs=10)
    clean = train_tiny_cnn(data.train.images, data.train.labels, seed=12, epochs=8)
    return [
        (f"noise blend backdoor to class {TARGET}", quick_scan(planted, data.search, data.eval, SETTINGS, reference)),
        ("clean model", quick_scan(clean, data.search, data.eval, SETTINGS, reference)),
    ]


def blend_figure(path: str) -> None:
    """One row per model: each class's probe power against the strength, and the anomaly indices."""
    rows = cases()
    fig = Figure(figsize=(10.5, 5.4), layout="constrained")
    grid = fig.add_gridspec(len(rows), 2, width_ratios=(1.3, 1.6))
    for row, (title, result) in enumerate(rows):
        curves = fig.add_subplot(grid[row, 0])
        table = result.blend.table
        for position, cls in enumerate(result.classes):
            flagged = cls in result.blend_flagged
            curves.plot(
                table.strengths,
                table.powers[position],
                color="tab:red" if flagged else "0.6",
                linewidth=2.2 if flagged else 1.0,
                label=f"class {cls} (flagged)" if flagged else None,
            )
        curves.axhline(0.5, color="0.3", linestyle=":", linewidth=0.8)
        curves.set_xlabel("blend strength a")
        curves.set_ylabel("share flipped to the class")
        curves.set_title(f"{title}: probe power per class", fontsize=9)
        if result.blend_flagged:
            curves.legend(fontsize=8, loc="lower right")
        bars = fig.add_subplot(grid[row, 1])
        plot_anomaly_indices(
            result.blend_anomaly_index,
            [c in result.blend_flagged for c in result.classes],
            threshold=result.scoring.blend_threshold,
            title=f"blend probe with a reference: flagged {result.blend_flagged}",
            plt_fig_axis=(fig, bars),
            use_pyplot=False,
        )
    fig.savefig(path, dpi=80)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(DOCS, "_static", "scan_blend_probe.png"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    blend_figure(args.out)
    print(f"wrote {args.out} ({os.path.getsize(args.out) // 1024} KB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

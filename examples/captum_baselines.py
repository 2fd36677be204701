"""
ClassPattern against Captum's attributions
==========================================

A standard attribution (Saliency, IntegratedGradients, Occlusion) explains *one* image;
:class:`~captum_classpattern.attr.ClassPattern` searches for the pixels that make *other*
images look like the class. Both rank the canvas's pixels, so both can be compared the
same way: keep the top-k pixels of the canvas, stamp them on held-out images of the other
classes and count how many the model now assigns to the canvas's class (predictive
power), for several k, with random pixels and the floor for reference.

Run::

    python examples/captum_baselines.py            # all ten digits, five sizes (~40 s)
    python examples/captum_baselines.py --quick    # four digits, three sizes (~15 s)

It writes ``power_curves.png`` (mean power against k, band = lowest to highest class),
``patterns.png`` (the top-5% pixels of each method) and ``results.json`` to ``--out``
(default ``examples_output/captum_baselines``). This page shows a ``--quick`` run.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

from captum_classpattern import (
    PowerCurve,
    captum_attribution,
    floor_rate,
    load_digits,
    power_curve,
    random_pixel_power,
)
from captum_classpattern.attr import ClassPattern, pixel_budget, select_canvases
from captum_classpattern.data import DIGIT_CLASSES
from captum_classpattern.training import digits_model
from captum_classpattern.visualization import (
    plot_power_curves,
    plot_settings_comparison,
)

CAPTUM_METHODS = ("Saliency", "IntegratedGradients", "Occlusion")
FULL_KS = (0.01, 0.02, 0.05, 0.1, 0.2)
QUICK_KS = (0.02, 0.05, 0.1)


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options: ``--quick``, ``--out DIR`` and ``--seed``.

    In a notebook, where ``sys.argv`` holds the kernel's own options, the defaults apply
    unless ``argv`` is given (``parse_args(["--quick"])``).
    """
    parser = argparse.ArgumentParser(description="ClassPattern against Captum's attributions.")
    parser.add_argument("--quick", action="store_true", help="four classes and three sizes (< 60 s)")
    parser.add_argument(
        "--out",
        default=os.path.join("examples_output", "captum_baselines"),
        help="folder for the figures and results.json",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the search order and the random pixels")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars (shown on a terminal only)")
    if argv is None and "ipykernel" in sys.modules:
        argv = []
    return parser.parse_args(argv)


args = parse_args()
PROGRESS = not args.no_progress and sys.stderr.isatty()  # no bars in logs, notebooks or the docs build
torch.set_num_threads(1)  # small models: one thread is as fast and shares the machine
start = time.perf_counter()
data = load_digits(size=32)
model = digits_model(show_progress=PROGRESS)
classes = [0, 2, 5, 8] if args.quick else list(range(len(DIGIT_CLASSES)))
ks = QUICK_KS if args.quick else FULL_KS
canvases = select_canvases(model, data.search.images, data.search.labels, classes, strategy="confident")

# %%
# One map per method and canvas
# -----------------------------
#
# ClassPattern searches all canvases together;
# :func:`~captum_classpattern.metrics.captum_attribution` runs a Captum method on one
# canvas at a time.


def attributions(model, canvases, classes, seed: int, data):
    """One map per method and canvas: ClassPattern's (searched together) and Captum's."""
    maps = {
        "ClassPattern": ClassPattern(model).attribute(
            canvases,
            target=classes,
            baselines=data.search.images,
            baseline_labels=data.search.labels,
            seed=seed,
            show_progress=PROGRESS,
        )
    }
    for method in CAPTUM_METHODS:
        maps[method] = torch.stack(
            [captum_attribution(model, method, canvas, cls) for canvas, cls in zip(canvases, classes)]
        )
    return maps


maps = attributions(model, canvases, classes, args.seed, data)
images, labels = data.eval.images, data.eval.labels

# %%
# Power curves
# ------------
#
# :func:`~captum_classpattern.metrics.power_curve` measures the predictive power of each
# map's top-k pixels for every k; the chance level is k random canvas pixels, averaged
# over draws, summarised the same way.


def random_curve(model, canvas, images, labels, cls, ks, seed: int, trials: int) -> PowerCurve:
    """The chance level as a PowerCurve: k random canvas pixels, averaged over draws."""
    height, width = canvas.shape[1:]
    counts = sorted({pixel_budget(k, height, width) for k in ks})
    fractions = [count / (height * width) for count in counts]
    powers = [
        random_pixel_power(model, canvas, images, labels, cls, count, trials=trials, seed=seed) for count in counts
    ]
    # The same normalised trapezoid area as metrics.power_curve, so the areas compare.
    steps = zip(powers[:-1], powers[1:], fractions[:-1], fractions[1:])
    span = fractions[-1] - fractions[0]
    area = sum((a + b) / 2 * (f1 - f0) for a, b, f0, f1 in steps) / span if span else powers[0]
    return PowerCurve(counts, fractions, powers, float(area))


curves = {
    name: [power_curve(model, maps[name][i], canvases[i], images, labels, cls, ks) for i, cls in enumerate(classes)]
    for name in maps
}
curves["random pixels"] = [
    random_curve(model, canvases[i], images, labels, cls, ks, args.seed, trials=2 if args.quick else 5)
    for i, cls in enumerate(classes)
]
floor = float(np.mean([floor_rate(model, images, labels, cls) for cls in classes]))

fractions = curves["ClassPattern"][0].fractions
at_5 = int(np.argmin([abs(f - 0.05) for f in fractions]))  # the paper's 5% budget
print(f"predictive power on held-out digits, mean over classes {classes} (floor {floor:.3f})")
print(f"{'method':>20} {'at 5%':>7} {'area':>6}   per class at 5%")
for name, group in curves.items():
    per_class = [c.powers[at_5] for c in group]
    print(
        f"{name:>20} {np.mean(per_class):7.3f} {np.mean([c.area for c in group]):6.3f}   "
        + " ".join(f"{p:.2f}" for p in per_class)
    )

# %%
# A full run prints, at 5% of the pixels and averaged over the ten digits, a predictive
# power of 0.46 for the class patterns against 0.13 for Saliency, 0.14 for
# IntegratedGradients, 0.03 for Occlusion and 0.09 for random pixels (floor 0.001). The
# ClassPattern curve peaks at 5% (0.15, 0.32, 0.46, 0.24 and 0.11 at 1, 2, 5, 10 and 20%):
# each map keeps only 21 to 54 of the 1,024 pixels above 0.5, so at 10% and beyond the
# top-k pixels include many that the search pushed towards 0, pixels it chose to leave
# out. Occlusion, whose 4 x 4 windows give blocky, contiguous masks, is the only method
# that keeps rising with k (0.25 at 20%).
#
# Draw the curves
# ---------------

os.makedirs(args.out, exist_ok=True)
names = [DIGIT_CLASSES[c] for c in classes]
fig, _ = plot_power_curves(
    curves,
    title=f"top-k pixels stamped on other digits ({len(classes)} classes)",
    floor=floor,
    fig_size=(7, 4.5),
    use_pyplot=False,
)
fig.savefig(os.path.join(args.out, "power_curves.png"), dpi=110)

# %%
# Draw the top-5% pixels of each method
# -------------------------------------

powers = {name: [c.powers[at_5] for c in curves[name]] for name in maps}
fig, _ = plot_settings_comparison(
    {name: (canvases, maps[name]) for name in maps}, class_names=names, k=0.05, powers=powers, use_pyplot=False
)
fig.savefig(os.path.join(args.out, "patterns.png"), dpi=110)

# %%
# Save the numbers
# ----------------

with open(os.path.join(args.out, "results.json"), "w") as stream:
    json.dump(
        {
            "classes": classes,
            "floor": floor,
            "curves": {name: [vars(c) for c in group] for name, group in curves.items()},
        },
        stream,
        indent=2,
    )
print(f"wrote power_curves.png, patterns.png and results.json to {args.out} in {time.perf_counter() - start:.1f} s")

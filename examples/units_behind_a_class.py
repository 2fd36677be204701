"""
The units behind a class
========================

Network dissection in the style of Bau et al. (2020): which hidden units does a class
depend on, and what do they detect? The story, on procedural images whose every pixel's
concepts are known (:class:`~captum_classpattern.dissection.ConceptDataset`: coloured
shapes on textured ground, class = shape):

1. train a small CNN to tell the shapes apart (seconds on a CPU);
2. dissect its last convolutional layer: which units detect which concept (shape, colour,
   texture), and how many are detectors (IoU >= 0.04);
3. rank the units for each class by the damage their removal does, and compare removing
   a class's 20 top units with removing 20 random units and with removing all the others;
4. search each class's pattern (:class:`~captum_classpattern.attr.ClassPattern`), find the
   units that the pattern drives, and measure the pattern's predictive power without them.

Run::

    python examples/units_behind_a_class.py --quick --out out/units   # < 1 minute
    python examples/units_behind_a_class.py --out out/units           # a few minutes

Figures and ``summary.json`` are written to ``--out`` (default
``out/units_behind_a_class``). This page shows a ``--quick`` run. What it measures in quick
and full mode (detector units, ablation against random units, the units that carry each
class pattern): :doc:`../design/dissection_benchmark`.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from captum_classpattern import ClassPattern, top_k_pattern
from captum_classpattern.dissection import (
    ConceptDataset,
    ablation_curves,
    dissect,
    rank_units_for_class,
    units_responding_to_pattern,
)
from captum_classpattern.training import concept_classifier
from captum_classpattern.visualization import plot_top_activations

LAYER = "features.relu4"
SETTINGS = {
    "quick": dict(train=1500, epochs=4, rank=300, test=300, ks=[1, 5, 10, 20, 40], pattern_units=10, trials=3),
    "full": dict(train=5000, epochs=8, rank=1000, test=1000, ks=[1, 2, 5, 10, 20, 40, 80], pattern_units=10, trials=5),
}


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options: ``--quick``, ``--out DIR`` and ``--threads``.

    In a notebook, where ``sys.argv`` holds the kernel's own options, the defaults apply
    unless ``argv`` is given (``parse_args(["--quick"])``).
    """
    parser = argparse.ArgumentParser(description="Dissect a small CNN, ablate its units, follow a class pattern.")
    parser.add_argument("--quick", action="store_true", help="small data and short training (< 1 minute)")
    parser.add_argument("--out", default="out/units_behind_a_class", help="folder for figures and summary.json")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars (shown on a terminal only)")
    if argv is None and "ipykernel" in sys.modules:
        argv = []
    return parser.parse_args(argv)


def log(started, message: str) -> None:
    """Print with the wall and CPU seconds since ``started`` (wall, CPU); the CPU is often shared."""
    wall, cpu = time.perf_counter() - started[0], time.process_time() - started[1]
    print(f"[{wall:5.1f}s, {cpu:5.1f}s cpu] {message}", flush=True)


def save(fig: Figure, out: str, name: str) -> str:
    """Save ``fig`` as ``out/name`` and return the path."""
    path = os.path.join(out, name)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


args = parse_args()
PROGRESS = not args.no_progress and sys.stderr.isatty()  # no bars in logs, notebooks or the docs build
torch.set_num_threads(args.threads)
settings = SETTINGS["quick" if args.quick else "full"]
os.makedirs(args.out, exist_ok=True)
started = (time.perf_counter(), time.process_time())
summary: dict = {"mode": "quick" if args.quick else "full", "layer": LAYER}

# %%
# 1. Data and model
# -----------------
#
# Three disjoint sets of concept images: for training, for ranking units, for measuring.
# The model: four conv blocks (32 -> 16 -> 8 pixels), global average pooling, a linear
# head (:func:`~captum_classpattern.models.concept_cnn`), trained with Adam and a one-cycle
# schedule (:func:`~captum_classpattern.training.concept_classifier`).


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in one forward pass."""
    with torch.inference_mode():
        return float((model(images).argmax(1) == labels).float().mean())


rank_images, _, _, rank_labels = ConceptDataset(settings["rank"], seed=1).tensors()
test_set = ConceptDataset(settings["test"], seed=2)
test_images, _, _, test_labels = test_set.tensors()
model = concept_classifier(settings["train"], settings["epochs"])  # cached after the first run
summary["test_accuracy"] = accuracy(model, test_images, test_labels)
log(started, f"trained: test accuracy {summary['test_accuracy']:.3f}")

# %%
# 2. Dissection of the last conv block
# ------------------------------------
#
# :func:`~captum_classpattern.dissection.dissect` thresholds each unit's activation maps
# on the held-out images and matches them against the concept masks (IoU). The figures:
# the top activating images of the best unit of up to six concepts, and the number of
# detector units per concept.


def detector_figure(result, out: str) -> str:
    """Bar chart of the detector units per concept."""
    counts = result.detectors()
    fig = Figure(figsize=(6, 3))
    ax = fig.subplots()
    names = list(counts)
    colours = {"shape": "tab:blue", "color": "tab:red", "texture": "tab:green"}
    category = dict(zip(result.concept_names, result.concept_categories))
    ax.bar(names, [counts[n] for n in names], color=[colours.get(category[n], "grey") for n in names])
    ax.set_ylabel("detector units")
    ax.set_title(f"{int(result.is_detector.sum())} of {result.num_units} units of {result.layer} are detectors")
    ax.tick_params(axis="x", rotation=45)
    return save(fig, out, "detectors_per_concept.png")


result = dissect(
    model,
    LAYER,
    test_set,
    concept_names=test_set.concept_names,
    categories=test_set.concept_categories,
    batch_size=100,
    show_progress=PROGRESS,
)
result.to_json(os.path.join(args.out, "dissection.json"))
detectors = result.detectors()
summary["dissection"] = {
    "units": result.num_units,
    "detectors": int(result.is_detector.sum()),
    "per_concept": detectors,
    "per_category": result.detectors(by="category"),
}
log(started, f"dissection: {int(result.is_detector.sum())} of {result.num_units} units are detectors: {detectors}")
print(result.table(detectors_only=True, sort_by="iou").splitlines()[0])
print("\n".join(result.table(detectors_only=True, sort_by="iou").splitlines()[1:9]))
best = [int(u) for u in np.argsort(-result.unit_ious, kind="stable")]
shown = []
for concept in detectors:  # the best unit of up to six different concepts
    shown.append(next(u for u in best if result.unit_concepts[u] == concept))
    if len(shown) == 6:
        break
fig, _ = plot_top_activations(model, LAYER, result, test_images, shown, num_images=5, use_pyplot=False)
save(fig, args.out, "top_activations.png")
detector_figure(result, args.out)

# %%
# 3. The units behind each class
# ------------------------------
#
# Rank the units on one set, measure on another. ``head`` (the network after the layer)
# lets each ablation rerun only the head. The curves: mean per-class balanced accuracy as
# k units are removed three ways.


def curves_figure(curves, out: str) -> str:
    """Mean per-class balanced accuracy as k units are removed three ways."""
    fig = Figure(figsize=(5, 3.5))
    ax = fig.subplots()
    for name, values, style in (
        ("class's top-k units removed", curves.top_removed, "o-"),
        ("k random units removed", curves.random_removed, "s--"),
        ("all but the top-k removed", curves.rest_removed, "^-"),
    ):
        ax.plot(curves.ks, np.nanmean(values, 0), style, label=name)
    ax.axhline(float(np.nanmean(curves.baseline)), color="grey", lw=0.8, label="nothing removed")
    ax.set_xscale("log")
    ax.set_xlabel(f"k (of {curves.num_units} units)")
    ax.set_ylabel("mean per-class balanced accuracy")
    ax.legend(fontsize=7)
    return save(fig, out, "ablation_curves.png")


classes = list(range(test_set.num_classes))
head = nn.Sequential(model.pool, model.flatten, model.head)
ranking = rank_units_for_class(model, LAYER, rank_images, rank_labels, len(classes), head=head, show_progress=PROGRESS)
curves = ablation_curves(
    model,
    LAYER,
    test_images,
    test_labels,
    len(classes),
    ranking,
    ks=settings["ks"],
    random_trials=settings["trials"],
    head=head,
    show_progress=PROGRESS,
)
summary["ablation_k20"] = curves.summary(20)
summary["ablation_curves"] = {
    "ks": curves.ks,
    "top_removed": np.nanmean(curves.top_removed, 0).tolist(),
    "random_removed": np.nanmean(curves.random_removed, 0).tolist(),
    "rest_removed": np.nanmean(curves.rest_removed, 0).tolist(),
    "per_class_top20": curves.top_removed[:, curves.ks.index(20)].tolist(),
    "per_class_random20": curves.random_removed[:, curves.ks.index(20)].tolist(),
}
curves_figure(curves, args.out)
k20 = summary["ablation_k20"]
log(
    started,
    f"mean per-class balanced accuracy: {k20['baseline']:.3f}; "
    f"a class's 20 top units removed: {k20['top_removed']:.3f}; 20 random units removed: "
    f"{k20['random_removed']:.3f}; the other {result.num_units - 20} removed: {k20['rest_removed']:.3f}",
)
links = {}
for c, name in enumerate(test_set.class_names):  # what do a class's top units detect?
    top5 = ranking.top(c, 5)
    labels = [result.unit_concepts[u] if result.is_detector[u] else None for u in top5]
    links[name] = {"units": top5, "labels": labels}
    print(f"    {name:<9} top units {top5} detect {labels}")
summary["class_top_units"] = links

# %%
# 4. Class patterns and the units they drive
# ------------------------------------------
#
# One pattern per class (canvas: the test image the model is most confident about), then
# :func:`~captum_classpattern.dissection.units_responding_to_pattern` finds the units the
# pattern drives, ranked two ways (by how much the pattern raises their activation, and by
# their contribution to the class score), and measures the pattern's power without them.


def search_patterns(model, test_images, test_labels, num_classes, k):
    """One class pattern per class with the core's ClassPattern (all classes batched)."""
    with torch.inference_mode():
        probabilities = model(test_images).softmax(1)
    canvases = torch.stack(
        [
            test_images[(test_labels == c).nonzero()[:, 0][probabilities[test_labels == c, c].argmax()]]
            for c in range(num_classes)
        ]
    )
    maps = ClassPattern(model).attribute(
        canvases,
        target=list(range(num_classes)),
        baselines=test_images,
        baseline_labels=test_labels,
        seed=0,
        show_progress=PROGRESS,
    )
    return [top_k_pattern(maps[c], canvases[c], k) for c in range(num_classes)]


def pattern_figure(patterns, found, class_names, out: str) -> str:
    """Each class pattern above its power as found, without its units and without random units."""
    fig = Figure(figsize=(2.2 * len(patterns), 4.2), layout="constrained")
    axes = fig.subplots(2, len(patterns), squeeze=False, sharey="row")
    fig.suptitle("class patterns, and their power with the units that carry them removed", fontsize=9)
    for c, pattern in enumerate(patterns):
        shown = torch.where(pattern.mask, pattern.values, torch.ones_like(pattern.values))  # white background
        axes[0, c].imshow(shown.permute(1, 2, 0).numpy())
        axes[0, c].set_title(class_names[c], fontsize=9)
        axes[0, c].axis("off")
        item = found[c]
        axes[1, c].bar(
            ["pattern", "-units", "-random"],
            [item.power, item.power_ablated, item.power_random_ablated],
            color=["k", "tab:red", "grey"],
        )
        axes[1, c].set_ylim(0, 1)
        axes[1, c].tick_params(axis="x", labelsize=7)
    axes[1, 0].set_ylabel("predictive power")
    return save(fig, out, "pattern_units.png")


def mean(found, rank_by: str, key: str, over) -> float:
    """Mean of one measure of the patterns of the classes ``over``, units ranked by ``rank_by``."""
    return float(np.mean([getattr(found[rank_by][c], key) for c in over])) if over else float("nan")


patterns = search_patterns(model, test_images, test_labels, len(classes), k=0.05)
top = settings["pattern_units"]
summary["patterns"] = {}
found = {}
for rank_by in ("increase", "contribution"):
    found[rank_by] = [
        units_responding_to_pattern(
            model,
            LAYER,
            patterns[c],
            test_images,
            test_labels,
            c,
            top=top,
            rank_by=rank_by,
            random_trials=settings["trials"],
        )
        for c in classes
    ]
working = [c for c in classes if found["increase"][c].power >= 0.1]  # patterns that flip 10% of images
for c in classes:
    name = test_set.class_names[c]
    entry = {"power": found["increase"][c].power, "floor": found["increase"][c].floor}
    for rank_by, items in found.items():
        item = items[c]
        entry[rank_by] = {
            "units": item.units,
            "power_ablated": item.power_ablated,
            "power_random_ablated": item.power_random_ablated,
            "accuracy_ablated": item.accuracy_ablated,
            "unit_labels": [result.unit_concepts[u] if result.is_detector[u] else None for u in item.units],
        }
    summary["patterns"][name] = entry

for key, over in (("patterns_mean", working), ("patterns_mean_all_classes", classes)):
    summary[key] = {
        "classes": [test_set.class_names[c] for c in over],
        "power": mean(found, "increase", "power", over),
        "floor": mean(found, "increase", "floor", over),
        "accuracy": mean(found, "increase", "accuracy", over),
        **{
            f"{rank_by}_{item}": mean(found, rank_by, item, over)
            for rank_by in found
            for item in ("power_ablated", "power_random_ablated", "accuracy_ablated")
        },
    }
pattern_figure(patterns, found["contribution"], test_set.class_names, args.out)
means = summary["patterns_mean"]
log(
    started,
    "class patterns (5% of pixels): predictive power "
    + ", ".join(f"{test_set.class_names[c]} {found['increase'][c].power:.2f}" for c in classes),
)
print(
    f"    over the patterns with power >= 0.1 ({', '.join(means['classes'])}): power "
    f"{means['power']:.3f}; without the {top} units they excite most: {means['increase_power_ablated']:.3f}; "
    f"without the {top} units that carry their pull to the class: {means['contribution_power_ablated']:.3f}; "
    f"without {top} random units: {means['contribution_power_random_ablated']:.3f}"
)
for c in working:
    name = test_set.class_names[c]
    labels = summary["patterns"][name]["contribution"]["unit_labels"]
    print(f"    {name:<9} units carrying its pattern detect {labels}")

# %%
# Save the summary
# ----------------

summary["seconds"] = time.perf_counter() - started[0]
with open(os.path.join(args.out, "summary.json"), "w", encoding="utf-8") as stream:
    json.dump(summary, stream, indent=1)
log(started, f"figures and summary.json in {args.out}")

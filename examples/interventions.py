"""
Switching units off and on
==========================

Network dissection says which units a class depends on; an *intervention* tests it by
changing those units and watching the prediction. With
:func:`~captum_classpattern.dissection.intervene` the chosen channels of a layer are scaled
(``scale=0`` switches them off) or set to a value (switches them on), everywhere or only
inside a spatial region, while the ``with`` block is open; the model itself is never
modified.

On a small CNN trained on :class:`~captum_classpattern.dissection.ConceptDataset` shapes
(class = shape), for each class ``b``:

1. switch off ``b``'s 20 top ablation units everywhere, and 20 random units for contrast:
   how sure is the model of ``b`` on images of ``b``?
2. switch them off only *on the object* (the shape's pixels, resized to the layer's 8 x 8
   grid) or only on an equally large region *off the object*: where does the class live?
3. switch them on (each set to a high activation it reaches on images of ``b``) inside a
   16 x 16 square in the middle of images of the *other* classes: how often does the prediction
   turn to ``b``?

Run::

    python examples/interventions.py --quick --out out/interventions   # < 1 minute
    python examples/interventions.py --out out/interventions

It writes ``unit_maps.png``, ``interventions.png`` and ``summary.json`` to ``--out``
(default ``examples_output/interventions``). This page shows a ``--quick`` run; the method
and measured numbers are in :doc:`../dissection/interventions`.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
from matplotlib.figure import Figure

from captum_classpattern.dissection import ConceptDataset, intervene, rank_units_for_class
from captum_classpattern.training import concept_classifier

LAYER = "features.relu4"  # the ReLU after the last conv: 128 units on an 8 x 8 grid
TOP = 20
SETTINGS = {
    "quick": dict(train=1500, epochs=4, rank=300, test=300),
    "full": dict(train=4000, epochs=8, rank=600, test=600),
}


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options: ``--quick``, ``--out DIR`` and ``--no-progress``.

    In a notebook, where ``sys.argv`` holds the kernel's own options, the defaults apply
    unless ``argv`` is given (``parse_args(["--quick"])``).
    """
    parser = argparse.ArgumentParser(
        description="Switch the units behind a class off and on, everywhere or in a region."
    )
    parser.add_argument("--quick", action="store_true", help="less data and training (< 60 s)")
    parser.add_argument("--out", default=os.path.join("examples_output", "interventions"), help="output folder")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars (shown on a terminal only)")
    if argv is None and "ipykernel" in sys.modules:
        argv = []
    return parser.parse_args(argv)


args = parse_args()
torch.set_num_threads(1)  # small models: one thread is as fast and shares the machine
settings = SETTINGS["quick" if args.quick else "full"]
os.makedirs(args.out, exist_ok=True)
start = time.perf_counter()
summary: dict = {"mode": "quick" if args.quick else "full", "layer": LAYER, "top": TOP}

# %%
# The classifier and its units
# ----------------------------
#
# The CNN of :doc:`units_behind_a_class` (four conv blocks, 128 units in the last), trained
# on the shapes (cached after the first run), then each class's units ranked by the damage their removal does.
# The model is :func:`~captum_classpattern.models.concept_cnn`, trained by
# :func:`~captum_classpattern.training.concept_classifier`.

model = concept_classifier(settings["train"], settings["epochs"])
rank_images, _, _, rank_labels = ConceptDataset(settings["rank"], seed=1).tensors()
test_set = ConceptDataset(settings["test"], seed=2)
images, masks, _, labels = test_set.tensors()
classes = test_set.class_names


def predictions(inputs: torch.Tensor) -> torch.Tensor:
    """Class probabilities, without gradients."""
    with torch.inference_mode():
        return model(inputs).softmax(1)


summary["accuracy"] = float((predictions(images).argmax(1) == labels).float().mean())
ranking = rank_units_for_class(model, LAYER, rank_images, rank_labels, len(classes), head=model[1:])
generator = torch.Generator().manual_seed(0)
random_units = [torch.randperm(ranking.num_units, generator=generator)[:TOP].tolist() for _ in classes]
print(f"test accuracy {summary['accuracy']:.3f}; {ranking.num_units} units in {LAYER}")

# %%
# 1. Switched off everywhere
# --------------------------
#
# ``scale=0.0`` zeroes the units on the whole grid: the mean probability of the true class
# on each class's images, with its own top units off and with random units off.

off = {}
for b, name in enumerate(classes):
    own = images[labels == b]
    rows = {}
    for kind, units in (("top", ranking.top(b, TOP)), ("random", random_units[b])):
        with intervene(model, LAYER, units, scale=0.0):
            rows[kind] = float(predictions(own)[:, b].mean())
    rows["none"] = float(predictions(own)[:, b].mean())
    off[name] = rows
    print(
        f"{name:<9} p(class) {rows['none']:.2f}; top {TOP} units off {rows['top']:.2f}; "
        f"random units off {rows['random']:.2f}"
    )
summary["off_everywhere"] = off

# %%
# 2. Switched off on the object, or beside it
# -------------------------------------------
#
# The mask is the shape's own pixels (32 x 32, resized to the layer's 8 x 8 grid by nearest
# neighbour); the control region has the same pixels shifted by half the image, so it
# covers as much area elsewhere. The number: the mean probability of the true class.

object_masks = masks[:, 0] > 0  # the shape channel: the object's pixels
elsewhere = object_masks.roll(shifts=(16, 16), dims=(1, 2)) & ~object_masks
regional = {}
for b, name in enumerate(classes):
    chosen = labels == b
    own = images[chosen]
    rows = {"none": float(predictions(own)[:, b].mean())}
    for kind, region in (("on_object", object_masks[chosen]), ("off_object", elsewhere[chosen])):
        with intervene(model, LAYER, ranking.top(b, TOP), scale=0.0, mask=region):
            rows[kind] = float(predictions(own)[:, b].mean())
    regional[name] = rows
    print(
        f"{name:<9} p(class) {rows['none']:.2f}; units off on the object {rows['on_object']:.2f}, "
        f"off beside it {rows['off_object']:.2f}"
    )
summary["off_in_region"] = regional

# %%
# 3. Switched on in a square
# --------------------------
#
# Each of ``b``'s top units is set to the 99th percentile of its activation on images of
# ``b`` (``value=`` takes one number per unit), inside a 16 x 16 pixel square in the middle
# of images of the other classes. The same with random units (each set to its own 99th
# percentile) for contrast.


def unit_maps(inputs: torch.Tensor) -> torch.Tensor:
    """The layer's N x 128 x 8 x 8 activations, without gradients."""
    store = {}
    handle = model.get_submodule(LAYER).register_forward_hook(lambda _m, _i, out: store.setdefault("maps", out))
    try:
        with torch.inference_mode():
            model(inputs)
    finally:
        handle.remove()
    return store["maps"].clone()


square = torch.zeros(32, 32, dtype=torch.bool)
square[8:24, 8:24] = True
switched_on = {}
for b, name in enumerate(classes):
    peaks = unit_maps(images[labels == b]).amax((2, 3)).quantile(0.99, dim=0)
    others = images[labels != b]
    rows = {"none": float((predictions(others).argmax(1) == b).float().mean())}
    for kind, units in (("top", ranking.top(b, TOP)), ("random", random_units[b])):
        with intervene(model, LAYER, units, value=peaks[units], mask=square):
            rows[kind] = float((predictions(others).argmax(1) == b).float().mean())
    switched_on[name] = rows
    print(
        f"{name:<9} other images called {name}: {rows['none']:.2f}; its top units on in the square "
        f"{rows['top']:.2f}; random units on {rows['random']:.2f}"
    )
summary["on_in_square"] = switched_on

# %%
# Figures
# -------
#
# Left: one test image of each class and the mean map of the class's top units, as found,
# with the units switched off on the object, and with them switched on in the square (in an
# image of the next class). Right: the three experiments, averaged over classes.

fig = Figure(figsize=(8, 2 * len(classes)), layout="constrained")
axes = fig.subplots(len(classes), 4, squeeze=False)
for b, name in enumerate(classes):
    index = int((labels == b).nonzero()[0])
    other = int((labels == (b + 1) % len(classes)).nonzero()[0])
    units = ranking.top(b, TOP)
    peaks = unit_maps(images[labels == b]).amax((2, 3)).quantile(0.99, dim=0)
    clean = unit_maps(images[index : index + 1])[0, units].mean(0)
    with intervene(model, LAYER, units, scale=0.0, mask=object_masks[index]):
        removed = unit_maps(images[index : index + 1])[0, units].mean(0)
        p_removed = float(predictions(images[index : index + 1])[0, b])
    with intervene(model, LAYER, units, value=peaks[units], mask=square):
        added = unit_maps(images[other : other + 1])[0, units].mean(0)
        p_added = float(predictions(images[other : other + 1])[0, b])
    top = float(max(clean.max(), added.max(), 1e-6))
    panels = [
        (images[index].permute(1, 2, 0), f"{name}: p={float(predictions(images[index : index + 1])[0, b]):.2f}"),
        (clean, "its top units"),
        (removed, f"off on object: p={p_removed:.2f}"),
        (added, f"on in square ({classes[(b + 1) % len(classes)]}): p={p_added:.2f}"),
    ]
    for ax, (picture, title) in zip(axes[b], panels):
        ax.imshow(picture.numpy(), vmin=0, vmax=top if picture.dim() == 2 else 1, cmap="magma")
        ax.set_title(title, fontsize=7)
        ax.axis("off")
fig.savefig(os.path.join(args.out, "unit_maps.png"), dpi=100)

fig = Figure(figsize=(9, 3), layout="constrained")
axes = fig.subplots(1, 3)
for ax, (title, table, keys) in zip(
    axes,
    (
        ("units off everywhere: p(class)", off, ("none", "top", "random")),
        ("units off in a region: p(class)", regional, ("none", "on_object", "off_object")),
        ("units on in a square: called b", switched_on, ("none", "top", "random")),
    ),
):
    values = [float(np.mean([table[name][key] for name in classes])) for key in keys]
    ax.bar(keys, values, color=["grey", "tab:red", "tab:blue"])
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
fig.savefig(os.path.join(args.out, "interventions.png"), dpi=100)

summary["seconds"] = time.perf_counter() - start
with open(os.path.join(args.out, "summary.json"), "w", encoding="utf-8") as stream:
    json.dump(summary, stream, indent=1)
print(f"figures and summary.json in {args.out} ({summary['seconds']:.0f} s)")

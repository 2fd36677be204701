"""
The units an adversarial attack moves
=====================================

Bau et al. (2020) use dissection to look inside adversarial attacks: an attack that turns an
image into class ``b`` works by raising the units that class ``b`` relies on. This example
checks that on a small CNN trained on
:class:`~captum_classpattern.dissection.ConceptDataset` shapes (class = shape):

1. rank each class's units by the damage their removal does
   (:func:`~captum_classpattern.dissection.rank_units_for_class`);
2. push the test images of every other class toward each class ``b`` with a targeted L-inf
   PGD attack (Captum's :class:`captum.robust.PGD`), and measure how much each unit's
   activation rises (:func:`~captum_classpattern.dissection.attack_unit_shift`);
3. compare the 10 units raised most with ``b``'s 10 top ablation units, against the overlap
   that 10 random units would have (:func:`~captum_classpattern.dissection.unit_overlap`).

Run::

    python examples/adversarial_units.py --quick --out out/adversarial_units   # < 1 minute
    python examples/adversarial_units.py --out out/adversarial_units

It writes ``overlap.png``, ``unit_changes.png`` and ``summary.json`` to ``--out`` (default
``examples_output/adversarial_units``). This page shows a ``--quick`` run; the measured
numbers over several training seeds are in :doc:`../dissection/adversarial_units`.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
from matplotlib.figure import Figure

from captum_classpattern.dissection import (
    AttackSettings,
    ConceptDataset,
    attack_unit_shift,
    rank_units_for_class,
    unit_overlap,
)
from captum_classpattern.training import concept_classifier

LAYER = "features.relu4"  # the ReLU after the last conv: 128 units on an 8 x 8 grid
TOP = 10
SETTINGS = {
    "quick": dict(train=1500, epochs=4, rank=300, test=150),
    "full": dict(train=4000, epochs=8, rank=600, test=500),
}


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options: ``--quick``, ``--out DIR`` and ``--no-progress``.

    In a notebook, where ``sys.argv`` holds the kernel's own options, the defaults apply
    unless ``argv`` is given (``parse_args(["--quick"])``).
    """
    parser = argparse.ArgumentParser(description="Do attacks toward class b raise the units class b needs?")
    parser.add_argument("--quick", action="store_true", help="less data and training (< 60 s)")
    parser.add_argument("--out", default=os.path.join("examples_output", "adversarial_units"), help="output folder")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars (shown on a terminal only)")
    if argv is None and "ipykernel" in sys.modules:
        argv = []
    return parser.parse_args(argv)


args = parse_args()
PROGRESS = not args.no_progress and sys.stderr.isatty()  # no bars in logs, notebooks or the docs build
torch.set_num_threads(1)  # small models: one thread is as fast and shares the machine
settings = SETTINGS["quick" if args.quick else "full"]
os.makedirs(args.out, exist_ok=True)
start = time.perf_counter()
summary: dict = {"mode": "quick" if args.quick else "full", "layer": LAYER, "top": TOP}

# %%
# The classifier and the units each class needs
# ----------------------------------------------
#
# The CNN of :doc:`units_behind_a_class` (four conv blocks, 128 units in the last), trained
# on the shapes (cached after the first run); each class's units ranked by ablation on a separate rank set.
# The model is :func:`~captum_classpattern.models.concept_cnn`, trained by
# :func:`~captum_classpattern.training.concept_classifier`.

model = concept_classifier(settings["train"], settings["epochs"])
rank_images, _, _, rank_labels = ConceptDataset(settings["rank"], seed=1).tensors()
test_set = ConceptDataset(settings["test"], seed=2)
images, _, _, labels = test_set.tensors()
classes = test_set.class_names
ranking = rank_units_for_class(model, LAYER, rank_images, rank_labels, len(classes), head=model[1:])

# %%
# The attacks
# -----------
#
# Every test image not of class ``b`` is pushed toward ``b`` (radius 8/255, 10 steps of
# 2/255). Each unit's activation is averaged over its 8 x 8 grid, on the clean and on the
# attacked image; the change is also expressed in the unit's clean standard deviations.

attack = AttackSettings(eps=8 / 255, step_size=2 / 255, steps=10)
shifts = []
for b, name in enumerate(classes):
    shifts.append(attack_unit_shift(model, LAYER, images, labels, b, settings=attack, show_progress=PROGRESS))
    print(
        f"toward {name:<9} success {shifts[-1].success_rate:.2f} (before: {shifts[-1].clean_rate:.2f}); "
        f"target logit +{shifts[-1].target_logit_change:.2f}; units raised most {shifts[-1].top(5)}"
    )
summary["success_rate"] = {name: s.success_rate for name, s in zip(classes, shifts)}

# %%
# Raised units against ablation units
# -----------------------------------
#
# The overlap of the 10 units raised most with ``b``'s 10 top ablation units; chance is
# ``10 * 10 / 128`` (the hypergeometric mean), and the mean overlap of 1,000 random draws of
# 10 units. The p-value is that of the total overlap over the classes.

overlaps = {
    "standardized": unit_overlap(shifts, ranking, n=TOP),
    "raw": unit_overlap(shifts, ranking, n=TOP, standardized=False),
}
for kind, overlap in overlaps.items():
    numbers = overlap.summary()
    summary[f"overlap_{kind}"] = overlap.to_dict()
    print(
        f"{kind:>12}: overlap {numbers['overlap']:.1f} of {TOP} per class (chance {numbers['expected']:.2f}, "
        f"random units {numbers['random']:.2f}), p = {numbers['p_value']:.2g}; per class {overlap.overlaps}"
    )

# %%
# Figures
# -------
#
# The overlap per target class against chance, and for each target the change of every unit
# (in clean standard deviations, sorted), the class's top ablation units in red.

fig = Figure(figsize=(6, 3), layout="constrained")
ax = fig.subplots()
positions = np.arange(len(classes))
for offset, (kind, overlap) in zip((-0.2, 0.2), overlaps.items()):
    ax.bar(positions + offset, overlap.overlaps, width=0.4, label=f"raised most ({kind})")
ax.axhline(overlaps["standardized"].expected[0], color="k", ls="--", lw=1, label="chance")
ax.plot(positions, overlaps["standardized"].random_overlaps, "k.", label="random units")
ax.set_xticks(positions, classes)
ax.set_ylabel(f"shared with the {TOP} top ablation units")
ax.set_ylim(0, TOP)
ax.legend(fontsize=7)
fig.savefig(os.path.join(args.out, "overlap.png"), dpi=110)

fig = Figure(figsize=(2.2 * len(classes), 2.4), layout="constrained")
axes = fig.subplots(1, len(classes), sharey=True)
for ax, shift, name in zip(axes, shifts, classes):
    order = shift.order()
    top_units = set(ranking.top(shift.target, TOP))
    ax.bar(range(len(order)), shift.standardized[order], color=["tab:red" if u in top_units else "grey" for u in order])
    ax.set_title(f"toward {name}", fontsize=9)
    ax.set_xlabel("units, most raised first", fontsize=7)
axes[0].set_ylabel("change (clean std)")
fig.savefig(os.path.join(args.out, "unit_changes.png"), dpi=110)

summary["seconds"] = time.perf_counter() - start
with open(os.path.join(args.out, "summary.json"), "w", encoding="utf-8") as stream:
    json.dump(summary, stream, indent=1)
print(f"figures and summary.json in {args.out} ({summary['seconds']:.0f} s)")

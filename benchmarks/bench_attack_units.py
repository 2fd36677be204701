"""Do targeted attacks toward class b move the units that class b needs?

For each training seed, a small CNN (the architecture of ``examples/units_behind_a_class.py``)
is trained on :class:`~captum_classpattern.dissection.ConceptDataset` shapes. Its last conv
layer's units are ranked for each class by ablation (:func:`rank_units_for_class`, on a rank
set); then every image of another class in a separate attack set is pushed toward each class b
with targeted L-inf PGD (:func:`attack_unit_shift`), and the top-n units the attack raises
most (in clean standard deviations, and raw) are compared with b's top-n ablation units
(:func:`unit_overlap`): overlap, hypergeometric chance ``n * n / width``, exact p-value of the
total overlap, and the mean overlap of random units. With ``--dissect`` the reference is also
the set of units that dissection labels with b's shape. With ``--arch smallcnn`` the model
is the package's :class:`~captum_classpattern.models.SmallCNN` (three blocks, 64 units in the
last, trained by :func:`~captum_classpattern.training.train_classifier`) instead.

Usage::

    python -m benchmarks.bench_attack_units --quick        # one seed, about 20 s of CPU
    python -m benchmarks.bench_attack_units                # 3 seeds, a few minutes per seed
    python -m benchmarks.bench_attack_units --arch smallcnn --dissect

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
from typing import Optional, Sequence

import numpy as np
import torch

from benchmarks._harness import Timer, add_quick_option, add_threads_option, emit_json, set_threads
from captum_classpattern.dissection import (
    AttackSettings,
    ConceptDataset,
    attack_unit_shift,
    dissect,
    rank_units_for_class,
    unit_overlap,
)
from captum_classpattern.models import SmallCNN, concept_cnn
from captum_classpattern.training import train_classifier, train_one_cycle

LAYERS = {"example": "features.relu4", "smallcnn": "features.10"}
SETTINGS = {
    "quick": dict(train=1500, epochs=4, rank=300, attack=100, seeds=[0], width=128),
    "full": dict(train=5000, epochs=8, rank=1000, attack=300, seeds=[0, 1, 2], width=128),
}


def run_seed(seed: int, settings: dict, attack: AttackSettings, n: int, arch: str, with_dissection: bool) -> dict:
    """Train one model, rank its units, attack toward every class, compare the units."""
    clock = Timer()
    train_images, _, _, train_labels = ConceptDataset(settings["train"], seed=0).tensors()
    rank_images, _, _, rank_labels = ConceptDataset(settings["rank"], seed=1).tensors()
    attack_set = ConceptDataset(settings["attack"], seed=2)
    attack_images, _, _, attack_labels = attack_set.tensors()
    classes = attack_set.num_classes
    torch.manual_seed(seed)
    if arch == "example":
        model = train_one_cycle(
            concept_cnn(classes, settings["width"]), train_images, train_labels, settings["epochs"], seed
        )
    else:  # the package's SmallCNN (three blocks, 64 units in the last), trained by train_classifier
        model = SmallCNN(3, classes, 16)
        model = train_classifier(model, train_images, train_labels, epochs=settings["epochs"], lr=5e-3, seed=seed)
    layer = LAYERS[arch]
    with torch.inference_mode():
        accuracy = float((model(attack_images).argmax(1) == attack_labels).float().mean())
    head = model[1:] if arch == "example" else None  # the network after the layer, run per ablation
    ranking = rank_units_for_class(model, layer, rank_images, rank_labels, classes, head=head)
    shifts = [attack_unit_shift(model, layer, attack_images, attack_labels, b, settings=attack) for b in range(classes)]
    row = {
        "seed": seed,
        "accuracy": accuracy,
        "success_rate": float(np.mean([s.success_rate for s in shifts])),
        "clean_rate": float(np.mean([s.clean_rate for s in shifts])),
        "ablation_std": unit_overlap(shifts, ranking, n=n, seed=seed).to_dict(),
        "ablation_raw": unit_overlap(shifts, ranking, n=n, standardized=False, seed=seed).to_dict(),
    }
    if with_dissection:
        result = dissect(model, layer, attack_set, concept_names=attack_set.concept_names, batch_size=100)
        labelled = {
            b: [u for u in range(result.num_units) if result.is_detector[u] and result.unit_concepts[u] == shape]
            for b, shape in enumerate(attack_set.class_names)
        }
        kept = [s for s in shifts if labelled[s.target]]
        row["dissection_std"] = unit_overlap(kept, labelled, n=n, seed=seed).to_dict() if kept else None
    row["seconds"] = round(clock.seconds, 1)
    return row


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Train, rank and attack per seed; print one line per seed and, last, one JSON line. Returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_quick_option(parser, "one seed, small data (about 20 s of CPU)")
    parser.add_argument("--seeds", default=None, help="comma-separated training seeds (default 0,1,2; quick: 0)")
    parser.add_argument("--n", type=int, default=10, help="top units compared")
    parser.add_argument("--eps", type=float, default=8 / 255)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--dissect", action="store_true", help="also compare with the units dissection labels")
    parser.add_argument("--arch", choices=sorted(LAYERS), default="example", help="the example's CNN or SmallCNN")
    add_threads_option(parser, 1)
    args = parser.parse_args(argv)
    set_threads(args)
    settings = dict(SETTINGS["quick" if args.quick else "full"])
    if args.seeds:
        settings["seeds"] = [int(s) for s in args.seeds.split(",")]
    attack = AttackSettings(eps=args.eps, step_size=args.eps / 4, steps=args.steps)
    rows = []
    for seed in settings["seeds"]:
        rows.append(run_seed(seed, settings, attack, args.n, args.arch, args.dissect))
        row = rows[-1]
        for key in ("ablation_std", "ablation_raw", "dissection_std"):
            if row.get(key):
                s = row[key]["summary"]
                print(
                    f"seed {seed} ({key}): overlap {s['overlap']:.2f} of {args.n}, chance {s['expected']:.2f}, "
                    f"random {s['random']:.2f}, p {s['p_value']:.2g}; success {row['success_rate']:.3f}, "
                    f"accuracy {row['accuracy']:.3f}, {row['seconds']} s",
                    flush=True,
                )
    means = {}
    for key in ("ablation_std", "ablation_raw", "dissection_std"):
        found = [row[key]["summary"] for row in rows if row.get(key)]
        if found:
            means[key] = {m: float(np.mean([f[m] for f in found])) for m in ("overlap", "expected", "random")}
            means[key]["max_p_value"] = float(max(f["p_value"] for f in found))
    emit_json(
        {
            "bench": "attack_units",
            "quick": args.quick,
            "arch": args.arch,
            "layer": LAYERS[args.arch],
            "n": args.n,
            "attack": {"eps": attack.eps, "step_size": attack.step_size, "steps": attack.steps},
            "settings": settings,
            "mean_over_seeds": means,
            "success_rate": float(np.mean([r["success_rate"] for r in rows])),
            "accuracy": float(np.mean([r["accuracy"] for r in rows])),
            "runs": rows,
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Backdoor detection on the digits: the class-pattern scan against Neural Cleanse.

Trains small CNNs on the bundled digits (16 x 16 by default, so the full run fits in about
ten minutes on two CPU cores; ``--arch spatial``, the default, is :class:`SpatialCNN`, whose
linear head sees positions like the BadNets / Neural Cleanse MNIST models; ``--arch gap`` is
:class:`SmallCNN` with global average pooling): clean models, and models backdoored with a BadNets patch
(3 x 3 white square, bottom-right) or a Blended noise trigger (alpha 0.2), 10% all-to-one
poisoning, several seeds and two target classes. On every model it runs

* the class-pattern scan (:func:`captum_classpattern.backdoor.scan`) given only the clean
  held-out search split (patterns searched there, power measured on the eval split);
* Neural Cleanse (:func:`captum_classpattern.backdoor.neural_cleanse`) on the same
  clean images;
* on backdoored models, the per-image suspicion score over the poisoned training set.

It prints one row per model, a summary, and ONE JSON line last.

``--variants`` instead compares the scan's design choices (fixed canvas vs learned
values, image vs grey start, soft vs hardened map, and the three scores) on a separate
set of development models (seeds 10 and 11, clean seeds 10-13), so the default can be
chosen on models the main benchmark never sees.

Usage::

    python benchmarks/bench_backdoor.py            # full run (about 10 minutes, 2 cores)
    python benchmarks/bench_backdoor.py --quick    # 3 models, under 2 minutes
    python benchmarks/bench_backdoor.py --variants # design comparison
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Dict, List, Optional

import numpy as np
import torch

from captum_classpattern import load_digits
from captum_classpattern.backdoor import (
    BlendTrigger,
    NeuralCleanseSettings,
    PatchTrigger,
    PoisonedDataset,
    ScanSettings,
    ScoringSettings,
    SuspicionSettings,
    backdoor_metrics,
    neural_cleanse,
    scan,
    suspicion_scores,
)
from captum_classpattern.metrics import trigger_jaccard
from captum_classpattern.models import SmallCNN, SpatialCNN
from captum_classpattern.training import accuracy, train_classifier

TRIGGERS = {"patch": lambda: PatchTrigger(), "blend": lambda: BlendTrigger("noise", alpha=0.2, seed=0)}


ARCHITECTURES = {"spatial": lambda size: SpatialCNN(size, 1, 10, 16), "gap": lambda size: SmallCNN(1, 10, 16)}


def train_model(data, kind: str, target: int, seed: int, epochs: int, arch: str = "spatial"):
    """Train one model; ``kind`` is ``"clean"``, ``"patch"`` or ``"blend"``."""
    images, labels, poisoned, trigger = data.train.images, data.train.labels, None, None
    if kind != "clean":
        trigger = TRIGGERS[kind]()
        view = PoisonedDataset((images, labels), trigger, target=target, rate=0.1, seed=seed)
        images, labels = view.tensors()
        poisoned = view.poisoned_indices
    torch.manual_seed(seed)
    model = ARCHITECTURES[arch](images.shape[-1])
    started = time.perf_counter()
    train_classifier(model, images, labels, epochs=epochs, seed=seed)
    return {
        "model": model,
        "images": images,
        "labels": labels,
        "poisoned": poisoned,
        "trigger": trigger,
        "train_seconds": time.perf_counter() - started,
    }


def top_pixels_inside(scores: torch.Tensor, true_mask: torch.Tensor, k: int = 3) -> float:
    """Share of the ``k`` highest-scoring pixels that lie inside the true trigger.

    The Jaccard asks for the whole trigger, but a model often obeys a few of its pixels
    (2-3 of the 3 x 3 patch suffice here), and a search that seeks the smallest working
    pattern stops there; this says whether the pixels it did pick are on the trigger.
    """
    top = torch.argsort(scores.flatten().cpu(), descending=True, stable=True)[:k]
    return float(true_mask.flatten().bool()[top].float().mean())


def model_plan(quick: bool, seeds: List[int], clean_seeds: List[int], targets: List[int]):
    if quick:
        return [("clean", None, 0), ("patch", 0, 0), ("blend", 0, 0)]
    plan = [("clean", None, s) for s in clean_seeds]
    plan += [(kind, t, s) for kind in ("patch", "blend") for t in targets for s in seeds]
    return plan


def fmt(value, spec=".2f"):
    return "-" if value is None else format(value, spec)


def run_main(args) -> Dict:
    data = load_digits(size=args.size)
    true_mask = PatchTrigger().mask(args.size, args.size)
    rows = []
    started = time.perf_counter()
    header = (
        f"{'model':<16}{'CA':>6}{'ASR':>6}{'RA':>6} | {'scan flags':<12}{'A_t':>7}{'J':>6}{'in3':>5}{'s':>6} | "
        f"{'NC flags':<12}{'A_t':>7}{'J':>6}{'in3':>5}{'s':>6} | {'prec':>5}{'rec':>6}{'J_tr':>6}{'s':>6}"
    )
    print(header)
    print("-" * len(header))
    for kind, target, seed in model_plan(args.quick, args.seeds, args.clean_seeds, args.targets):
        bundle = train_model(data, kind, 0 if target is None else target, seed, args.epochs, args.arch)
        model = bundle["model"]
        row = {"kind": kind, "target": target, "seed": seed, "train_seconds": round(bundle["train_seconds"], 2)}
        if kind == "clean":
            row["clean_accuracy"] = accuracy(model, data.eval.images, data.eval.labels)
        else:
            metrics = backdoor_metrics(model, data.eval.images, data.eval.labels, bundle["trigger"], target)
            row.update(metrics.to_dict())
        patch = kind == "patch"
        result = scan(
            model,
            data.search.images,
            data.search.labels,
            ScanSettings(steps=args.scan_steps),
            eval_images=data.eval.images,
            eval_labels=data.eval.labels,
            trigger_mask=true_mask if patch else None,
            trigger_target=target if patch else None,
            seed=0,
        )
        row["scan"] = {
            "flagged": result.flagged,
            "scores": [round(s, 2) for s in result.scores],
            "pattern_sizes": [p.k for p in result.patterns],
            "powers": [round(p, 3) for p in result.powers],
            "anomaly_index": [round(a, 2) for a in result.anomaly_index],
            "target_index": None if target is None else round(result.anomaly_index[target], 2),
            "jaccard": result.trigger_jaccard,
            "seconds": round(result.seconds, 2),
            "jaccard_search": result.jaccard(true_mask, target, source="search") if patch else None,
            "trigger_classes": sorted(result.trigger_maps),
            "top3_inside": top_pixels_inside(result.trigger_maps.get(target, result.maps[target]), true_mask)
            if patch
            else None,
        }
        nc = neural_cleanse(
            model,
            data.search.images,
            data.search.labels,
            NeuralCleanseSettings(steps=args.nc_steps),
            trigger_mask=true_mask if patch else None,
            trigger_target=target if patch else None,
            seed=0,
        )
        row["nc"] = {
            "flagged": nc.flagged,
            "norms": [round(n, 2) for n in nc.norms],
            "anomaly_index": [round(a, 2) for a in nc.anomaly_index],
            "target_index": None if target is None else round(nc.anomaly_index[target], 2),
            "jaccard": nc.trigger_jaccard,
            "seconds": round(nc.seconds, 2),
            "top3_inside": top_pixels_inside(nc.masks[target], true_mask) if patch else None,
        }
        if kind != "clean":
            sus = suspicion_scores(
                model, bundle["images"], bundle["labels"], SuspicionSettings(steps=args.suspicion_steps), seed=0
            )
            precision, recall = sus.precision_recall(bundle["poisoned"])
            train_j = None
            if patch and sus.flagged.numel():
                train_j = trigger_jaccard(sus.recovered_trigger(int(true_mask.sum())), true_mask)
            row["suspicion"] = {
                "precision": round(precision, 4),
                "recall": round(recall, 4),
                "flagged": int(sus.flagged.numel()),
                "poisoned": int(bundle["poisoned"].numel()),
                "train_jaccard": train_j,
                "seconds": round(sus.seconds, 2),
            }
        rows.append(row)
        name = f"{kind}{'' if target is None else '/t' + str(target)}/s{seed}"
        sus_row = row.get("suspicion", {})
        print(
            f"{name:<16}{row['clean_accuracy']:>6.3f}{fmt(row.get('attack_success_rate'), '.3f'):>6}"
            f"{fmt(row.get('robust_accuracy'), '.3f'):>6} | "
            f"{str(row['scan']['flagged']):<12}{fmt(row['scan']['target_index'], '.1f'):>7}"
            f"{fmt(row['scan']['jaccard']):>6}{fmt(row['scan']['top3_inside'], '.2f'):>5}"
            f"{row['scan']['seconds']:>6.1f} | "
            f"{str(row['nc']['flagged']):<12}{fmt(row['nc']['target_index'], '.1f'):>7}"
            f"{fmt(row['nc']['jaccard']):>6}{fmt(row['nc']['top3_inside'], '.2f'):>5}{row['nc']['seconds']:>6.1f} | "
            f"{fmt(sus_row.get('precision'), '.2f'):>5}{fmt(sus_row.get('recall'), '.2f'):>6}"
            f"{fmt(sus_row.get('train_jaccard')):>6}{fmt(sus_row.get('seconds'), '.1f'):>6}",
            flush=True,
        )
    natural = [(r, c) for r in rows for c in r["scan"]["flagged"] if c != r["target"]]
    if natural:
        print("\nflagged classes that are not an injected target (the smallest pattern reaching power 0.8):")
        for r, c in natural:
            name = f"{r['kind']}{'' if r['target'] is None else '/t' + str(r['target'])}/s{r['seed']}"
            print(
                f"  {name:<14} class {c}: {r['scan']['pattern_sizes'][c]} pixels flip "
                f"{r['scan']['powers'][c]:.0%} of held-out images of other classes (anomaly index "
                f"{r['scan']['anomaly_index'][c]:.1f})"
            )
    return summarise(rows, time.perf_counter() - started, args)


def _rate(hits: int, total: int) -> Optional[float]:
    return None if total == 0 else round(hits / total, 4)


def summarise(rows: List[Dict], seconds: float, args) -> Dict:
    clean = [r for r in rows if r["kind"] == "clean"]
    attacked = [r for r in rows if r["kind"] != "clean"]
    clean_ca = statistics.mean(r["clean_accuracy"] for r in clean) if clean else None
    summary = {
        "bench": "backdoor",
        "quick": args.quick,
        "arch": args.arch,
        "size": args.size,
        "models": len(rows),
        "clean_models": len(clean),
        "backdoored_models": len(attacked),
        "clean_accuracy_clean_models": None if clean_ca is None else round(clean_ca, 4),
        "max_ca_drop": None
        if clean_ca is None or not attacked
        else round(max(clean_ca - r["clean_accuracy"] for r in attacked), 4),
        "min_asr": None if not attacked else round(min(r["attack_success_rate"] for r in attacked), 4),
    }
    for method in ("scan", "nc"):
        detected = sum(r["target"] in r[method]["flagged"] for r in attacked)
        false_clean = sum(bool(r[method]["flagged"]) for r in clean)
        extra = sum(len([c for c in r[method]["flagged"] if c != r["target"]]) for r in attacked)
        by_kind = {}
        for kind in ("patch", "blend"):
            group = [r for r in attacked if r["kind"] == kind]
            jaccards = [r[method]["jaccard"] for r in group if r[method]["jaccard"] is not None]
            inside = [r[method]["top3_inside"] for r in group if r[method]["top3_inside"] is not None]
            by_kind[kind] = {
                "detected": _rate(sum(r["target"] in r[method]["flagged"] for r in group), len(group)),
                "mean_jaccard": None if not jaccards else round(float(np.mean(jaccards)), 4),
                "mean_top3_inside": None if not inside else round(float(np.mean(inside)), 4),
            }
        summary[method] = {
            "detection_rate": _rate(detected, len(attacked)),
            "clean_false_alarm_rate": _rate(false_clean, len(clean)),
            "extra_flags_on_backdoored": extra,
            "by_trigger": by_kind,
            "mean_seconds": round(float(np.mean([r[method]["seconds"] for r in rows])), 2),
        }
    for kind in ("patch", "blend"):
        group = [r["suspicion"] for r in attacked if r["kind"] == kind]
        if group:
            train_j = [g["train_jaccard"] for g in group if g["train_jaccard"] is not None]
            summary[f"suspicion_{kind}"] = {
                "precision_mean": round(float(np.mean([g["precision"] for g in group])), 4),
                "recall_mean": round(float(np.mean([g["recall"] for g in group])), 4),
                "precision_min": round(min(g["precision"] for g in group), 4),
                "recall_min": round(min(g["recall"] for g in group), 4),
                "train_jaccard_mean": None if not train_j else round(float(np.mean(train_j)), 4),
                "mean_seconds": round(float(np.mean([g["seconds"] for g in group])), 2),
            }
    summary["total_seconds"] = round(seconds, 1)
    return summary


# ----------------------------------------------------------------------------- variants

VARIANTS = {
    "canvas/image/soft": dict(values="canvas", init="image", harden=0.0),
    "learned/grey/soft": dict(values="learned", init="grey", harden=0.0),
    "learned/image/hard": dict(values="learned", init="image", harden=0.5),
    "learned/grey/hard": dict(values="learned", init="grey", harden=0.5),
}
SCORINGS = {
    "power_auc": dict(score="power_auc"),
    "power_auc@5%": dict(score="power_auc", auc_k=0.05),
    "min_k@0.5": dict(score="min_k", power_threshold=0.5),
    "min_k@0.8": dict(score="min_k", power_threshold=0.8),
    "min_k@0.9": dict(score="min_k", power_threshold=0.9),
    "min_k@0.97": dict(score="min_k", power_threshold=0.97),
    "power@3px": dict(score="power_at_k", k=3),
    "power@6px": dict(score="power_at_k", k=6),
    "mask_l1": dict(score="mask_l1"),
}


def run_variants(args) -> Dict:
    data = load_digits(size=args.size)
    true_mask = PatchTrigger().mask(args.size, args.size)
    plan = [("clean", None, s) for s in (10, 11, 12, 13, 14, 15)]
    plan += [(kind, t, s) for kind in ("patch", "blend") for t in args.targets for s in (10, 11)]
    if args.quick:
        plan = [("clean", None, 10), ("patch", args.targets[0], 10)]
    records = {(v, s): [] for v in VARIANTS for s in SCORINGS}
    seconds = {v: [] for v in VARIANTS}
    dump: List[Dict] = []
    started = time.perf_counter()
    for kind, target, seed in plan:
        bundle = train_model(data, kind, 0 if target is None else target, seed, args.epochs, args.arch)
        for variant, options in VARIANTS.items():
            base = scan(
                bundle["model"],
                data.search.images,
                data.search.labels,
                ScanSettings(steps=args.scan_steps).replace(**options),
                scoring=ScoringSettings(full_table=True),
                eval_images=data.eval.images,
                eval_labels=data.eval.labels,
                seed=0,
            )
            seconds[variant].append(base.seconds)
            dump.append(
                {
                    "kind": kind,
                    "target": target,
                    "seed": seed,
                    "variant": variant,
                    "ks": base.table.ks,
                    "power_table": base.table.powers.tolist(),
                    "l1": base.maps.sum((1, 2)).tolist(),
                    "jaccard": base.jaccard(true_mask, target) if kind == "patch" else None,
                    "seconds": base.seconds,
                }
            )
            for name, scoring in SCORINGS.items():
                result = base.rescore(**scoring)
                jaccard = result.jaccard(true_mask, target) if kind == "patch" else None
                records[(variant, name)].append(
                    {
                        "kind": kind,
                        "target": target,
                        "flagged": result.flagged,
                        "target_index": None if target is None else result.anomaly_index[target],
                        "jaccard": jaccard,
                    }
                )
            print(
                f"{kind}/t{target}/s{seed} {variant}: "
                + ", ".join(f"{n}={records[(variant, n)][-1]['flagged']}" for n in SCORINGS),
                flush=True,
            )
    if args.dump:
        with open(args.dump, "w") as stream:
            json.dump(dump, stream)
    print()
    print(f"{'variant':<22}{'score':<11}{'detect':>8}{'clean FA':>10}{'extra':>7}{'med A_t':>9}{'J patch':>9}")
    table = []
    for (variant, name), recs in records.items():
        attacked = [r for r in recs if r["kind"] != "clean"]
        clean = [r for r in recs if r["kind"] == "clean"]
        detected = sum(r["target"] in r["flagged"] for r in attacked)
        false_alarm = sum(bool(r["flagged"]) for r in clean)
        extra = sum(len([c for c in r["flagged"] if c != r["target"]]) for r in attacked)
        median_index = float(np.median([r["target_index"] for r in attacked])) if attacked else None
        jaccards = [r["jaccard"] for r in attacked if r["jaccard"] is not None]
        entry = {
            "variant": variant,
            "score": name,
            "detected": f"{detected}/{len(attacked)}",
            "clean_false_alarms": f"{false_alarm}/{len(clean)}",
            "extra_flags": extra,
            "median_target_index": None if median_index is None else round(median_index, 2),
            "patch_jaccard": None if not jaccards else round(float(np.mean(jaccards)), 3),
            "mean_seconds": round(float(np.mean(seconds[variant])), 2),
        }
        table.append(entry)
        print(
            f"{variant:<22}{name:<11}{entry['detected']:>8}{entry['clean_false_alarms']:>10}{extra:>7}"
            f"{fmt(median_index, '.1f'):>9}{fmt(entry['patch_jaccard'], '.2f'):>9}"
        )
    return {
        "bench": "backdoor_variants",
        "arch": args.arch,
        "size": args.size,
        "models": len(plan),
        "rows": table,
        "total_seconds": round(time.perf_counter() - started, 1),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="three models and short searches (< 2 minutes)")
    parser.add_argument("--variants", action="store_true", help="compare the scan's design choices instead")
    parser.add_argument("--size", type=int, default=16, help="digits image side (16 or 32)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of backdoored models")
    parser.add_argument("--clean-seeds", type=int, nargs="+", default=list(range(10)), help="seeds of clean models")
    parser.add_argument(
        "--arch",
        choices=sorted(ARCHITECTURES),
        default="spatial",
        help="spatial: SpatialCNN (linear head on the feature map); gap: SmallCNN (global pooling)",
    )
    parser.add_argument("--targets", type=int, nargs="+", default=[0, 5], help="backdoor target classes")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--dump", help="with --variants: write every search's raw powers to this JSON file")
    parser.add_argument("--scan-steps", type=int, default=None)
    parser.add_argument("--nc-steps", type=int, default=None)
    parser.add_argument("--suspicion-steps", type=int, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    args.scan_steps = args.scan_steps or (80 if args.quick else 150)
    args.nc_steps = args.nc_steps or (150 if args.quick else 300)
    args.suspicion_steps = args.suspicion_steps or (10 if args.quick else 20)
    if args.quick:
        args.epochs = min(args.epochs, 6)
    summary = run_variants(args) if args.variants else run_main(args)
    if not args.variants:
        print()
        for method, label in (("scan", "class-pattern scan"), ("nc", "Neural Cleanse")):
            s = summary[method]
            print(
                f"{label:<20} detected {s['detection_rate']}  clean false alarms {s['clean_false_alarm_rate']}  "
                f"extra flags {s['extra_flags_on_backdoored']}  mean {s['mean_seconds']} s"
            )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

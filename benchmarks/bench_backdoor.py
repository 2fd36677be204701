"""Backdoor detection: the class-pattern scan, with and without a reference model, against Neural Cleanse.

The default run is the benchmark over architectures on the photo digits (3 x 32 x 32,
:func:`captum_classpattern.data.load_photo_digits`), with the models of
``benchmarks/backdoor_zoo.py`` (trained once and cached): per architecture (``spatial``,
``gap``, ``resnet18``) 10 clean models, 12 backdoored ones (4 x 4 white patch and noise blend
at alpha 0.2, targets 0 and 5, seeds 0-2, 10% all-to-one poisoning) and 3 clean reference
models (seeds 100-102, what a defender trains on its own clean data). On every suspect it
runs

* the class-pattern scan (:func:`captum_classpattern.backdoor.scan`) on the clean search
  split, power measured on the eval split, compared with the references: each reference is
  scanned once per architecture and its :class:`~captum_classpattern.backdoor.ScanResult`
  reused for every suspect (its seconds are shared out over the suspects);
* the same scan scored without the reference (``ScanResult.rescore(..., reference=False)``:
  the same search, so no extra time), which is what the scan did before;
* Neural Cleanse (:func:`captum_classpattern.backdoor.neural_cleanse`) on the same clean images.

It prints one row per model, a summary per architecture (detection rate over every poisoned
model and over those whose backdoor works, attack success at least ``EFFECTIVE_ASR``; clean
false-alarm rate, share of backdoored models with an extra flag, patch-trigger Jaccard, seconds per
model) and ONE JSON line last. ``--rows FILE`` appends each model's row to FILE (and the
scans next to it) so that an interrupted run resumes; ``--no-train`` scans only the models
already cached.

``--digits`` is the earlier benchmark on 16 x 16 digits (``--arch spatial`` or ``gap``, the
models trained inline, with the per-image suspicion score), and ``--variants`` compares the
scan's design choices on digits development models.

Usage::

    python -m benchmarks.bench_backdoor                          # the zoo, three architectures
    python -m benchmarks.bench_backdoor --archs gap --quick      # the quick zoo: 4 models, short searches
    python -m benchmarks.bench_backdoor --digits --arch gap      # the earlier digits benchmark
    python -m benchmarks.bench_backdoor --variants               # design comparison (digits)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from benchmarks._harness import Timer, add_quick_option, emit_json, set_threads
from benchmarks.backdoor_zoo import ARCHS as ZOO_ARCHS
from benchmarks.backdoor_zoo import DEFAULT_ARCHS, entry_name, load_zoo, make_trigger, zoo_data
from captum_classpattern import load_digits
from captum_classpattern.backdoor import (
    BlendTrigger,
    NeuralCleanseSettings,
    PatchTrigger,
    PoisonedDataset,
    ScanResult,
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
    with Timer() as clock:
        train_classifier(model, images, labels, epochs=epochs, seed=seed)
    return {
        "model": model,
        "images": images,
        "labels": labels,
        "poisoned": poisoned,
        "trigger": trigger,
        "train_seconds": clock.seconds,
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
    clock = Timer()
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
    return summarise(rows, clock.seconds, args)


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
    clock = Timer()
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
        "total_seconds": round(clock.seconds, 1),
    }


# ----------------------------------------------------------------------------- zoo (photo digits)

METHODS = (("scan_ref", "scan with reference"), ("scan", "scan alone"), ("nc", "Neural Cleanse"))

EFFECTIVE_ASR = 0.5
"""Attack success rate from which a poisoned model counts as backdoored in ``detection_rate_effective``."""


def reference_scans(arch: str, references, data, args) -> Tuple[List, float]:
    """Scan each reference model once; every suspect of the architecture reuses the results.

    With ``--rows`` the results are also written next to the rows file and read back by a
    later run (the reference's own search is the part of the comparison that is amortised).
    """
    results = []
    for entry in references:
        quick = "-quick" if args.quick else ""
        probe = f"b{args.blend_steps}x{ScanSettings().blend_batch_size}"
        tag = f"{args.scan_steps}-{args.max_eval}-{args.max_fraction}-{probe}{quick}"
        path = None if not args.rows else f"{args.rows}.refs/{arch}-{entry.name}-{tag}.json"
        if path and os.path.isfile(path):
            results.append(ScanResult.from_json(path))
            continue
        results.append(scan_model(entry.model, data, args))
        if path:
            results[-1].to_json(path)
    return results, float(sum(result.seconds for result in results))


def done_rows(args, arch: str) -> List[Dict]:
    """The rows of this architecture already in the ``--rows`` file (a resumed run skips those models)."""
    if not args.rows or not os.path.isfile(args.rows):
        return []
    with open(args.rows) as stream:
        rows = [json.loads(line) for line in stream if line.strip()]
    setting = {
        "quick": args.quick,
        "steps": args.scan_steps,
        "max_eval": args.max_eval,
        "max_fraction": args.max_fraction,
        "blend_steps": args.blend_steps,
    }
    return [
        r
        for r in rows
        if r["arch"] == arch
        and r.get("replica", 0) == args.replica  # rows of the zoo itself carry no replica key
        and all(r.get(key) == value for key, value in setting.items())
    ]


def scan_model(model, data, args, **kwargs):
    """The scan of one model with the benchmark's settings (search split, power on the eval split)."""
    return scan(
        model,
        data.search.images,
        data.search.labels,
        ScanSettings(steps=args.scan_steps, blend_steps=args.blend_steps),
        scoring=ScoringSettings(max_eval=args.max_eval, max_fraction=args.max_fraction),
        eval_images=data.eval.images,
        eval_labels=data.eval.labels,
        seed=0,
        **kwargs,
    )


def strongest_index(result: ScanResult) -> List[float]:
    """Each class's larger anomaly index of the scan's two detectors (top-k patterns and blend probe)."""
    if not result.blend_anomaly_index:
        return list(result.anomaly_index)
    return [max(a, b) for a, b in zip(result.anomaly_index, result.blend_anomaly_index)]


def method_row(flagged, index, target, jaccard, seconds) -> Dict:
    """The numbers of one method on one model."""
    return {
        "flagged": list(flagged),
        "target_index": None if target is None else round(float(index[target]), 2),
        "jaccard": jaccard,
        "seconds": round(seconds, 2),
    }


def run_zoo_arch(arch: str, data, args) -> Dict:
    """Scan (with and without reference) and Neural Cleanse on every cached model of one architecture."""
    entries = load_zoo(arch, quick=args.quick, root=args.zoo, train_missing=args.train, data=data, replica=args.replica)
    references = [e for e in entries if e.kind == "reference"][: args.references]
    suspects = [e for e in entries if e.kind != "reference"]
    clock = Timer()
    own, reference_seconds = reference_scans(arch, references, data, args)
    amortised = reference_seconds / max(1, len(suspects))
    print(f"\n{arch}: {len(references)} reference scans in {reference_seconds:.1f} s "
          f"({amortised:.1f} s per suspect), {len(suspects)} suspects", flush=True)  # fmt: skip
    header = (
        f"{'model':<14}{'CA':>6}{'ASR':>6} | {'scan+ref':<10}{'A_t':>6}{'J':>6}{'s':>6} | "
        f"{'scan alone':<11}{'A_t':>6} | {'NC flags':<10}{'A_t':>6}{'J':>6}{'s':>6}"
    )
    print(header + "\n" + "-" * len(header), flush=True)
    rows = done_rows(args, arch)
    for row in rows:
        print_row(row)
    done = {(r["kind"], r["target"], r["seed"]) for r in rows}
    index, count = args.shard
    for entry in suspects[: args.limit][index::count]:
        if (entry.kind, entry.target, entry.seed) in done:
            continue
        target = entry.target
        mask = make_trigger("patch").mask(*data.search.images.shape[-2:]) if entry.kind == "patch" else None
        extra = {"trigger_mask": mask, "trigger_target": target} if mask is not None else {}
        result = scan_model(entry.model, data, args, reference=own or None, **extra)
        alone = result.rescore(result.score, reference=False) if own else result
        nc = neural_cleanse(
            entry.model, data.search.images, data.search.labels, NeuralCleanseSettings(steps=args.nc_steps),
            seed=0, **extra,
        )  # fmt: skip
        row = {
            "arch": arch,
            "quick": args.quick,
            "steps": args.scan_steps,
            "max_eval": args.max_eval,
            "max_fraction": args.max_fraction,
            "blend_steps": args.blend_steps,
            **({"replica": args.replica} if args.replica else {}),
            "kind": entry.kind,
            "target": target,
            "seed": entry.seed,
            "clean_accuracy": entry.meta.get("clean_accuracy"),
            "attack_success_rate": entry.meta.get("attack_success_rate"),
            "scan_ref": method_row(
                result.flagged, strongest_index(result), target, result.trigger_jaccard, result.seconds + amortised
            ),
            "detectors": {
                "pattern_flagged": result.pattern_flagged,
                "blend_flagged": result.blend_flagged,
                "pattern_alone": alone.pattern_flagged,
                "blend_alone": alone.blend_flagged,
            },
            "scan": method_row(alone.flagged, strongest_index(alone), target, result.trigger_jaccard, result.seconds),
            "nc": method_row(nc.flagged, nc.anomaly_index, target, nc.trigger_jaccard, nc.seconds),
            "scores": {
                "suspect": [round(s, 3) for s in result.suspect_scores],
                "reference": [round(s, 3) for s in result.reference_scores],
            },
        }
        rows.append(row)
        if args.rows:
            result.to_json(f"{args.rows}.scans/{arch}-{entry.name}.json")  # to score again without a search
            with open(args.rows, "a") as stream:
                stream.write(json.dumps(row) + "\n")
        print_row(row)
    summary = {"arch": arch, "references": len(references), "reference_seconds": round(reference_seconds, 1)}
    summary.update(summarise_methods(rows, [m for m, _ in METHODS]))
    summary["seconds"] = round(clock.seconds, 1)
    for method, label in METHODS:
        s = summary[method]
        print(
            f"{label:<20} detected {s['detection_rate']} (of working backdoors {s['detection_rate_effective']})  "
            f"clean false alarms {s['clean_false_alarm_rate']}  "
            f"backdoored with an extra flag {s['backdoored_with_extra_flag_rate']}  patch J {s['patch_jaccard']}  "
            f"{s['mean_seconds']} s per model",
            flush=True,
        )
    return summary


def print_row(row: Dict) -> None:
    """One table line: the model, then each method's flags, target anomaly index, Jaccard and seconds."""
    s, a, n = row["scan_ref"], row["scan"], row["nc"]
    print(
        f"{entry_name(row['kind'], row['target'], row['seed']):<14}{fmt(row['clean_accuracy'], '.3f'):>6}"
        f"{fmt(row['attack_success_rate'], '.3f'):>6} | "
        f"{str(s['flagged']):<10}{fmt(s['target_index'], '.1f'):>6}{fmt(s['jaccard']):>6}{s['seconds']:>6.1f} | "
        f"{str(a['flagged']):<11}{fmt(a['target_index'], '.1f'):>6} | "
        f"{str(n['flagged']):<10}{fmt(n['target_index'], '.1f'):>6}{fmt(n['jaccard']):>6}{n['seconds']:>6.1f}",
        flush=True,
    )


def summarise_methods(rows: List[Dict], methods: Sequence[str]) -> Dict:
    """Detection, clean false alarms, extra flags, patch Jaccard and seconds of each method."""
    clean = [r for r in rows if r["kind"] == "clean"]
    attacked = [r for r in rows if r["kind"] != "clean"]
    # A poisoning that did not take (the trigger flips few images) leaves no backdoor to find;
    # those models are counted apart so that a flag on them is not read as a detection.
    effective = [r for r in attacked if (r.get("attack_success_rate") or 0.0) >= EFFECTIVE_ASR]
    out: Dict = {
        "clean_models": len(clean),
        "backdoored_models": len(attacked),
        "effective_backdoors": len(effective),
        "effective_asr": EFFECTIVE_ASR,
    }
    for method in methods:
        jaccards = [r[method]["jaccard"] for r in attacked if r["kind"] == "patch" and r[method]["jaccard"] is not None]
        out[method] = {
            "detection_rate": _rate(sum(r["target"] in r[method]["flagged"] for r in attacked), len(attacked)),
            "detection_rate_effective": _rate(
                sum(r["target"] in r[method]["flagged"] for r in effective), len(effective)
            ),
            "detection_by_trigger": {
                kind: _rate(
                    sum(r["target"] in r[method]["flagged"] for r in attacked if r["kind"] == kind),
                    sum(r["kind"] == kind for r in attacked),
                )
                for kind in ("patch", "blend")
            },
            "clean_false_alarm_rate": _rate(sum(bool(r[method]["flagged"]) for r in clean), len(clean)),
            "backdoored_with_extra_flag_rate": _rate(
                sum(any(c != r["target"] for c in r[method]["flagged"]) for r in attacked), len(attacked)
            ),
            "patch_jaccard": None if not jaccards else round(float(np.mean(jaccards)), 3),
            "mean_seconds": None if not rows else round(float(np.mean([r[method]["seconds"] for r in rows])), 2),
        }
    return out


def run_zoo(args) -> Dict:
    """The benchmark over architectures on the photo digits."""
    data = zoo_data()
    clock = Timer()
    per_arch = {arch: run_zoo_arch(arch, data, args) for arch in args.archs}
    return {
        "bench": "backdoor_zoo",
        "quick": args.quick,
        "scan_steps": args.scan_steps,
        "nc_steps": args.nc_steps,
        "archs": per_arch,
        "total_seconds": round(clock.seconds, 1),
    }


def _shard(text: str) -> Tuple[int, int]:
    """``"I/N"`` as ``(I, N)`` with ``0 <= I < N``."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be I/N, e.g. 0/2, got {text!r}") from None
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"needs 0 <= I < N, got {text!r}")
    return index, count


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the benchmark asked for; print its table and, last, one JSON line. Returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_quick_option(parser, "the quick zoo (or 3 digits models) and short searches")
    parser.add_argument("--digits", action="store_true", help="the earlier benchmark on 16 x 16 digits (--arch)")
    parser.add_argument("--variants", action="store_true", help="digits: compare the scan's design choices instead")
    parser.add_argument(
        "--archs", nargs="+", choices=ZOO_ARCHS, default=None, help="zoo architectures (default: spatial gap resnet18)"
    )
    parser.add_argument("--zoo", help="the zoo's folder (default: backdoor_zoo's)")
    parser.add_argument(
        "--train", action=argparse.BooleanOptionalAction, default=True, help="train zoo models that are not cached"
    )
    parser.add_argument(
        "--replica", type=int, default=0, help="zoo: a held-out copy with new seeds (backdoor_zoo.plan); 0: the zoo"
    )
    parser.add_argument("--references", type=int, default=3, help="reference models per architecture (0: none)")
    parser.add_argument("--limit", type=int, default=None, help="scan at most this many suspects per architecture")
    parser.add_argument("--rows", help="append every model's row as one JSON line to this file")
    parser.add_argument(
        "--shard",
        type=_shard,
        default=(0, 1),
        metavar="I/N",
        help="zoo: scan only every N-th suspect from the I-th (0-based), to share one --rows file between processes",
    )
    parser.add_argument("--max-eval", type=int, default=300, help="zoo: held-out images per class (ScoringSettings)")
    parser.add_argument("--max-fraction", type=float, default=1.0, help="zoo: largest pattern size (ScoringSettings)")
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
    parser.add_argument(
        "--blend-steps", type=int, default=ScanSettings().blend_steps, help="zoo: the scan's blend-probe steps (0: off)"
    )
    parser.add_argument("--suspicion-steps", type=int, default=None)
    args = parser.parse_args(argv)
    set_threads(1)
    args.scan_steps = args.scan_steps or (80 if args.quick else 150)
    args.nc_steps = args.nc_steps or (150 if args.quick else 300)
    args.suspicion_steps = args.suspicion_steps or (10 if args.quick else 20)
    if args.quick:
        args.epochs = min(args.epochs, 6)
    if not (args.digits or args.variants):
        args.archs = args.archs or (["gap"] if args.quick else list(DEFAULT_ARCHS))
        emit_json(run_zoo(args))
        return 0
    summary = run_variants(args) if args.variants else run_main(args)
    if not args.variants:
        print()
        for method, label in (("scan", "class-pattern scan"), ("nc", "Neural Cleanse")):
            s = summary[method]
            print(
                f"{label:<20} detected {s['detection_rate']}  clean false alarms {s['clean_false_alarm_rate']}  "
                f"extra flags {s['extra_flags_on_backdoored']}  mean {s['mean_seconds']} s"
            )
    emit_json(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

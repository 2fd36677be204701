"""How many held-out images the scan's measurements need: its flags at fewer images than 300, on a zoo's kept scans.

The scan measures every power (its patterns', the blend probe's, the warp probe's) on at most
``ScoringSettings.max_eval`` held-out other-class images per class. The search does not
depend on them, so :func:`~captum_classpattern.backdoor.remeasure` of a kept scan (the
``<cache>/detector-scans/`` of ``bench_detectors``) at ``max_eval = m`` is exactly the scan
that would have run at ``m``. This script re-measures each kept scan of a zoo at the counts
asked for (``bench_detectors.remeasured_scan``, kept in ``<cache>/remeasured/<name>-m<count>.json``:
resumable), scores every
model alone and against the zoo's other clean models of its architecture (as
``bench_detectors`` does), and compares the flags with those of the kept scans at 300.

The rule it serves, written before it ran: the default ``max_eval`` drops from 300 to the
smallest count tried at which the scan *with references* flags exactly the same classes on
every development model as at 300 (the scan alone is reported).

Printed: one JSON line per re-measured model (its seconds), then the summary: per count,
each model's flags and score alone and with references, the models whose flags equal those
at 300, the working backdoors found, the clean models flagged, the AUROC with references,
and the measurement's mean seconds.

Usage::

    CLASSPATTERN_CIFAR10=~/.cache/cifar10 python -m benchmarks.bench_scan_precision --plan dev --counts 150 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict, List, Optional, Sequence

import torch

from benchmarks import bench_detectors as detectors  # the table's images, kept scans and AUROC
from benchmarks import cifar10_models as models
from benchmarks import cifar10_zoo as zoo
from captum_classpattern.backdoor import ScanResult

KEPT = 300
"""The image count of the kept scans (the default ``max_eval`` they ran at)."""


def _seconds(entry: zoo.ZooEntry, cache: str, count: int) -> Optional[float]:
    path = os.path.join(cache, "remeasured", f"{entry.name}-m{count}.json")
    with open(path) as stream:
        return json.load(stream).get("remeasure_seconds")


def summarise(
    scanned: List[zoo.ZooEntry], scans: Dict[int, Dict[str, ScanResult]], cache: str, counts: Sequence[int]
) -> Dict[str, Any]:
    """Per count: flags alone and with references, agreement with the kept scans, detection, AUROC, seconds."""
    clean = [e for e in scanned if e.attack is None]
    working = [
        e
        for e in scanned
        if e.attack is not None and (detectors.attack_success(e.name, cache) or 0) >= detectors.EFFECTIVE_ASR
    ]
    per_count: Dict[int, Dict[str, Any]] = {}
    for count in [KEPT, *counts]:
        rows = {}
        for entry in scanned:
            alone = scans[count][entry.name]
            others = [scans[count][c.name] for c in clean if c.arch == entry.arch and c.name != entry.name]
            compared = alone.with_references(others)
            rows[entry.name] = {
                "alone": alone.flagged,
                "with_references": compared.flagged,
                "score_alone": round(alone.model_score(), 3),
                "score_with_references": round(compared.model_score(), 3),
            }
        per_count[count] = rows
    summary: Dict[str, Any] = {"models": [e.name for e in scanned], "counts": {}}
    for count, rows in per_count.items():
        kept = per_count[KEPT]
        summary["counts"][count] = {
            "same_flags_with_references": sum(rows[n]["with_references"] == kept[n]["with_references"] for n in rows),
            "same_flags_alone": sum(rows[n]["alone"] == kept[n]["alone"] for n in rows),
            "targets_found_with_references": sum(e.target in rows[e.name]["with_references"] for e in working),
            "working_backdoors": len(working),
            "clean_flagged_with_references": sum(bool(rows[e.name]["with_references"]) for e in clean),
            "auroc_with_references": detectors.auroc(
                [rows[e.name]["score_with_references"] for e in working],
                [rows[e.name]["score_with_references"] for e in clean],
            ),
            "remeasure_seconds_mean": (
                None if count == KEPT else round(sum(_seconds(e, cache, count) or 0 for e in scanned) / len(scanned), 1)
            ),
            "per_model": rows,
        }
    return summary


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Re-measure, score and compare; print the summary as one JSON line. Returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plan", choices=sorted(zoo.PLANS), default="dev")
    parser.add_argument("--archs", nargs="+", default=["preact18"], choices=list(models.ARCHITECTURES))
    parser.add_argument("--counts", nargs="+", type=int, default=[150], help="held-out images per class to try")
    parser.add_argument("--data", help="CIFAR-10 folder (default: $CLASSPATTERN_CIFAR10)")
    parser.add_argument("--cache", help="where the zoo's models are (default: <package cache>/cifar10)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args(argv)
    root = models.cifar10_root(args.data)
    if root is None:
        print("bench_scan_precision: no CIFAR-10 folder: pass --data or set CLASSPATTERN_CIFAR10", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    cache = models.cache_folder(args.cache)
    data = detectors.test_data(root, False)
    entries = zoo.plan_entries(args.plan, args.archs, list(zoo.ATTACKS))
    scanned = [e for e in entries if os.path.exists(os.path.join(cache, "detector-scans", e.name + ".json"))]
    scans: Dict[int, Dict[str, ScanResult]] = {KEPT: {}}
    for entry in scanned:  # the scans as run, at 300 images (kept_scan would give them at today's default)
        kept = ScanResult.from_json(os.path.join(cache, "detector-scans", entry.name + ".json"))
        if kept.scoring.max_eval != KEPT:
            raise ValueError(f"{entry.name}'s kept scan measured {kept.scoring.max_eval} images, not {KEPT}")
        scans[KEPT][entry.name] = kept.rescore("power_auc", reference=False)
    for count in args.counts:
        scans[count] = {}
        for entry in scanned:
            scans[count][entry.name] = detectors.remeasured_scan(entry, cache, data, count)
            print(
                json.dumps({"model": entry.name, "count": count, "seconds": _seconds(entry, cache, count)}),
                file=sys.stderr,
                flush=True,
            )
    print(json.dumps(summarise(scanned, scans, cache, args.counts)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

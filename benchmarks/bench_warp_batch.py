"""How many images the warp probe's search needs per step: its flags with fewer than 24, on a zoo's kept scans.

The warp probe (``ScanSettings.warp_steps``) learns one displacement field per class on
``batch_size`` (24) other-class images per class per step, the pattern search's batch; the
blend probe learns on 8. On the pooled CNN the warp probe's search takes a fifth of the
scan's time, nearly all of it in the model's forward and backward passes, which scale with
the batch. This script learns the fields of every kept scan of a zoo (``bench_detectors``'
``<cache>/detector-scans/``, at today's ``max_eval``) again at each batch asked for, with
the kept scan's seed, measures them on the same held-out images, puts them in place of the
kept fields and compares the flags, the model alone and against the zoo's other clean
models of its architecture (whose fields are learned at the same batch). The new fields
and their table are kept in ``<cache>/warp-batch/<name>-b<batch>.json`` (resumable).

(``bench_detectors.rewarped_scan``, which also brings the table's kept scans to a new default.)

The rule it serves, written before it ran: the warp probe's batch drops from 24 to the
smallest batch tried at which the scan *with references* flags exactly the same classes on
every development model as at 24, and the warp probe itself still flags the WaNet model's
target; otherwise it stays at 24. The scan alone is reported.

Printed: one JSON line per learned model (its seconds) on stderr, then the summary: per
batch, each model's flags and score alone and with references, the warp probe's own flags,
the models whose flags equal those at 24, the working backdoors found, the clean models
flagged, the AUROC with references and the probe's mean seconds (learning and measuring the fields).

Usage::

    CLASSPATTERN_CIFAR10=~/.cache/cifar10 python -m benchmarks.bench_warp_batch --plan dev --batches 8 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict, List, Optional, Sequence

import torch

from benchmarks import _setting_rules as rules
from benchmarks import bench_detectors as detectors  # the table's images and kept scans
from benchmarks import cifar10_models as models
from benchmarks import cifar10_zoo as zoo
from captum_classpattern.backdoor import ScanResult, ScoringSettings
from captum_classpattern.data import Split

KEPT = 24
"""The batch the kept scans' fields were learned on (the search's ``batch_size``)."""


def kept_at_kept_batch(entry: zoo.ZooEntry, cache: str, data: Dict[str, Split]) -> ScanResult:
    """The kept scan as it ran (warp fields learned on 24 images per class), at today's ``max_eval``, alone."""
    kept = ScanResult.from_json(os.path.join(cache, "detector-scans", entry.name + ".json"))
    default = ScoringSettings().max_eval
    kept = kept if kept.scoring.max_eval == default else detectors.remeasured_scan(entry, cache, data, default)
    if kept.settings.warp_batch_size != KEPT:
        raise ValueError(
            f"{entry.name}'s kept scan learned its warp fields on {kept.settings.warp_batch_size}, not {KEPT}"
        )
    return kept.rescore("power_auc", reference=False)


def _probe_seconds(entry: zoo.ZooEntry, cache: str, batch: int) -> Optional[float]:
    with open(os.path.join(cache, "warp-batch", f"{entry.name}-b{batch}.json")) as stream:
        return json.load(stream).get("warp_probe_seconds")


def _mean_probe_seconds(scanned: List[zoo.ZooEntry], cache: str, batch: int) -> float:
    return round(sum(_probe_seconds(e, cache, batch) or 0 for e in scanned) / len(scanned), 1)


def _warp_flags(alone: ScanResult, compared: ScanResult) -> Dict[str, Any]:
    return {"warp_alone": alone.warp_flagged, "warp_with_references": compared.warp_flagged}


def summarise(
    scanned: List[zoo.ZooEntry], scans: Dict[int, Dict[str, ScanResult]], cache: str, batches: Sequence[int]
) -> Dict[str, Any]:
    """Per batch: flags alone and with references, agreement with batch 24, detection, AUROC, seconds."""
    per_batch = {batch: rules.flag_rows(scanned, scans[batch], _warp_flags) for batch in [KEPT, *batches]}
    wanet = [e for e in scanned if e.attack == "wanet"]
    summary: Dict[str, Any] = {"models": [e.name for e in scanned], "batches": {}}
    for batch, rows in per_batch.items():
        summary["batches"][batch] = {
            **rules.agreement(scanned, rows, per_batch[KEPT], cache),
            "warp_finds_wanet": [e.target in rows[e.name]["warp_with_references"] for e in wanet],
            "probe_seconds_mean": None if batch == KEPT else _mean_probe_seconds(scanned, cache, batch),
            "per_model": rows,
        }
    return summary


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Learn, measure, score and compare; print the summary as one JSON line. Returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plan", choices=sorted(zoo.PLANS), default="dev")
    parser.add_argument("--archs", nargs="+", default=["preact18"], choices=list(models.ARCHITECTURES))
    parser.add_argument("--batches", nargs="+", type=int, default=[8], help="images per class per step to try")
    parser.add_argument("--data", help="CIFAR-10 folder (default: $CLASSPATTERN_CIFAR10)")
    parser.add_argument("--cache", help="where the zoo's models are (default: <package cache>/cifar10)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args(argv)
    root = models.cifar10_root(args.data)
    if root is None:
        print("bench_warp_batch: no CIFAR-10 folder: pass --data or set CLASSPATTERN_CIFAR10", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    cache = models.cache_folder(args.cache)
    data = detectors.test_data(root, False)
    entries = zoo.plan_entries(args.plan, args.archs, list(zoo.ATTACKS))
    scanned = [e for e in entries if os.path.exists(os.path.join(cache, "detector-scans", e.name + ".json"))]
    scans: Dict[int, Dict[str, ScanResult]] = {KEPT: {}}
    for entry in scanned:
        scans[KEPT][entry.name] = kept_at_kept_batch(entry, cache, data)
    for batch in args.batches:
        scans[batch] = {}
        for entry in scanned:
            kept = scans[KEPT][entry.name]
            scans[batch][entry.name] = detectors.rewarped_scan(entry, cache, data, kept, batch)
            print(
                json.dumps({"model": entry.name, "batch": batch, "seconds": _probe_seconds(entry, cache, batch)}),
                file=sys.stderr,
                flush=True,
            )
    print(json.dumps(summarise(scanned, scans, cache, args.batches)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

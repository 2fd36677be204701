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
from typing import Any, Callable, Dict, List, Optional, Sequence

from benchmarks import _setting_rules as rules
from benchmarks import bench_detectors as detectors  # the table's images and kept scans
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


def _probe_file(batch: int, cache: str) -> Callable[[zoo.ZooEntry], str]:
    return lambda entry: os.path.join(cache, "warp-batch", f"{entry.name}-b{batch}.json")


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
            "probe_seconds_mean": (
                None if batch == KEPT else rules.mean_seconds(scanned, _probe_file(batch, cache), "warp_probe_seconds")
            ),
            "per_model": rows,
        }
    return summary


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Learn, measure, score and compare; print the summary as one JSON line. Returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    rules.add_zoo_arguments(parser)
    parser.add_argument("--batches", nargs="+", type=int, default=[8], help="images per class per step to try")
    args = parser.parse_args(argv)
    inputs = rules.zoo_inputs(args, "bench_warp_batch")
    if inputs is None:
        return 2
    cache, data, entries = inputs
    scanned = [e for e in entries if os.path.exists(os.path.join(cache, "detector-scans", e.name + ".json"))]
    scans: Dict[int, Dict[str, ScanResult]] = {KEPT: {}}
    for entry in scanned:
        scans[KEPT][entry.name] = kept_at_kept_batch(entry, cache, data)
    for batch in args.batches:
        scans[batch] = {}
        for entry in scanned:
            kept = scans[KEPT][entry.name]
            scans[batch][entry.name] = detectors.rewarped_scan(entry, cache, data, kept, batch)
            seconds = rules.recorded_seconds(_probe_file(batch, cache)(entry), "warp_probe_seconds")
            print(
                json.dumps({"model": entry.name, "batch": batch, "seconds": seconds}),
                file=sys.stderr,
                flush=True,
            )
    print(json.dumps(summarise(scanned, scans, cache, args.batches)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

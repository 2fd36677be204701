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
from typing import Any, Callable, Dict, List, Optional, Sequence

from benchmarks import _setting_rules as rules
from benchmarks import bench_detectors as detectors  # the table's images and kept scans
from benchmarks import cifar10_zoo as zoo
from captum_classpattern.backdoor import ScanResult

KEPT = 300
KEY = "remeasure_seconds"
"""The image count of the kept scans (the default ``max_eval`` they ran at)."""


def _remeasured_file(count: int, cache: str) -> Callable[[zoo.ZooEntry], str]:
    return lambda entry: os.path.join(cache, "remeasured", f"{entry.name}-m{count}.json")


def summarise(
    scanned: List[zoo.ZooEntry], scans: Dict[int, Dict[str, ScanResult]], cache: str, counts: Sequence[int]
) -> Dict[str, Any]:
    """Per count: flags alone and with references, agreement with the kept scans, detection, AUROC, seconds."""
    per_count = {count: rules.flag_rows(scanned, scans[count]) for count in [KEPT, *counts]}
    summary: Dict[str, Any] = {"models": [e.name for e in scanned], "counts": {}}
    for count, rows in per_count.items():
        summary["counts"][count] = {
            **rules.agreement(scanned, rows, per_count[KEPT], cache),
            "remeasure_seconds_mean": (
                None if count == KEPT else rules.mean_seconds(scanned, _remeasured_file(count, cache), KEY)
            ),
            "per_model": rows,
        }
    return summary


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Re-measure, score and compare; print the summary as one JSON line. Returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    rules.add_zoo_arguments(parser)
    parser.add_argument("--counts", nargs="+", type=int, default=[150], help="held-out images per class to try")
    args = parser.parse_args(argv)
    inputs = rules.zoo_inputs(args, "bench_scan_precision")
    if inputs is None:
        return 2
    cache, data, entries = inputs
    kept_files = {e.name: os.path.join(cache, "detector-scans", e.name + ".json") for e in entries}
    scans: Dict[int, Dict[str, ScanResult]] = {KEPT: {}}
    for entry in entries:  # the scans as run at 300 images (kept_scan would give them at today's default)
        if os.path.exists(kept_files[entry.name]):
            kept = ScanResult.from_json(kept_files[entry.name])
            if kept.scoring.max_eval == KEPT:
                scans[KEPT][entry.name] = kept.rescore("power_auc", reference=False)
            else:  # scanned after the default changed: nothing to compare with
                print(f"{entry.name}: kept at {kept.scoring.max_eval} images, left out", file=sys.stderr)
    scanned = [e for e in entries if e.name in scans[KEPT]]
    for count in args.counts:
        scans[count] = {}
        for entry in scanned:
            scans[count][entry.name] = detectors.remeasured_scan(entry, cache, data, count)
            seconds = rules.recorded_seconds(_remeasured_file(count, cache)(entry), KEY)
            print(
                json.dumps({"model": entry.name, "count": count, "seconds": seconds}),
                file=sys.stderr,
                flush=True,
            )
    print(json.dumps(summarise(scanned, scans, cache, args.counts)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

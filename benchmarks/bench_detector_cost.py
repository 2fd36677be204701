"""Each detector's cost on the same model, side by side in one process: the scan, Neural Cleanse, MM-BD.

The detector table (``bench_detectors.py``) reports seconds per model, but each of its rows
ran under whatever load the machine had then. This script runs the three detectors one
after another on each named zoo model, in one process and at one thread count, so their
ratio is measured under one load; it also records the load average before and after. The
scan runs afresh at its defaults on the same clean search and held-out images as the table,
compared with the references of the table's ``scan-ref`` row (the kept scans of the
architecture's other clean models, passed as ``reference=``, so only the suspect is searched
and a trigger is recovered only for what the comparison flags); ``--alone`` runs it without.

Usage::

    CLASSPATTERN_CIFAR10=~/.cache/cifar10 python -m benchmarks.bench_detector_cost --models preact18-natural-s0
    python -m benchmarks.bench_detector_cost --quick        # the quick zoo's first clean model, few images
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Dict, Optional, Sequence

from benchmarks import bench_detectors as table  # the table's images and detector calls
from benchmarks import cifar10_models as models  # the cache and the data folder
from benchmarks import cifar10_zoo as zoo  # the zoo's models by name
from benchmarks._harness import Timer, add_quick_option, add_threads_option, emit_json, set_threads
from captum_classpattern.backdoor import scan


def measure(name: str, cache: str, data: Dict[str, Any], alone: bool = False) -> Dict[str, Any]:
    """The three detectors' seconds on one model, and the scan's over the others'."""
    entry = zoo.entry_named(name)
    model = entry.load(cache)
    search, held = data["search"], data["held_out"]
    references = []
    if not alone:  # the table's references: the plan's other clean models of the architecture, scanned once
        clean = [
            e for e in zoo.plan_entries(zoo.plan_of(name), [entry.arch], []) if e.attack is None and e.name != name
        ]
        references = [table.kept_scan(reference, cache, data) for reference in clean]
    row: Dict[str, Any] = {"model": name, "references": len(references), "load_before": os.getloadavg()[0]}
    clock = Timer()
    found = scan(model, search.images, search.labels, held_out=(held.images, held.labels), reference=references or None)
    row.update(scan_seconds=round(clock.seconds, 1), scan_flagged=found.flagged)
    row["nc_seconds"] = table.run_neural_cleanse(model, data)["seconds"]
    row["mmbd_seconds"] = table.run_max_margin(model, data)["seconds"]
    row["scan_over_nc"] = round(row["scan_seconds"] / row["nc_seconds"], 3)
    row["scan_over_mmbd"] = round(row["scan_seconds"] / row["mmbd_seconds"], 3)
    row["load_after"] = os.getloadavg()[0]
    return row


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Time the detectors on every named model; print one JSON record. Returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", help="zoo models (default preact18-natural-s0; quick: gap-natural-s0)")
    parser.add_argument("--data", help="CIFAR-10 folder (default: $CLASSPATTERN_CIFAR10)")
    parser.add_argument("--cache", help="where the zoo's models are (default: <package cache>/cifar10)")
    parser.add_argument("--alone", action="store_true", help="scan without the clean references (always with --quick)")
    add_threads_option(parser)
    add_quick_option(parser, "the quick zoo (cifar10_zoo.py --quick) and few images")
    args = parser.parse_args(argv)
    threads = set_threads(args)
    root = models.cifar10_root(args.data)
    if root is None:
        print("no CIFAR-10: give --data PATH or set CLASSPATTERN_CIFAR10", file=sys.stderr)
        return 2
    cache = models.cache_folder(args.cache)
    cache = os.path.join(cache, "quick") if args.quick else cache
    data = table.test_data(root, args.quick)
    names = args.models or ["gap-natural-s0" if args.quick else "preact18-natural-s0"]
    rows = [measure(name, cache, data, args.alone or args.quick) for name in names]  # the quick zoo has no references
    emit_json({"threads": threads, "quick": args.quick, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

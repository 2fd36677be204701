"""Each detector's cost on the same model, side by side in one process: the scan, Neural Cleanse, MM-BD.

The detector table (``bench_detectors.py``) reports seconds per model, but each of its rows
ran under whatever load the machine had then. This script runs the three detectors one
after another on each named zoo model, in one process and at one thread count, so their
ratio is measured under one load; it also records the load average before and after. The
scan runs afresh at its defaults (nothing is read from the kept scans) on the same clean
search and held-out images as the table.

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


def measure(name: str, cache: str, data: Dict[str, Any]) -> Dict[str, Any]:
    """The three detectors' seconds on one model, and the scan's over the others'."""
    model = zoo.entry_named(name).load(cache)
    search, held = data["search"], data["held_out"]
    row: Dict[str, Any] = {"model": name, "load_before": os.getloadavg()[0]}
    clock = Timer()
    found = scan(model, search.images, search.labels, held_out=(held.images, held.labels))
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
    rows = [measure(name, cache, data) for name in names]
    emit_json({"threads": threads, "quick": args.quick, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Each detector's cost on the same model, side by side in one process: the scan, Neural Cleanse, MM-BD.

The detector table (``bench_detectors.py``) reports seconds per model, but each of its rows
ran under whatever load the machine had then. This script runs the three detectors one
after another on each named zoo model, in one process and at one thread count, so their
ratio is measured under one load; it also records the load average before and after. The
scan runs afresh at its defaults on the same clean search and held-out images as the table,
compared with the references of the table's ``scan-ref`` row (the kept scans of the
architecture's other clean models, passed as ``reference=``, so only the suspect is searched
and a trigger is recovered only for what the comparison flags); ``--alone`` runs it without.

A user runs neither one thread nor a calm machine: without ``--threads`` torch's own count
is used, ``--repeats 2`` runs the detectors twice, the second time in reverse order, so a
load that changes during the run weighs on all of them alike, and ``--cli`` also times
``classpattern scan`` on the model end to end (a new process: start-up, reading the images,
the scan alone and writing its report), as a user without references runs it.

Usage::

    CLASSPATTERN_CIFAR10=~/.cache/cifar10 python -m benchmarks.bench_detector_cost --models preact18-natural-s0
    python -m benchmarks.bench_detector_cost --models gap-natural-s10 --repeats 2 --cli   # as users run it
    python -m benchmarks.bench_detector_cost --quick        # the quick zoo's first clean model, few images
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from typing import Any, Callable, Dict, List, Optional, Sequence

from benchmarks import bench_detectors as table  # the table's images and detector calls
from benchmarks import cifar10_models as models  # the cache and the data folder
from benchmarks import cifar10_zoo as zoo  # the zoo's models by name
from benchmarks._harness import Timer, add_quick_option, add_threads_option, emit_json, set_threads
from captum_classpattern.backdoor import scan

CLI_IMAGES = 4000
"""Test images the CLI reads (``--limit``): halved into search and held-out images, the table's 2000 and 2000."""


DETECTORS = ("scan", "nc", "mmbd")
"""The detectors every run times; ``--cli`` adds ``classpattern scan`` end to end."""


def _cli_command(entry: zoo.ZooEntry, cache: str, folder: str, settings: Dict[str, Any]) -> List[str]:
    """``classpattern scan`` on the zoo model as a user runs it: its weights, CIFAR-10's test images, the defaults."""
    # The console script beside this interpreter, as a user types it (the module where it is not installed).
    script = os.path.join(os.path.dirname(sys.executable), "classpattern")
    program = [script] if os.path.exists(script) else [sys.executable, "-m", "captum_classpattern.cli"]
    weights = os.path.join(cache, entry.name + ".pt")
    command = program + [
        "scan", "--model", f"benchmarks.cifar10_models:build_{entry.arch}", "--weights", weights,
        "--data", f"cifar10:{settings['root']}", "--limit", str(settings["limit"]), "--out", folder, "--no-progress",
    ]  # fmt: skip
    return command + (["--threads", str(settings["threads"])] if settings["threads"] else [])


def _time_cli(command: List[str]) -> float:
    """Seconds of one CLI run from the process's start to its exit (start-up, loading and report included)."""
    clock = Timer()
    finished = subprocess.run(command, capture_output=True, text=True)
    if finished.returncode != 0:
        raise RuntimeError(f"classpattern scan failed ({finished.returncode}): {finished.stderr.strip()[-500:]}")
    return clock.seconds


def measure(name: str, cache: str, data: Dict[str, Any], settings: Dict[str, Any]) -> Dict[str, Any]:
    """The detectors' seconds on one model, run in alternating order, and the scan's over the others'.

    Args:
        name: the zoo model.
        cache: the zoo's folder.
        data: the table's search and held-out images.
        settings: ``alone`` (scan without references), ``repeats`` (rounds; every second
            round runs the detectors in reverse order, so a load that rises or falls during
            the run weighs on all of them alike), ``cli`` (also time ``classpattern scan``
            end to end), ``root`` and ``limit`` (the CLI's CIFAR-10 folder and image count) and
            ``threads`` (passed to the CLI).
    """
    entry = zoo.entry_named(name)
    model = entry.load(cache)
    search, held = data["search"], data["held_out"]
    references = []
    if not settings["alone"]:  # the table's references: the plan's other clean models of the architecture
        clean = [
            e for e in zoo.plan_entries(zoo.plan_of(name), [entry.arch], []) if e.attack is None and e.name != name
        ]
        references = [table.kept_scan(reference, cache, data) for reference in clean]
    flagged: Dict[str, List[int]] = {}

    def run_scan() -> float:
        clock = Timer()
        found = scan(
            model, search.images, search.labels, held_out=(held.images, held.labels), reference=references or None
        )
        flagged["scan"] = found.flagged
        return clock.seconds

    runs: Dict[str, Callable[[], float]] = {
        "scan": run_scan,
        "nc": lambda: table.run_neural_cleanse(model, data)["seconds"],
        "mmbd": lambda: table.run_max_margin(model, data)["seconds"],
    }
    with tempfile.TemporaryDirectory() as folder:
        if settings["cli"]:
            command = _cli_command(entry, cache, folder, settings)
            runs["cli"] = lambda: _time_cli(command)
        seconds: Dict[str, List[float]] = {key: [] for key in runs}
        loads = [os.getloadavg()[0]]
        for round_index in range(settings["repeats"]):
            order = list(runs) if round_index % 2 == 0 else list(reversed(runs))
            for key in order:
                seconds[key].append(round(runs[key](), 1))
                loads.append(os.getloadavg()[0])
    means = {key: sum(values) / len(values) for key, values in seconds.items()}
    row: Dict[str, Any] = {"model": name, "references": len(references), "scan_flagged": flagged["scan"]}
    row["seconds"] = seconds
    row["mean_seconds"] = {key: round(value, 1) for key, value in means.items()}
    row["scan_over_nc"] = round(means["scan"] / means["nc"], 3)
    row["scan_over_mmbd"] = round(means["scan"] / means["mmbd"], 3)
    if "cli" in means:
        row["cli_over_nc"] = round(means["cli"] / means["nc"], 3)
    row["load"] = {"first": loads[0], "min": min(loads), "max": max(loads), "last": loads[-1]}
    return row


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Time the detectors on every named model; print one JSON record. Returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", help="zoo models (default preact18-natural-s0; quick: gap-natural-s0)")
    parser.add_argument("--data", help="CIFAR-10 folder (default: $CLASSPATTERN_CIFAR10)")
    parser.add_argument("--cache", help="where the zoo's models are (default: <package cache>/cifar10)")
    parser.add_argument("--alone", action="store_true", help="scan without the clean references (always with --quick)")
    parser.add_argument("--repeats", type=int, default=1, help="rounds, every second one in reverse order (default 1)")
    parser.add_argument("--cli", action="store_true", help="also time classpattern scan end to end (alone)")
    add_threads_option(parser)
    add_quick_option(parser, "the quick zoo (cifar10_zoo.py --quick) and few images")
    args = parser.parse_args(argv)
    threads = set_threads(args)
    root = models.cifar10_root(args.data)
    if root is None:
        print("no CIFAR-10: give --data PATH or set CLASSPATTERN_CIFAR10", file=sys.stderr)
        return 2
    cache = models.cache_folder(args.cache, args.quick)
    data = table.test_data(root, args.quick)
    names = args.models or ["gap-natural-s0" if args.quick else "preact18-natural-s0"]
    if args.repeats < 1:
        print("--repeats must be at least 1", file=sys.stderr)
        return 2
    settings = {
        "alone": args.alone or args.quick,  # the quick zoo has no references
        "repeats": args.repeats,
        "cli": args.cli,
        "root": root,
        "limit": CLI_IMAGES // 4 if args.quick else CLI_IMAGES,
        "threads": args.threads,
    }
    rows = [measure(name, cache, data, settings) for name in names]
    emit_json({"threads": threads, "threads_given": args.threads, "quick": args.quick, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Does searching under bf16 autocast change the patterns' power? The default schedule in both precisions.

For the three test beds of ``bench_search.py`` (digits CNN; pooled CNN and narrow ResNet-18
on the photo digits), the three canvas strategies and the given seeds, the default
schedule searches all classes once in float32 and once under ``torch.autocast`` with
bfloat16 (``ClassPattern.attribute(..., autocast_dtype=torch.bfloat16)``); the patterns
of both are measured the same way, in float32 (mean power of the 5% patterns on the
held-out images). Printed per run: both powers; in the JSON, both powers and wall times per
run, the paired difference (bf16 - fp32) with its standard error, and the runs where bf16
is higher.

Usage::

    python -m benchmarks.bench_bf16_power                # 18 runs: 3 models x 3 canvases x seeds 0 1
    python -m benchmarks.bench_bf16_power --quick        # the digits CNN, index canvases, seed 0

One torch thread. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import statistics
from typing import Optional, Sequence

import torch

from benchmarks._harness import (
    CANVAS_CHOICES,
    add_quick_option,
    canvases_for,
    emit_json,
    search_power,
    set_threads,
    testbeds,
)
from captum_classpattern.attr import DEFAULT_SCHEDULE

PRECISIONS = (("fp32", None), ("bf16", torch.bfloat16))


def run(seeds, quick: bool) -> dict:
    """Power and seconds per (model, canvas, seed) and precision."""
    beds = testbeds()[:1] if quick else testbeds()
    runs = {}
    for bed in beds:
        for canvas in CANVAS_CHOICES[:1] if quick else CANVAS_CHOICES:
            canvases = canvases_for(bed, canvas)
            for seed in seeds:
                row = {}
                for name, dtype in PRECISIONS:
                    result = search_power(bed, canvases, DEFAULT_SCHEDULE, seed, autocast_dtype=dtype)
                    row[name] = {"power": round(result["power"], 5), "seconds": round(result["seconds"], 2)}
                runs[f"{bed.name}|{canvas}|{seed}"] = row
                fp32, bf16 = row["fp32"]["power"], row["bf16"]["power"]
                print(f"{bed.name} {canvas} seed {seed}: fp32 {fp32:.4f}, bf16 {bf16:.4f}", flush=True)
    return runs


def summary(runs: dict) -> dict:
    """The paired difference bf16 - fp32 over all runs."""
    differences = [row["bf16"]["power"] - row["fp32"]["power"] for row in runs.values()]
    count = len(differences)
    return {
        "runs": count,
        "mean_difference": round(statistics.mean(differences), 4),
        "standard_error": round(statistics.stdev(differences) / count**0.5, 4) if count > 1 else None,
        "bf16_higher": sum(d > 0 for d in differences),
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Search in both precisions; print one line per run and, last, one JSON line. Returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="search seeds (default 0 1)")
    add_quick_option(parser, "the digits CNN, index canvases, seed 0")
    args = parser.parse_args(argv)
    set_threads(1)
    seeds = [0] if args.quick else args.seeds
    runs = run(seeds, args.quick)
    emit_json({"bench": "bf16_power", "seeds": seeds, **summary(runs), "per_run": runs})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

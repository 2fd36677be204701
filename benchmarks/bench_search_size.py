"""The paper's schedule against the default at the authors' search-set size, side by side.

The paper's schedule makes 5 passes over the search set, so its cost grows with the set;
the default takes a fixed 600 steps of 1 image per class, whatever the set's size. The
authors search on a random 20% of CIFAR-10's test set, about 2,000 images (1,800 of other
classes per class); ``bench_search.py`` searches the digits' and photo digits' own search
splits of about 360 images, where the paper's schedule is cheap. This benchmark builds the
photo-digit search and held-out splits with ``--copies`` composites per handwritten digit
(each over a fresh photograph crop; 6 gives 2,160 search images, the authors' size) and
measures, for each model and seed, in one process:

* ``paper``: :data:`~captum_classpattern.PAPER_SCHEDULE`, one class per call, as the
  authors run it;
* ``default`` and ``fast``: :data:`~captum_classpattern.DEFAULT_SCHEDULE` and
  :data:`~captum_classpattern.attr.FAST_SCHEDULE`, all classes in one call;

with the wall time, the images sent through the model per class and the mean predictive
power of the 5% patterns (ties broken by the search's gradient evidence) on the held-out
split. Canvases are each class's most confidently classified search image (``--canvas``:
or the first image of the class, or the first one classified correctly). The models are
the 3-channel test beds of ``bench_search.py`` (a BatchNorm / global-pooling CNN and a
narrow ResNet-18, cached by the same settings) and a narrow VGG-style net, all trained on
the default photo digits; the held-out digits of the splits were never trained on.

Usage::

    python -m benchmarks.bench_search_size                     # copies 1 and 6, seeds 0-2
    python -m benchmarks.bench_search_size --copies 6 --seeds 0 1 2 3 4 5
    python -m benchmarks.bench_search_size --copies 6 --canvas index
    python -m benchmarks.bench_search_size --quick             # one small model, one seed

One torch thread (as ``bench_search.py``, for the same reason). The last line printed is
one JSON object.
"""

from __future__ import annotations

import argparse
import statistics
from typing import Dict, List, Optional, Sequence

from benchmarks._harness import (
    CANVAS_CHOICES,
    CLASSES,
    SIZE_MODELS,
    Testbed,
    Timer,
    add_quick_option,
    add_threads_option,
    canvases_for,
    emit_json,
    paper_by_class,
    photo_digit_beds,
    search_power,
    set_threads,
)
from captum_classpattern import DEFAULT_SCHEDULE
from captum_classpattern.attr import FAST_SCHEDULE


def _summary(runs: List[dict]) -> dict:
    powers = [r["power"] for r in runs]
    return {
        "power": round(statistics.mean(powers), 4),
        "power_min": round(min(powers), 4),
        "power_max": round(max(powers), 4),
        "per_seed": [round(p, 4) for p in powers],
        "seconds": round(statistics.mean(r["seconds"] for r in runs), 2),
        "images_per_class": round(statistics.mean(r["images"] for r in runs) / len(CLASSES)),
    }


def measure(bed: Testbed, seeds: List[int], canvas: str = "confident", log=print) -> dict:
    """Paper (class by class), default and fast (batched) on ``bed`` for each seed, interleaved."""
    canvases = canvases_for(bed, canvas)
    runs: Dict[str, List[dict]] = {"paper": [], "default": [], "fast": []}
    for seed in seeds:
        runs["paper"].append(paper_by_class(bed, canvases, seed))
        runs["default"].append(search_power(bed, canvases, DEFAULT_SCHEDULE, seed))
        runs["fast"].append(search_power(bed, canvases, FAST_SCHEDULE, seed))
        log(
            f"{bed.name:12s} {canvas:13s} search set {len(bed.data.search.labels):5d}  seed {seed}  "
            + "  ".join(f"{n} {r[-1]['power']:.3f} in {r[-1]['seconds']:6.1f} s" for n, r in runs.items())
        )
    row = {name: _summary(values) for name, values in runs.items()}
    paper = row["paper"]
    for name in ("default", "fast"):
        row[f"{name}_speedup"] = round(paper["seconds"] / row[name]["seconds"], 2)
        row[f"{name}_power_ratio"] = round(row[name]["power"] / paper["power"], 3)
    row["search_images"] = int(len(bed.data.search.labels))
    return row


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Measure every model, size and seed asked for; print one JSON line. Returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, nargs="+", default=[1, 6], help="composites per digit in the splits")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="search seeds")
    parser.add_argument("--models", nargs="+", default=[m[0] for m in SIZE_MODELS], choices=[m[0] for m in SIZE_MODELS])
    parser.add_argument("--canvas", choices=CANVAS_CHOICES, default="confident", help="canvas strategy")
    add_quick_option(parser, "the pooled CNN, copies 1, one seed")
    add_threads_option(parser, 1, "torch threads (default 1)")
    args = parser.parse_args(argv)
    if args.quick:
        args.copies, args.seeds, args.models = [1], [0], ["gap_cnn"]
    set_threads(args)
    clock = Timer()
    result: dict = {"bench": "search_size", "canvas": args.canvas, "seeds": args.seeds, "threads": args.threads}
    result["models"] = {}
    for copies in args.copies:
        for bed in photo_digit_beds(copies, args.models):
            result["models"].setdefault(bed.name, {})[f"copies_{copies}"] = measure(bed, args.seeds, args.canvas)
    rows = [row for per_size in result["models"].values() for row in per_size.values()]
    result["default_wins"] = sum(row["default_power_ratio"] >= 1.0 for row in rows)
    result["rows"] = len(rows)
    result["total_seconds"] = round(clock.seconds, 1)
    emit_json(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

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

    python benchmarks/bench_search_size.py                     # copies 1 and 6, seeds 0-2
    python benchmarks/bench_search_size.py --copies 6 --seeds 0 1 2 3 4 5
    python benchmarks/bench_search_size.py --copies 6 --canvas index
    python benchmarks/bench_search_size.py --quick             # one small model, one seed

One torch thread (as ``bench_search.py``, for the same reason). The last line printed is
one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from functools import partial
from typing import Dict, List

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench_search import (  # noqa: E402
    CANVAS_CHOICES,
    CLASSES,
    RGB_MODELS,
    Testbed,
    _mean_power,
    _trained,
    canvases_for,
    search_power,
)

from captum_classpattern import DEFAULT_SCHEDULE, PAPER_SCHEDULE, ClassPattern  # noqa: E402
from captum_classpattern.attr import FAST_SCHEDULE  # noqa: E402
from captum_classpattern.data import load_photo_digits  # noqa: E402
from captum_classpattern.models import make_model  # noqa: E402

MODELS = RGB_MODELS + (("vgg_w8", "vgg", 8, 8),)
"""Name, :func:`make_model` architecture, width and training epochs of each model."""


def beds(copies: int, names: List[str]) -> List[Testbed]:
    """The models, each with photo-digit search and held-out splits of ``copies`` composites per digit."""
    train_data = load_photo_digits()
    splits = load_photo_digits(held_out_copies=copies)
    chosen = []
    for name, arch, width, epochs in MODELS:
        if name in names:
            model = _trained(name, partial(make_model, arch, width=width), train_data, epochs)
            chosen.append(Testbed(name, model.eval(), splits, CLASSES, f"{name}-copies{copies}"))
    return chosen


def paper_by_class(bed: Testbed, canvases: torch.Tensor, seed: int) -> dict:
    """The paper schedule, one class per call as the authors run it: wall time, images, mean power."""
    explainer = ClassPattern(bed.model)
    maps, ties, images = [], [], 0
    start = time.perf_counter()
    for row, target in enumerate(bed.classes):
        maps.append(
            explainer.attribute(
                canvases[row : row + 1],
                target=target,
                baselines=bed.data.search.images,
                baseline_labels=bed.data.search.labels,
                schedule=PAPER_SCHEDULE,
                seed=seed,
            )
        )
        ties.append(explainer.last_tie_break)
        images += explainer.last_stats.images_forwarded
    seconds = time.perf_counter() - start
    power = _mean_power(bed.model, bed.data, canvases, torch.cat(maps), torch.cat(ties), bed.classes)
    return {"seconds": seconds, "images": images, "power": power}


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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, nargs="+", default=[1, 6], help="composites per digit in the splits")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="search seeds")
    parser.add_argument("--models", nargs="+", default=[m[0] for m in MODELS], choices=[m[0] for m in MODELS])
    parser.add_argument("--canvas", choices=CANVAS_CHOICES, default="confident", help="canvas strategy")
    parser.add_argument("--quick", action="store_true", help="the pooled CNN, copies 1, one seed")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    if args.quick:
        args.copies, args.seeds, args.models = [1], [0], ["gap_cnn"]
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    result: dict = {"bench": "search_size", "canvas": args.canvas, "seeds": args.seeds, "threads": args.threads}
    result["models"] = {}
    for copies in args.copies:
        for bed in beds(copies, args.models):
            result["models"].setdefault(bed.name, {})[f"copies_{copies}"] = measure(bed, args.seeds, args.canvas)
    rows = [row for per_size in result["models"].values() for row in per_size.values()]
    result["default_wins"] = sum(row["default_power_ratio"] >= 1.0 for row in rows)
    result["rows"] = len(rows)
    result["total_seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

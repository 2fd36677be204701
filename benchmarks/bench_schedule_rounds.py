"""Candidate schedules against the paper's on both search-set sizes: the rounds that chose the default.

Runs the paper schedule (class by class, as the authors do) and each candidate (all classes
batched) on the development seeds, for 18 (model, canvas) pairs: the test beds of
``bench_search.py`` (digits CNN, pooled CNN, narrow ResNet-18) on their 359-image search
splits, and those of ``bench_search_size.py`` (pooled CNN, narrow ResNet-18, narrow VGG) on
2,154-image splits; canvases ``index``, ``first_correct`` and ``confident``. A pair is won
when a candidate's mean power over the seeds is at least the paper schedule's. The rule of
``docs/design/schedule_choice.rst`` ("Rounds four and five"): the candidate winning the most
pairs; ties to fewer images per class, then to the higher mean ratio.

``--cache FILE`` keeps every run (power, seconds, images) in a JSON file, so an interrupted
run resumes and a new candidate costs only its own searches.

Usage::

    python -m benchmarks.bench_schedule_rounds --cache /tmp/rounds.json            # C0-C8, seeds 10 11
    python -m benchmarks.bench_schedule_rounds --sizes small --candidates C0 C6 --cache /tmp/rounds.json
    python -m benchmarks.bench_schedule_rounds --quick                             # one model, one seed
    python -m benchmarks.bench_schedule_rounds --sizes small --candidates C6 B2 F  # round six's lengths

One torch thread. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import statistics
from functools import partial
from typing import Dict, List, Optional, Sequence

import torch

from benchmarks._harness import (
    CANVAS_CHOICES,
    SIZE_MODELS,
    PowerCache,
    add_quick_option,
    canvases_for,
    emit_json,
    paper_by_class,
    photo_digit_beds,
    search_power,
    set_threads,
    testbeds,
)
from captum_classpattern.attr import FAST_SCHEDULE, SearchSchedule

CANDIDATES: Dict[str, SearchSchedule] = {
    "C0": SearchSchedule(steps=300, batch_size=2, final_step_size=0.01),  # the 0.4 / 0.5 default
    "C1": SearchSchedule(steps=500, batch_size=1, final_step_size=0.01),
    "C2": SearchSchedule(steps=600, batch_size=1, final_step_size=0.01),
    "C3": SearchSchedule(steps=350, batch_size=2, final_step_size=0.01),
    "C4": SearchSchedule(steps=300, batch_size=2, final_step_size=0.02),
    "C5": SearchSchedule(steps=600, batch_size=1, step_size=0.05, final_step_size=0.005),
    "C6": SearchSchedule(steps=600, batch_size=1, step_size=0.1, final_step_size=0.001),  # the 0.6 default
    "C7": SearchSchedule(steps=700, batch_size=1, step_size=0.05, final_step_size=0.005),
    "C8": SearchSchedule(steps=350, batch_size=2, step_size=0.05, final_step_size=0.005),
}
"""The candidates of rounds four (C0-C4) and five (C5-C8); every field that differs from the paper's spelled out."""

SHORTER: Dict[str, SearchSchedule] = {
    "B2": SearchSchedule(steps=200, batch_size=1, step_size=0.1, final_step_size=0.001),
    "F": FAST_SCHEDULE,  # 100 steps x batch 2, 0.1 -> 0.01
}
"""Round six's shorter schedules, 200 images per class each; run only when named in ``--candidates``."""

SCHEDULES: Dict[str, SearchSchedule] = {**CANDIDATES, **SHORTER}


def _beds(size: str, quick: bool):
    if size == "small":
        beds = testbeds()
        return beds[:1] if quick else beds
    names = ["gap_cnn"] if quick else [m[0] for m in SIZE_MODELS]
    return photo_digit_beds(6, names)


def _run(bed, canvases: torch.Tensor, name: str, seed: int) -> dict:
    """The paper schedule class by class, or candidate ``name`` batched: power, seconds, images."""
    if name == "paper":
        result = paper_by_class(bed, canvases, seed)
    else:
        result = search_power(bed, canvases, SCHEDULES[name], seed)
    print(f"{bed.name} {name} seed {seed}: {result['power']:.4f} in {result['seconds']:.1f} s", flush=True)
    return {k: result[k] for k in ("power", "seconds", "images")}


def run(sizes: List[str], names: List[str], seeds: List[int], cache: PowerCache, quick: bool) -> dict:
    """Every (size, model, canvas, seed) for the paper schedule and each candidate; the mean powers per pair."""
    pairs: dict = {}
    for size in sizes:
        for bed in _beds(size, quick):
            for canvas in CANVAS_CHOICES[:1] if quick else CANVAS_CHOICES:
                canvases = canvases_for(bed, canvas)
                powers: Dict[str, List[float]] = {}
                for seed in seeds:
                    for name in ["paper"] + names:
                        key = f"{size}|{bed.name}|{canvas}|{seed}|{name}"
                        entry = cache.entry(key, partial(_run, bed, canvases, name, seed))
                        powers.setdefault(name, []).append(entry["power"])
                pairs[f"{size}|{bed.name}|{canvas}"] = {n: round(statistics.mean(p), 4) for n, p in powers.items()}
    return pairs


def rule(pairs: dict, names: List[str]) -> dict:
    """Pairs won, mean and worst ratio to the paper schedule per candidate, and the candidate the rule picks."""
    summary = {}
    for name in names:
        ratios = {pair: row[name] / row["paper"] for pair, row in pairs.items()}
        summary[name] = {
            "won": sum(r >= 1.0 for r in ratios.values()),
            "pairs": len(ratios),
            "mean_ratio": round(statistics.mean(ratios.values()), 3),
            "worst_ratio": round(min(ratios.values()), 3),
            "lost": sorted(pair for pair, r in ratios.items() if r < 1.0),
            "images_per_class": SCHEDULES[name].steps * SCHEDULES[name].batch_size,
        }
    chosen = max(names, key=lambda n: (summary[n]["won"], -summary[n]["images_per_class"], summary[n]["mean_ratio"]))
    return {"candidates": summary, "chosen": chosen}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the rounds and apply the rule; print one line per run and, last, one JSON line. Returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", choices=("small", "large"), default=["small", "large"])
    parser.add_argument("--candidates", nargs="+", choices=sorted(SCHEDULES), default=sorted(CANDIDATES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[10, 11], help="search seeds (development: 10 11)")
    parser.add_argument("--cache", help="JSON file of every run, reused across runs")
    add_quick_option(parser, "the first model, index canvases, seed 10, C0 and C6")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.seeds, args.candidates = args.sizes[:1], [10], ["C0", "C6"]
    set_threads(1)
    pairs = run(args.sizes, args.candidates, args.seeds, PowerCache(args.cache), args.quick)
    result = {"bench": "schedule_rounds", "seeds": args.seeds, "pairs": pairs}
    result.update(rule(pairs, args.candidates))
    emit_json(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The class-pattern search, the paper's schedule against the library's default, side by side.

Everything runs in one process on the same trained model (the demo's digits CNN, cached),
the same canvases (the most confidently classified search image of each class), the same
search set and the same held-out images, for all 10 classes:

* ``paper``: Zhao et al.'s schedule as the authors run it, one class per call (signed
  steps of 0.02, batches of 4, 5 epochs over the search set);
* ``default``: the library's default schedule, all classes batched in one call;
* ``fast``: the ``"fast"`` schedule (a third of the default's steps), batched the same way
  (``fast_seconds``, ``fast_speedup``, ``fast_power``).

For each: wall time, images sent through the model, and mean predictive power of the
5% pattern on held-out images. Timings are the best of ``--repeats`` interleaved runs
(the machine may be shared; the best run is the one least disturbed), and the medians
are printed too.

Throughput: images per second of the default search loop (``SearchStats``: the loop
alone, without choosing canvases or checking inputs) against the model's bare forward and
backward with input gradients at the same batch size (all canvases' images of one step)
for the same number of steps, alternating, best of 5 (``--quick``) or 10 rounds.

Memory: each measurement is a fresh Python process that loads the model and data, builds
the search set as a tensor at 1x or 10x its size (the 10x set is the 1x set repeated),
then resets the kernel's high-water mark of its resident set (``/proc/self/clear_refs``)
and runs the default search. ``peak_mb_*`` is that high-water mark minus the resident
set just before the search: the search's own peak (working set, per-class index pools,
one-time kernel setup), not the search set the caller already holds. The children run
with ``MALLOC_MMAP_THRESHOLD_=131072`` so that freed tensors leave the resident set at
once. The whole process's peak is reported beside it (``process_peak_mb_*``). Linux only.

Per model (``per_model``, in full runs, or alone with ``--per-model-only``): for three
models (the digits CNN; a BatchNorm / global-pooling CNN and a narrow ResNet-18, both on the
3-channel photo digits) and three canvas strategies (``index``: the first image of the
class; ``first_correct``: the first one the model classifies correctly; ``confident``), the
mean power over six search seeds of the paper schedule and of the default, with its
spread (min, max, std) and the mean wall time of one batched call for all classes (the
maps are those of class-by-class calls). Patterns break ties at the k-th map value by the
search's gradient evidence (``ClassPattern.last_tie_break``). ``--cache FILE`` keeps each
(model, canvas, seed, schedule) result in a JSON file, so that an interrupted run resumes.

Usage::

    python -m benchmarks.bench_search            # 3 rounds; also the paper schedule's memory (one
                                                 # epoch), the bf16 / channels_last settings on the
                                                 # CPU and the per_model block (tens of minutes)
    python -m benchmarks.bench_search --quick    # 2 rounds, well under a minute
    python -m benchmarks.bench_search --per-model-only --cache /tmp/powers.json

Threads: one by default. With two OpenMP threads on a machine whose other core is busy
with someone else's work, every parallel region waits for a descheduled thread, and the
many small steps of the paper's schedule slowed down up to fifty-fold in our runs, which
inflates the speedup; one thread keeps the comparison fair. ``--threads 2`` uses both
cores of an otherwise idle machine.

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F

from benchmarks._harness import (
    CANVAS_CHOICES,
    CLASSES,
    PowerCache,
    Testbed,
    Timer,
    add_quick_option,
    add_threads_option,
    canvases_for,
    emit_json,
    mean_power,
    reset_peak_rss,
    run_json_child,
    set_threads,
    status_kb,
    testbeds,
)
from captum_classpattern import (
    DEFAULT_SCHEDULE,
    PAPER_SCHEDULE,
    ClassPattern,
    SearchSchedule,
    load_digits,
    select_canvases,
)
from captum_classpattern.attr import FAST_SCHEDULE
from captum_classpattern.training import digits_model

SEED = 0


def _setup():
    """The model, data and canvases every measurement shares."""
    model = digits_model()
    data = load_digits()
    canvases = select_canvases(model, data.search.images, data.search.labels, CLASSES, "confident")
    return model, data, canvases


def run_paper(model, data, canvases):
    """The paper's schedule, one class per call: ``(seconds, images, maps, tie-break scores)``."""
    explainer = ClassPattern(model)
    maps, tie_breaks, images = [], [], 0
    with Timer() as clock:
        for i, c in enumerate(CLASSES):
            maps.append(
                explainer.attribute(
                    canvases[i : i + 1],
                    target=c,
                    baselines=data.search.images,
                    baseline_labels=data.search.labels,
                    schedule=PAPER_SCHEDULE,
                    seed=SEED,
                )
            )
            images += explainer.last_stats.images_forwarded
            tie_breaks.append(explainer.last_tie_break)
    return clock.seconds, images, torch.cat(maps), torch.cat(tie_breaks)


def run_default(model, data, canvases, schedule: SearchSchedule = DEFAULT_SCHEDULE):
    """The default schedule (or ``schedule``), all classes in one call.

    Returns:
        ``(seconds, images, maps, loop images/s, tie-break scores)``.
    """
    explainer = ClassPattern(model)
    with Timer() as clock:
        maps = explainer.attribute(
            canvases,
            target=CLASSES,
            baselines=data.search.images,
            baseline_labels=data.search.labels,
            schedule=schedule,
            seed=SEED,
        )
    stats = explainer.last_stats
    return clock.seconds, stats.images_forwarded, maps, stats.images_per_second, explainer.last_tie_break


def bare_throughput(model, images: torch.Tensor, labels: torch.Tensor, steps: int) -> float:
    """Images per second of the model's forward and backward with input gradients, nothing else."""
    batch = images.detach().clone().requires_grad_(True)
    with torch.enable_grad(), Timer() as clock:
        for _ in range(steps):
            torch.autograd.grad(F.cross_entropy(model(batch), labels), batch)
    return steps * images.shape[0] / clock.seconds


def _memory_child(scale: int, schedule_name: str) -> None:
    """Runs in a fresh process: prints the search's peak memory as JSON."""
    model, data, canvases = _setup()
    images = torch.cat([data.search.images] * scale)
    labels = torch.cat([data.search.labels] * scale)
    schedule = DEFAULT_SCHEDULE if schedule_name == "default" else PAPER_SCHEDULE.replace(epochs=1)
    before = status_kb("VmRSS")
    # Resets VmHWM, the peak resident set, to the current resident set.
    if before is None or not reset_peak_rss():
        raise RuntimeError("the memory measurement needs Linux's /proc/self/status and clear_refs")
    ClassPattern(model).attribute(
        canvases, target=CLASSES, baselines=images, baseline_labels=labels, schedule=schedule, seed=SEED
    )
    peak = status_kb("VmHWM") or 0
    emit_json(
        {
            "search_peak_mb": (peak - before) / 1024,
            "process_peak_mb": peak / 1024,
            "search_set_mb": images.numel() * images.element_size() / 2**20,
        }
    )


def measure_memory(scale: int, schedule_name: str, threads: int) -> dict:
    """Run :func:`_memory_child` in a fresh interpreter and return its numbers."""
    args = ["--memory-child", str(scale), "--memory-schedule", schedule_name, "--threads", str(threads)]
    return run_json_child("benchmarks.bench_search", args, lean_malloc=True)


def _settings_speed(model, data, canvases, rounds: int) -> dict:
    """Best wall time of the default search with the optional GPU settings, here on the CPU."""
    best = {}
    for _ in range(rounds):
        for name, settings in (
            ("fp32", {}),
            ("bf16_autocast", {"autocast_dtype": torch.bfloat16}),
            ("channels_last", {"channels_last": True}),
        ):
            explainer = ClassPattern(model)
            explainer.attribute(
                canvases,
                target=CLASSES,
                baselines=data.search.images,
                baseline_labels=data.search.labels,
                seed=SEED,
                **settings,
            )
            best[name] = min(best.get(name, float("inf")), explainer.last_stats.seconds)
    return {f"cpu_loop_seconds_{name}": round(seconds, 3) for name, seconds in best.items()}


# ---------------------------------------------------------------------------------------------
# Per model and canvas strategy: the paper's schedule against the default over six seeds.

PER_MODEL_SEEDS = tuple(range(6))
"""The seeds the ``per_model`` block reports (held out: the default was chosen on others)."""


def _spread(values: List[float]) -> dict:
    return {
        "mean": round(statistics.mean(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
        "std": round(statistics.pstdev(values), 4),
    }


def per_model(
    schedules: Dict[str, SearchSchedule],
    seeds=PER_MODEL_SEEDS,
    cache: Optional[PowerCache] = None,
    beds: Optional[List[Testbed]] = None,
    log=print,
) -> dict:
    """Mean power over ``seeds`` (and its spread) and mean wall time per model, canvas strategy and schedule."""
    cache = cache or PowerCache(None)
    block: dict = {}
    for bed in beds or testbeds():
        block[bed.name] = {}
        for strategy in CANVAS_CHOICES:
            canvases = canvases_for(bed, strategy)
            row = {}
            for name, schedule in schedules.items():
                runs = [cache.power(bed, strategy, canvases, schedule, seed) for seed in seeds]
                row[name] = _spread([r["power"] for r in runs])
                row[name]["seconds"] = round(statistics.mean(r["seconds"] for r in runs), 3)
                row[name]["per_seed"] = [round(r["power"], 4) for r in runs]
            block[bed.name][strategy] = row
            log(f"{bed.name:12s} {strategy:14s} " + "  ".join(f"{n} {row[n]['mean']:.3f}" for n in schedules))
    return block


def _per_model_summary(block: dict) -> dict:
    """How many model x strategy pairs the default wins (mean over seeds), and the worst ratio."""
    ratios = [row["default"]["mean"] / row["paper"]["mean"] for rows in block.values() for row in rows.values()]
    return {
        "default_wins": sum(r >= 1.0 for r in ratios),
        "pairs": len(ratios),
        "worst_power_ratio": round(min(ratios), 3),
        "mean_power_ratio": round(statistics.mean(ratios), 3),
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the comparison (or one memory child); print a table and, last, one JSON line. Returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_quick_option(parser, "fewer repeats, the default schedule's memory only (well under a minute)")
    parser.add_argument("--repeats", type=int, help="paper/default timing rounds (default 3, or 2 with --quick)")
    cores = os.cpu_count()
    add_threads_option(parser, 1, f"torch threads (default 1, robust on a shared machine; this one has {cores})")
    parser.add_argument(
        "--per-model",
        action="store_true",
        help="add the per_model block to a --quick run (a full run always has it; minutes)",
    )
    parser.add_argument(
        "--per-model-only", action="store_true", help="run only the per_model block and print it as JSON"
    )
    parser.add_argument("--cache", help="JSON file of powers per (model, canvas, seed, schedule), reused across runs")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--memory-schedule", default="default", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    set_threads(args)
    if args.memory_child:
        _memory_child(args.memory_child, args.memory_schedule)
        return 0
    cache = PowerCache(args.cache)
    schedules = {"paper": PAPER_SCHEDULE, "default": DEFAULT_SCHEDULE, "fast": FAST_SCHEDULE}
    if args.per_model_only:
        block = per_model(schedules, cache=cache)
        emit_json({"per_model": block, "per_model_summary": _per_model_summary(block)})
        return 0
    repeats = args.repeats or (2 if args.quick else 3)
    if repeats < 1:
        parser.error("--repeats must be at least 1")
    throughput_rounds = 5 if args.quick else 10
    load_before = os.getloadavg()
    model, data, canvases = _setup()
    step_rows = len(CLASSES) * DEFAULT_SCHEDULE.batch_size
    bare_images, bare_labels = data.search.images[:step_rows], data.search.labels[:step_rows]
    run_default(model, data, canvases)  # warm-up: kernel selection, thread pools
    paper_times, default_times, fast_times, loop_rates, bare_rates = [], [], [], [], []
    for _ in range(repeats):  # interleaved, so that all see the same machine load
        seconds, paper_images, paper_maps, paper_ties = run_paper(model, data, canvases)
        paper_times.append(seconds)
        seconds, default_images, default_maps, rate, default_ties = run_default(model, data, canvases)
        default_times.append(seconds)
        loop_rates.append(rate)
        seconds, _, fast_maps, _, fast_ties = run_default(model, data, canvases, FAST_SCHEDULE)
        fast_times.append(seconds)
    for _ in range(throughput_rounds):  # the loop and the bare model alternate, same number of steps
        seconds, _, _, rate, _ = run_default(model, data, canvases)
        default_times.append(seconds)
        loop_rates.append(rate)
        bare_rates.append(bare_throughput(model, bare_images, bare_labels, DEFAULT_SCHEDULE.steps))
    paper_power = mean_power(model, data, canvases, paper_maps, paper_ties)
    default_power = mean_power(model, data, canvases, default_maps, default_ties)
    fast_power = mean_power(model, data, canvases, fast_maps, fast_ties)
    memory = {scale: measure_memory(scale, "default", args.threads) for scale in (1, 10)}
    result = {
        "paper_seconds": round(min(paper_times), 3),
        "default_seconds": round(min(default_times), 3),
        "speedup": round(min(paper_times) / min(default_times), 2),
        "paper_power": round(paper_power, 4),
        "default_power": round(default_power, 4),
        "power_ratio": round(default_power / paper_power, 3),
        "paper_images": paper_images,
        "default_images": default_images,
        "search_images_per_second": round(max(loop_rates), 1),
        "bare_images_per_second": round(max(bare_rates), 1),
        "throughput_ratio": round(max(loop_rates) / max(bare_rates), 3),
        "throughput_batch": step_rows,
        "peak_mb_1x": round(memory[1]["search_peak_mb"], 2),
        "peak_mb_10x": round(memory[10]["search_peak_mb"], 2),
        "process_peak_mb_1x": round(memory[1]["process_peak_mb"], 1),
        "process_peak_mb_10x": round(memory[10]["process_peak_mb"], 1),
        "search_set_mb_1x": round(memory[1]["search_set_mb"], 2),
        "search_set_mb_10x": round(memory[10]["search_set_mb"], 2),
        "fast_seconds": round(min(fast_times), 3),
        "fast_speedup": round(min(paper_times) / min(fast_times), 2),
        "fast_power": round(fast_power, 4),
        "paper_seconds_median": round(statistics.median(paper_times), 3),
        "default_seconds_median": round(statistics.median(default_times), 3),
        "repeats": repeats,
        "throughput_rounds": throughput_rounds,
        "threads": args.threads,
        "quick": bool(args.quick),
        "device": "cpu",
        "torch": torch.__version__,
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
    }
    if not args.quick:
        paper_memory = {scale: measure_memory(scale, "paper", args.threads) for scale in (1, 10)}
        result["paper_epoch_peak_mb_1x"] = round(paper_memory[1]["search_peak_mb"], 2)
        result["paper_epoch_peak_mb_10x"] = round(paper_memory[10]["search_peak_mb"], 2)
        result.update(_settings_speed(model, data, canvases, rounds=3))
    if args.per_model or not args.quick:
        result["per_model"] = per_model(schedules, cache=cache)
        result["per_model_summary"] = _per_model_summary(result["per_model"])
    result["load_average_before_after"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
    _print_table(result, paper_times, default_times)
    emit_json(result)
    return 0


def _print_table(result: dict, paper_times, default_times) -> None:
    print(
        f"paper schedule, class by class: {result['paper_seconds']:.2f} s best "
        f"({', '.join(f'{t:.2f}' for t in paper_times)}), {result['paper_images']} images, "
        f"power {result['paper_power']:.3f}"
    )
    print(
        f"default schedule, batched:      {result['default_seconds']:.2f} s best "
        f"({', '.join(f'{t:.2f}' for t in default_times)}), {result['default_images']} images, "
        f"power {result['default_power']:.3f}"
    )
    print(f"speedup {result['speedup']:.1f}x, power ratio {result['power_ratio']:.3f}")
    print(
        f"search loop {result['search_images_per_second']:.0f} images/s vs bare forward+backward "
        f"{result['bare_images_per_second']:.0f} images/s at batch {result['throughput_batch']}: "
        f"ratio {result['throughput_ratio']:.2f}"
    )
    print(
        f"search peak memory {result['peak_mb_1x']:.1f} MB (1x) vs {result['peak_mb_10x']:.1f} MB (10x); "
        f"whole process {result['process_peak_mb_1x']:.0f} / {result['process_peak_mb_10x']:.0f} MB"
    )


if __name__ == "__main__":
    raise SystemExit(main())

"""The cost of the class-pattern search at ImageNet scale: a ResNet-50 at 224 x 224.

A torchvision ResNet-50 with random weights (1,000 classes; the cost does not depend on
the weights) on synthetic 224 x 224 images. Measured:

* ``search_images_per_s``: composites per second of the :class:`~captum_classpattern.ClassPattern`
  search loop (``SearchStats``, the loop alone) with the default schedule, ``--classes``
  canvases searched together for ``--steps`` steps (``--classes`` composites per step: the
  default takes one image per canvas and step);
* ``bare_images_per_s``: the model's bare forward and backward with input gradients at the
  same batch for the same number of steps; ``throughput_ratio`` is search / bare;
* ``inference_images_per_s``: forward passes without gradients at ``--measure-batch``, the
  cost of measuring predictive power (patterns stamped onto held-out images);
* ``peak_mb``: on the CPU, the high-water mark of the resident set during the searches
  (warm-up included) minus the resident set before them (``/proc/self/clear_refs``, with
  ``MALLOC_MMAP_THRESHOLD_=131072`` so that freed tensors leave the resident set, as
  ``bench_search.py`` measures it); on CUDA, ``torch.cuda.max_memory_allocated`` during
  the searches;
* a projection for all 1,000 classes at the default schedule (600 steps x 1 image per
  class) plus a budgeted power measurement (``--power-images`` held-out images per other
  class, ``--patterns-per-class`` patterns measured per class: the pattern, five random
  draws and two Captum baselines in the full report): hours on this device from the
  measured throughputs, and GPU-hours from an assumed GPU throughput
  (``--gpu-train-ips``: images per second of ResNet-50 mixed-precision training on the
  GPU, forward + backward; inference is taken as 3x that).

Usage::

    python -m benchmarks.bench_imagenet                       # CPU, 1 thread, about a minute
    python -m benchmarks.bench_imagenet --memory-only --classes 8 --steps 1 --rounds 1 --max-forward-batch 4
    python -m benchmarks.bench_imagenet --device cuda --classes 64 --steps 20 [--compile]
    python -m benchmarks.bench_imagenet --device cuda --classes 64 --steps 20 --sweep

On CUDA the model runs under bf16 autocast and in channels_last (``--no-bf16`` and
``--no-channels-last`` turn them off). ``--sweep`` adds, in the same process and at the same
batch, the search loop and the bare forward and backward under four settings (``fp32``;
``bf16`` autocast; ``bf16_channels_last``; ``bf16_channels_last_compile``, the model through
``torch.compile``), each with a freshly built model, and their speed over ``fp32``
(``sweep`` and ``sweep_best`` in the JSON): which of them helps on this device. It runs on the
CPU too (bf16 autocast exists there), slowly. The last line printed is the JSON of all numbers.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from benchmarks._harness import (
    LEAN_MALLOC,
    Timer,
    add_device_option,
    add_threads_option,
    child_env,
    emit_json,
    module_command,
    reset_peak_rss,
    set_threads,
    status_kb,
)
from captum_classpattern import ClassPattern
from captum_classpattern.attr import DEFAULT_SCHEDULE

CLASSES = 1000
SIDE = 224
SEARCH_IMAGES_PER_CLASS = DEFAULT_SCHEDULE.steps * DEFAULT_SCHEDULE.batch_size  # 600 steps x 1 image


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_rate(step, device, rounds: int, steps: int, batch: int) -> float:
    """Images per second of ``steps`` calls of ``step`` on ``batch`` images: best of ``rounds``, after a warm-up."""
    step()  # warm-up
    best = 0.0
    for _ in range(rounds):
        _sync(device)
        clock = Timer()
        for _ in range(steps):
            step()
        _sync(device)
        best = max(best, steps * batch / clock.seconds)
    return best


def build(args: argparse.Namespace, device: torch.device):
    """The model, canvases, search set and labels, on ``device``."""
    from torchvision.models import resnet50

    torch.manual_seed(0)
    model = resnet50(weights=None).to(device).eval()
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if args.compile:
        model = torch.compile(model)
    canvases = torch.rand(args.classes, 3, SIDE, SIDE, device=device)
    targets = list(range(args.classes))
    count = max(4 * args.classes, 8)
    images = torch.rand(count, 3, SIDE, SIDE, device=device)
    labels = torch.arange(args.classes, args.classes + count, device=device) % CLASSES
    return model, canvases, targets, images, labels


def search_speed(model, canvases, targets, images, labels, args, device) -> dict:
    """The default schedule's search loop for ``args.steps`` steps, after a warm-up search of one step."""
    explainer = ClassPattern(model)
    autocast = torch.bfloat16 if args.bf16 else None

    def run(steps: int) -> None:
        explainer.attribute(
            canvases,
            target=targets,
            baselines=images,
            baseline_labels=labels,
            schedule=DEFAULT_SCHEDULE.replace(steps=steps),
            seed=0,
            autocast_dtype=autocast,
            channels_last=args.channels_last,
            max_forward_batch=args.max_forward_batch,
        )

    before = status_kb("VmRSS")
    cpu_peak = reset_peak_rss() and before is not None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    run(1)  # warm-up: kernels chosen, compiled graphs built
    _sync(device)
    best = 0.0
    for _ in range(args.rounds):
        run(args.steps)
        best = max(best, explainer.last_stats.images_per_second)
    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated(device) / 2**20
    elif cpu_peak:
        peak_mb = ((status_kb("VmHWM") or 0) - (before or 0)) / 1024
    else:
        peak_mb = float("nan")
    return {"search_images_per_s": best, "peak_mb": peak_mb, "batch": len(targets) * DEFAULT_SCHEDULE.batch_size}


def bare_speed(model, images, batch: int, args, device) -> float:
    """Images per second of forward + backward with input gradients, nothing else (best round)."""
    x = images[:batch].detach().clone()
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    target = torch.zeros(batch, dtype=torch.long, device=device)

    def step() -> None:
        with torch.enable_grad():
            if args.bf16:
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
                    logits = model(x)
            else:
                logits = model(x)
            torch.autograd.grad(F.cross_entropy(logits.float(), target), x)

    return best_rate(step, device, args.rounds, args.steps, batch)


def inference_speed(model, args, device) -> float:
    """Images per second of forward passes without gradients at ``args.measure_batch`` (best round)."""
    x = torch.rand(args.measure_batch, 3, SIDE, SIDE, device=device)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    def step() -> None:
        with torch.inference_mode():
            if args.bf16:
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
                    model(x).argmax(1)
            else:
                model(x).argmax(1)

    return best_rate(step, device, args.rounds, args.measure_steps, args.measure_batch)


SWEEP = (
    ("fp32", False, False, False),
    ("bf16", True, False, False),
    ("bf16_channels_last", True, True, False),
    ("bf16_channels_last_compile", True, True, True),
)
"""The settings ``--sweep`` compares: name, bf16 autocast, channels_last, torch.compile."""


def sweep(args: argparse.Namespace, device: torch.device) -> dict:
    """Search loop and bare forward + backward under each of :data:`SWEEP`, with their speed over fp32."""
    rows = {}
    for name, bf16, channels_last, compiled in SWEEP:
        options = {"bf16": bf16, "channels_last": channels_last, "compile": compiled}
        setting = argparse.Namespace(**{**vars(args), **options})
        model, canvases, targets, images, labels = build(setting, device)
        search = search_speed(model, canvases, targets, images, labels, setting, device)
        bare = bare_speed(model, images, search["batch"], setting, device)
        rows[name] = {
            "search_images_per_s": round(search["search_images_per_s"], 3),
            "bare_images_per_s": round(bare, 3),
            "throughput_ratio": round(search["search_images_per_s"] / bare, 3),
            "peak_mb": round(search["peak_mb"], 1),
        }
        print(f"sweep {name}: search {search['search_images_per_s']:.2f} images/s, bare {bare:.2f}", flush=True)
        del model  # freed before the next build: a CUDA peak counts every live tensor
    base = rows["fp32"]["search_images_per_s"]
    for row in rows.values():
        row["search_speedup_over_fp32"] = round(row["search_images_per_s"] / base, 3)
    best = max(rows, key=lambda name: rows[name]["search_images_per_s"])
    return {"sweep": rows, "sweep_best": best}


def project(search_ips: float, inference_ips: float, args: argparse.Namespace) -> dict:
    """Hours for all 1,000 classes: the search, and the budgeted power measurement (one pattern, or the full report)."""
    search_images = CLASSES * SEARCH_IMAGES_PER_CLASS
    measured_per_pattern = (CLASSES - 1) * args.power_images
    power_images = CLASSES * measured_per_pattern
    report_images = power_images * args.patterns_per_class
    full_set_images = CLASSES * (CLASSES - 1) * 50 * args.patterns_per_class  # every other-class validation image
    return {
        "search_images": search_images,
        "power_images": power_images,
        "report_images": report_images,
        "search_hours": search_images / search_ips / 3600,
        "power_hours": power_images / inference_ips / 3600,
        "report_hours": report_images / inference_ips / 3600,
        "full_validation_report_hours": full_set_images / inference_ips / 3600,
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the benchmark and print a table and, last, one line of JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_device_option(parser)
    add_threads_option(parser, 1, "CPU threads (default 1)")
    parser.add_argument("--classes", type=int, default=2, help="canvases searched together (default 2)")
    parser.add_argument("--steps", type=int, default=3, help="timed search steps per round (default 3)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds; the best is kept (default 2)")
    parser.add_argument("--measure-batch", type=int, default=8, help="batch of the inference measurement")
    parser.add_argument("--measure-steps", type=int, default=2, help="batches per inference round")
    parser.add_argument("--power-images", type=int, default=10, help="held-out images per other class (default 10)")
    parser.add_argument("--patterns-per-class", type=int, default=8, help="patterns measured per class (default 8)")
    parser.add_argument(
        "--gpu-train-ips",
        type=float,
        default=2500.0,
        help="assumed GPU ResNet-50 mixed-precision training throughput, images/s (default 2500, an A100)",
    )
    parser.add_argument(
        "--max-forward-batch", type=int, help="cap on composites per model call in the search (default: none)"
    )
    parser.add_argument(
        "--memory-only", action="store_true", help="only the search's throughput and peak memory (no bare/inference)"
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--no-bf16", action="store_true", help="on CUDA, run in float32")
    parser.add_argument("--no-channels-last", action="store_true", help="on CUDA, keep the NCHW memory format")
    parser.add_argument(
        "--sweep", action="store_true", help="also compare fp32, bf16, channels_last and torch.compile side by side"
    )
    args = parser.parse_args(argv)
    if argv is None and sys.platform.startswith("linux") and any(key not in os.environ for key in LEAN_MALLOC):
        # Freed tensors leave the resident set at once, so that its peak is the search's (as bench_search).
        command = module_command("benchmarks.bench_imagenet", *sys.argv[1:])
        os.execve(sys.executable, command, child_env(lean_malloc=True))
    device = torch.device(args.device)
    set_threads(args)
    args.bf16 = device.type == "cuda" and not args.no_bf16
    args.channels_last = device.type == "cuda" and not args.no_channels_last

    model, canvases, targets, images, labels = build(args, device)
    search = search_speed(model, canvases, targets, images, labels, args, device)
    if args.memory_only:
        emit_json({"classes": args.classes, "max_forward_batch": args.max_forward_batch, **search})
        return 0
    bare = bare_speed(model, images, search["batch"], args, device)
    inference = inference_speed(model, args, device)
    here = project(search["search_images_per_s"], inference, args)
    ratio = search["search_images_per_s"] / bare
    gpu = project(args.gpu_train_ips * ratio, 3 * args.gpu_train_ips, args)
    result = {
        "device": str(device),
        "threads": args.threads,
        "bf16": args.bf16,
        "channels_last": args.channels_last,
        "compile": args.compile,
        "classes": args.classes,
        "steps": args.steps,
        "batch": search["batch"],
        "search_images_per_s": round(search["search_images_per_s"], 3),
        "bare_images_per_s": round(bare, 3),
        "throughput_ratio": round(ratio, 3),
        "inference_images_per_s": round(inference, 3),
        "peak_mb": round(search["peak_mb"], 1),
        "power_images_per_class": args.power_images,
        "patterns_per_class": args.patterns_per_class,
        "hours_here": {key: round(value, 3) if "hours" in key else value for key, value in here.items()},
        "gpu_train_ips_assumed": args.gpu_train_ips,
        "gpu_hours_projected": {key: round(value, 3) for key, value in gpu.items() if "hours" in key},
    }
    if args.sweep:
        del model, canvases, images  # not held through the sweep, whose CUDA peaks count every live tensor
        result.update(sweep(args, device))
    print(
        f"{device}: search {result['search_images_per_s']:.2f} images/s, bare forward+backward "
        f"{result['bare_images_per_s']:.2f} (ratio {ratio:.2f}), inference {inference:.2f} images/s, "
        f"peak {result['peak_mb']:.0f} MB"
    )
    emit_json(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

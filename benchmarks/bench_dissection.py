"""Peak memory of network dissection as the data grow 10x: flat with the default settings.

Each run is a fresh Python process (so peaks do not mix) that dissects a random conv net
on procedurally generated batches (nothing is held outside the dissection). A sampling
thread records the resident set size (RSS) every 2 ms; the peak minus the RSS just before
:func:`dissect` starts is reported, with the wall time. The children run with
``MALLOC_MMAP_THRESHOLD_=131072`` so that freed tensors leave the RSS at once (glibc would
otherwise keep freed blocks of up to 32 MiB in its heap and the RSS would show them). On CUDA the peak of
``torch.cuda.max_memory_allocated`` is reported too.

Runs, each at 1x and 10x the images: ``default`` (``exact=None``: exact thresholds from a
buffer while the upsampled activations fit ``max_exact_values``, the bounded refinement
beyond), ``bounded`` (``exact=False``: always the refinement) and ``exact``
(``exact=True``: keeps every value, so memory grows with the data; shown for contrast).

Then, for the bounded path's fallback, the error of the thresholds interpolated inside the
histogram bins when the exact collect pass is disabled (``max_exact_values=0``), after 1, 2
and 3 refinement passes, against the exact thresholds.

Usage::

    python -m benchmarks.bench_dissection [--images 80] [--device cpu] [--threads 1]

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from typing import Optional, Sequence

from benchmarks._harness import Timer, add_device_option, add_threads_option, emit_json, run_json_child, set_threads

UNITS, SIDE, MASK, CONCEPTS, BATCH = 64, 64, 64, 20, 20


def _rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as stream:
        return int(stream.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _PeakSampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = _rss_bytes()
        self.running = True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(0.002)


class _GeneratedBatches:
    """Re-iterable batches made on the fly from their index: the data set is never stored."""

    def __init__(self, images: int) -> None:
        self.images = images

    def __len__(self) -> int:
        return -(-self.images // BATCH)

    def __iter__(self):
        import torch

        for index in range(len(self)):
            count = min(BATCH, self.images - index * BATCH)
            generator = torch.Generator().manual_seed(index)
            images = torch.rand(count, 3, SIDE, SIDE, generator=generator)
            blocks = torch.randint(0, CONCEPTS, (count, MASK // 8, MASK // 8), generator=generator)
            masks = blocks.repeat_interleave(8, 1).repeat_interleave(8, 2)  # 8 x 8 pixel concept blocks
            yield images, masks


def _child(images: int, mode: str, device: str, threads: int) -> dict:
    import torch

    from captum_classpattern.dissection import ThresholdSettings, dissect

    set_threads(threads)
    model = _model(device)
    data = _GeneratedBatches(images)
    exact = {"default": None, "bounded": False, "exact": True}[mode]
    sampler = _PeakSampler()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    before = _rss_bytes()
    sampler.start()
    with Timer() as clock:
        result = dissect(model, "4", data, threshold_settings=ThresholdSettings(exact=exact), batch_size=BATCH)
    seconds = clock.seconds
    sampler.running = False
    sampler.join()
    values = images * UNITS * MASK * MASK
    row = {
        "images": images,
        "mode": mode,
        "activation_values": values,
        "activation_mib": round(values * 4 / 2**20, 1),
        "peak_rss_increase_mib": round((sampler.peak - before) / 2**20, 1),
        "seconds": round(seconds, 2),
        "exact_thresholds": bool((result.threshold_errors == 0).all()),
        "detectors": int(result.is_detector.sum()),
    }
    if device.startswith("cuda"):
        row["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return row


def _estimate_errors(images: int, device: str, threads: int) -> list:
    """Error of the interpolated thresholds when the exact collect pass is disabled."""
    import numpy as np

    from captum_classpattern.dissection import ThresholdSettings, dissect

    set_threads(threads)
    model = _model(device)
    data = _GeneratedBatches(images)
    exact = dissect(model, "4", data, threshold_settings=ThresholdSettings(exact=True), batch_size=BATCH).thresholds
    rows = []
    for passes in (1, 2, 3):
        result = dissect(
            model,
            "4",
            data,
            threshold_settings=ThresholdSettings(exact=False, max_exact_values=0, max_refine_passes=passes),
            batch_size=BATCH,
        )
        error = np.abs(result.thresholds - exact)
        rows.append(
            {
                "refine_passes": passes,
                "max_abs_error": float(error.max()),
                "max_relative_error": float((error / np.maximum(np.abs(exact), 1e-12)).max()),
                "max_reported_bound": float(result.threshold_errors.max()),
                "within_bound": bool((error <= result.threshold_errors).all()),
            }
        )
    return rows


def _model(device: str):
    import torch
    from torch import nn

    torch.manual_seed(0)
    return (
        nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, UNITS, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(UNITS, 10),
        )
        .to(device)
        .eval()
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Dissect in fresh processes at 1x and 10x; print a line per run, then one JSON line. Returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=80, help="images at 1x (10x is ten times as many)")
    add_device_option(parser)
    add_threads_option(parser, 1)
    parser.add_argument("--modes", default="default,bounded,exact", help="comma-separated: default, bounded, exact")
    parser.add_argument("--child", nargs=2, metavar=("IMAGES", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        if args.child[1] == "estimate":
            emit_json(_estimate_errors(int(args.child[0]), args.device, args.threads))
        else:
            emit_json(_child(int(args.child[0]), args.child[1], args.device, args.threads))
        return 0
    options = ["--device", args.device, "--threads", str(args.threads)]
    runs = []
    for mode in args.modes.split(","):
        for images in (args.images, 10 * args.images):
            # A fixed mmap threshold makes glibc return freed large blocks at once, so the RSS
            # follows live memory instead of the heap glibc keeps for reuse.
            child = ["--child", str(images), mode, *options]
            runs.append(run_json_child("benchmarks.bench_dissection", child, lean_malloc=True))
            print(
                f"{mode:>8} {images:>6} images: peak +{runs[-1]['peak_rss_increase_mib']:8.1f} MiB, "
                f"{runs[-1]['seconds']:6.1f} s, activations {runs[-1]['activation_mib']:8.1f} MiB",
                flush=True,
            )
    estimate = run_json_child("benchmarks.bench_dissection", ["--child", str(args.images), "estimate", *options])
    for row in estimate:
        print(
            f"estimate after {row['refine_passes']} refinement pass(es): max error {row['max_abs_error']:.3g} "
            f"(bound {row['max_reported_bound']:.3g})",
            flush=True,
        )
    ratios = {}
    for mode in args.modes.split(","):
        small, large = [r for r in runs if r["mode"] == mode]
        ratios[mode] = round(large["peak_rss_increase_mib"] / max(small["peak_rss_increase_mib"], 1e-9), 2)
    emit_json(
        {
            "benchmark": "dissection_memory",
            "device": args.device,
            "threads": args.threads,
            "units": UNITS,
            "mask_size": [MASK, MASK],
            "batch_size": BATCH,
            "max_exact_values": 2**24,
            "runs": runs,
            "peak_ratio_10x_over_1x": ratios,
            "estimate_error_without_collect_pass": estimate,
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

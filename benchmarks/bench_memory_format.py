"""The detectors with images handed over in channels-last format against contiguous images, side by side.

On a CPU the scan, Neural Cleanse and MM-BD hand the model its image batches in
``channels_last`` memory format (the model untouched; a model that refuses the format gets
contiguous images). This script measures what that buys, in one process:

* ``layers``: one forward-backward pass (batch 64, as the searches run) and one forward pass
  (batch 256, as the measurements run) of each CIFAR-10 architecture, freshly initialised,
  with contiguous and with channels-last images, in alternating order;
* ``detectors`` (with ``--models``): each detector on each named zoo model, run as before
  (the model wrapped so that it makes every batch contiguous again, which is what it was
  given before) and as now, in alternating order, with the seconds, their ratio and whether
  the two runs agree (the same flags; the largest difference in the per-class scores).

Usage::

    python -m benchmarks.bench_memory_format                      # layers only: no data needed
    CLASSPATTERN_CIFAR10=~/.cache/cifar10 python -m benchmarks.bench_memory_format --models gap-natural-s10
    python -m benchmarks.bench_memory_format --quick               # a smoke run
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
from torch import nn

from benchmarks import bench_detectors as table  # the table's images and detector calls
from benchmarks import cifar10_models as models  # the architectures, the cache and the data folder
from benchmarks import cifar10_zoo as zoo  # the zoo's models by name
from benchmarks._harness import Timer, add_quick_option, add_threads_option, emit_json, seeded, set_threads
from captum_classpattern.backdoor import scan

LAYOUTS = ("contiguous", "channels_last")
DETECTORS = ("scan", "nc", "mmbd")


class ContiguousInputs(nn.Module):
    """The model as the detectors called it before: every image batch made contiguous again first."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images.contiguous())


def time_layers(arch: str, rounds: int, quick: bool) -> Dict[str, Any]:
    """Forward-backward and forward seconds of one architecture in both layouts, and their ratios."""
    net = seeded(0, getattr(models, f"build_{arch}")).eval()
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    batch, wide = (16, 64) if quick else (64, 256)
    images, many = torch.rand(batch, 3, 32, 32), torch.rand(wide, 3, 32, 32)
    formats = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}

    def backward(layout: str) -> float:
        clock = Timer()
        given = images.clone().requires_grad_(True)
        net(given.contiguous(memory_format=formats[layout])).logsumexp(1).sum().backward()
        return clock.seconds

    def forward(layout: str) -> float:
        clock = Timer()
        with torch.inference_mode():
            net(many.contiguous(memory_format=formats[layout]))
        return clock.seconds

    seconds: Dict[str, List[float]] = {}
    for round_index in range(rounds):
        order = LAYOUTS if round_index % 2 == 0 else tuple(reversed(LAYOUTS))
        for kind, run in (("forward_backward", backward), ("forward", forward)):
            for layout in order:
                seconds.setdefault(f"{kind}_{layout}", []).append(run(layout))
    row: Dict[str, Any] = {"arch": arch, "batch": batch, "forward_batch": wide}
    for kind in ("forward_backward", "forward"):
        before, now = (
            statistics.median(seconds[f"{kind}_contiguous"]),
            statistics.median(seconds[f"{kind}_channels_last"]),
        )
        row[kind] = {"contiguous": round(before, 4), "channels_last": round(now, 4), "speedup": round(before / now, 2)}
    return row


def _run_detector(detector: str, model: nn.Module, data: Dict[str, Any]) -> Dict[str, Any]:
    """One detector's verdict, per-class scores and seconds on ``model`` (the scan alone, at its defaults)."""
    if detector == "scan":
        search, held = data["search"], data["held_out"]
        clock = Timer()
        found = scan(model, search.images, search.labels, held_out=(held.images, held.labels))
        return {"flagged": found.flagged, "scores": list(found.scores), "seconds": clock.seconds}
    if detector == "nc":
        verdict = table.run_neural_cleanse(model, data)
    else:
        verdict = table.run_max_margin(model, data)
    return {"flagged": verdict["flagged"], "scores": [verdict["score"]], "seconds": verdict["seconds"]}


def time_detectors(name: str, cache: str, data: Dict[str, Any], detectors: Sequence[str]) -> Dict[str, Any]:
    """Each detector on one zoo model in both layouts, alternating which goes first."""
    model = zoo.entry_named(name).load(cache)
    callers: Dict[str, Callable[[], nn.Module]] = {
        "contiguous": lambda: ContiguousInputs(model),
        "channels_last": lambda: model,
    }
    rows: Dict[str, Any] = {}
    for index, detector in enumerate(detectors):
        order = LAYOUTS if index % 2 == 0 else tuple(reversed(LAYOUTS))
        runs = {layout: _run_detector(detector, callers[layout](), data) for layout in order}
        before, now = runs["contiguous"], runs["channels_last"]
        gap = max(abs(a - b) for a, b in zip(before["scores"], now["scores"]))
        rows[detector] = {
            "seconds": {layout: round(runs[layout]["seconds"], 1) for layout in LAYOUTS},
            "speedup": round(before["seconds"] / now["seconds"], 2),
            "same_flags": before["flagged"] == now["flagged"],
            "flagged": now["flagged"],
            "largest_score_difference": float(f"{gap:.3g}"),
            "first": order[0],
        }
        print(name, detector, rows[detector], file=sys.stderr, flush=True)
    return {"model": name, "detectors": rows}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Time both layouts; print one JSON record. Returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=[], help="zoo models to run the detectors on (needs CIFAR-10)")
    parser.add_argument("--detectors", nargs="+", default=list(DETECTORS), choices=DETECTORS)
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the layer timings (median; default 5)")
    parser.add_argument("--data", help="CIFAR-10 folder (default: $CLASSPATTERN_CIFAR10)")
    parser.add_argument("--cache", help="where the zoo's models are (default: <package cache>/cifar10)")
    add_threads_option(parser)
    add_quick_option(parser, "small batches, 2 rounds; the quick zoo's models with --models")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    threads = set_threads(args)
    rounds = 2 if args.quick else args.rounds
    record: Dict[str, Any] = {"threads": threads, "threads_given": args.threads, "quick": args.quick}
    record["load_before"] = os.getloadavg()[0]
    record["layers"] = [time_layers(arch, rounds, args.quick) for arch in models.ARCHITECTURES]
    if args.models:
        root = models.cifar10_root(args.data)
        if root is None:
            print("no CIFAR-10 for --models: give --data PATH or set CLASSPATTERN_CIFAR10", file=sys.stderr)
            return 2
        cache = models.cache_folder(args.cache, args.quick)
        data = table.test_data(root, args.quick)
        record["detectors"] = [time_detectors(name, cache, data, args.detectors) for name in args.models]
    record["load_after"] = os.getloadavg()[0]
    emit_json(record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Trigger recovery, right or silent: the scan's recovered triggers on patches the rule never saw.

The placement rule of the recovered trigger (:func:`captum_classpattern.backdoor.locate_trigger`,
up to ``TriggerRecoverySettings.max_shift`` pixels, margin at half strength) and the report
bar (``ScanResult.reported_triggers``: a trigger is reported only when it sends at least
``TriggerRecoverySettings.min_success`` of the held-out other-class images to its class) were chosen on the
demo's model (a 3 x 3 white patch in the bottom-right corner, target 0, seed 0). This script
plants other patches in models of the demo's recipe (a ``SpatialCNN`` of width 16 on 16 x 16
digits, 10% of the training set poisoned, 10 epochs) with new targets and seeds, fixed below
before any of them was scanned, and scans each once, as ``classpattern scan`` does (default
settings, search split searched, held-out split measured).

Per model: the attack success rate, whether the target is flagged, the recovered trigger's
held-out success, whether it would be reported, its Jaccard index with the true patch and
where it lies. The summary (the last line, JSON): the share of targets flagged, of flagged
targets with a reported trigger, the Jaccard of the reported ones (mean, smallest, share at
least 0.5) and the share of silent ones.

Usage::

    python -m benchmarks.bench_trigger_recovery --threads 1                   # the dev patches
    python -m benchmarks.bench_trigger_recovery --plan replica --threads 1    # a new rule, once
    python -m benchmarks.bench_trigger_recovery --quick                       # two models, short searches
"""

from __future__ import annotations

import argparse
import statistics
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch

from benchmarks._harness import Timer, add_quick_option, add_threads_option, emit_json, seeded, set_threads
from captum_classpattern import load_digits
from captum_classpattern.backdoor import (
    KnownTrigger,
    PatchTrigger,
    PoisonedDataset,
    ScanConfig,
    ScanSettings,
    TriggerRecoverySettings,
    attack_success_rate,
    scan,
)
from captum_classpattern.metrics import trigger_jaccard
from captum_classpattern.models import SpatialCNN
from captum_classpattern.training import TrainingOptions, train_classifier

SIDE = 16


def _checkerboard(size: int) -> torch.Tensor:
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return ((rows + cols) % 2).float()


Position = Union[str, Tuple[int, int]]
Planted = Tuple[int, int, int, Position, str]
# (target, seed, size, position, content). ``dev``: written down before the first scan; none
# is the demo's (target 0, seed 0, 3 x 3 white, bottom-right). Rules have since been tried on
# it, so a new rule is reported on ``replica``, written down before any rule was tried on it.
PLANS: Dict[str, List[Planted]] = {
    "dev": [
        (1, 1, 3, "top-left", "white"),
        (2, 2, 3, "top-right", "white"),
        (3, 3, 3, "bottom-left", "white"),
        (4, 4, 3, "center", "white"),
        (5, 5, 4, "bottom-right", "checkerboard"),
        (6, 6, 4, (2, 9), "checkerboard"),
        (7, 7, 3, (10, 3), "white"),
        (8, 8, 4, "top-left", "checkerboard"),
        (9, 9, 3, (5, 11), "white"),
        (1, 10, 4, "bottom-left", "white"),
        (3, 11, 3, "bottom-right", "white"),
        (6, 12, 4, "center", "checkerboard"),
    ],
    "replica": [
        (0, 13, 3, "top-right", "checkerboard"),
        (2, 14, 4, "top-left", "white"),
        (4, 15, 3, (12, 8), "white"),
        (5, 16, 4, "bottom-left", "checkerboard"),
        (7, 17, 3, "center", "checkerboard"),
        (8, 18, 3, (1, 5), "white"),
        (9, 19, 4, "bottom-right", "white"),
        (1, 20, 3, (7, 12), "checkerboard"),
        (3, 21, 4, (9, 1), "white"),
        (5, 22, 3, "top-left", "white"),
        (6, 23, 4, "top-right", "white"),
        (8, 24, 3, "bottom-left", "checkerboard"),
    ],
}


def _where(mask: torch.Tensor) -> str:
    """The rows and columns a mask spans, as ``classpattern scan`` prints them."""
    if not bool(mask.any()):
        return "empty"
    rows, cols = mask.nonzero(as_tuple=True)
    return f"rows {int(rows.min())}-{int(rows.max())}, columns {int(cols.min())}-{int(cols.max())}"


def _trigger(size: int, position: Position, content: str) -> PatchTrigger:
    return PatchTrigger(size, position, 1.0 if content == "white" else _checkerboard(size))


def _train(data: Any, trigger: PatchTrigger, target: int, seed: int, epochs: int) -> torch.nn.Module:
    poisoned = PoisonedDataset((data.train.images, data.train.labels), trigger, target=target, rate=0.1, seed=seed)
    model = seeded(seed, lambda: SpatialCNN(SIDE, 1, 10, 16))
    return train_classifier(model, *poisoned.tensors(), TrainingOptions(epochs=epochs), seed=seed)


def measure(data: Any, planted: Planted, settings: ScanSettings, epochs: int) -> Dict[str, Any]:
    """Plant one patch, scan the model once, and measure its recovered trigger."""
    target, seed, size, position, content = planted
    trigger = _trigger(size, position, content)
    true_mask = trigger.mask(SIDE, SIDE)
    clock = Timer()
    model = _train(data, trigger, target, seed, epochs)
    held = data.eval
    row: Dict[str, Any] = {"target": target, "seed": seed, "size": size, "position": position, "content": content}
    row["attack_success"] = attack_success_rate(model, held.images, held.labels, trigger, target=target)
    result = scan(
        model,
        data.search.images,
        data.search.labels,
        ScanConfig(settings),
        held_out=(held.images, held.labels),
        known_trigger=KnownTrigger(true_mask, target),
        seed=seed,
    )
    row["flagged"] = result.flagged
    row["target_flagged"] = target in result.flagged
    if target in result.trigger_maps:
        found = result.recovered_trigger(target)
        row.update(
            success=result.trigger_success[target],
            reported=target in result.reported_triggers,
            jaccard=trigger_jaccard(found.mask, true_mask),
            pixels=found.k,
            where=_where(found.mask),
        )
    row["seconds"] = round(clock.seconds, 1)
    return row


def summarise(rows: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Shares flagged, reported and silent, and the Jaccard of the reported triggers."""
    flagged = [r for r in rows if r["target_flagged"]]
    reported = [r for r in flagged if r.get("reported")]
    jaccards = [r["jaccard"] for r in reported]
    return {
        "models": len(rows),
        "target_flagged_share": len(flagged) / len(rows),
        "reported_share_of_flagged": len(reported) / len(flagged) if flagged else None,
        "silent_share_of_flagged": 1 - len(reported) / len(flagged) if flagged else None,
        "reported_jaccard_mean": statistics.mean(jaccards) if jaccards else None,
        "reported_jaccard_min": min(jaccards) if jaccards else None,
        "reported_jaccard_at_least_half_share": sum(j >= 0.5 for j in jaccards) / len(jaccards) if jaccards else None,
        "silent_jaccards": [r.get("jaccard") for r in flagged if not r.get("reported")],
        "report_bar": TriggerRecoverySettings().min_success,
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Plant, scan and measure every patch of the plan; print one row per model and the summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_threads_option(parser)
    parser.add_argument("--plan", choices=sorted(PLANS), default="dev", help="the planted patches (default dev)")
    add_quick_option(parser, "two models, 3 epochs, 60-step searches (a smoke run)")
    args = parser.parse_args(argv)
    threads = set_threads(args)
    data = load_digits(size=SIDE)
    plan, settings, epochs = PLANS[args.plan], ScanSettings(), 10
    if args.quick:
        plan, settings, epochs = plan[:2], ScanSettings(steps=60), 3
    rows = []
    for planted in plan:
        rows.append(measure(data, planted, settings, epochs))
        print(rows[-1], file=sys.stderr, flush=True)
    emit_json({"plan": args.plan, "threads": threads, "quick": args.quick, "rows": rows, "summary": summarise(rows)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Class patterns on real CIFAR-10: the paper's three settings on three architectures.

For every model that ``cifar10_models.py`` has trained (PreAct-ResNet-18, VGG-style, pooled
CNN; natural, patch- and blend-backdoored, adversarially trained), all ten classes are
searched with :func:`~captum_classpattern.pipeline.search_classes` at the authors' search-set
size: a seeded 20% of each class's test images (200 per class; 1,800 of other classes per
target). Each pattern (k = 5% of the pixels, the canvas the class's most confident search
image) is measured on 200 held-out test images per class never searched on, beside random
canvas pixels and the top-k pixels of Saliency, IntegratedGradients and GuidedBackprop.
Per model the JSON holds the clean accuracy, the mean power, the mean random and baseline
powers, the floor, the ratios the issue asks for, the simplicity of the patterns and the
seconds; for a backdoored model, the target class's pattern against the trigger; with
``--paper``, the search alone with the paper schedule (one class per call, as the authors
run it) against the default (all ten classes batched): the power of each on the same
held-out images, and the search seconds. The
canvases, maps and pattern masks are kept in ``<cache>/patterns/`` for the figure
(``docs/_tools/cifar10_figure.py``).

CIFAR-10 comes from ``--data`` or ``$CLASSPATTERN_CIFAR10``; the models from the cache of
``cifar10_models.py``. Without the data the script says so and exits 0; models not trained
yet are listed as missing.

Usage::

    python -m benchmarks.bench_cifar10 --data ~/.cache/cifar10
    python -m benchmarks.bench_cifar10 --models preact18 --settings natural --paper
    python -m benchmarks.bench_cifar10 --quick     # one model, two classes, short schedule

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from statistics import fmean as mean
from typing import Any, Dict, List, Optional, Sequence

import torch

from benchmarks import cifar10_models as zoo  # the training script: its names and cache
from benchmarks._harness import (
    Timer,
    add_quick_option,
    add_threads_option,
    emit_json,
    set_threads,
    write_atomic,
    write_json_atomic,
)
from captum_classpattern.attr import ClassPattern, select_canvases, top_k_pattern
from captum_classpattern.data import CIFAR10_CLASSES, Split, load_cifar10
from captum_classpattern.metrics import predictive_power, summarise_simplicity, trigger_jaccard
from captum_classpattern.pipeline import search_classes
from captum_classpattern.training import accuracy

BASELINES = ("Saliency", "IntegratedGradients", "GuidedBackprop")
K = 0.05
SEARCH_PER_CLASS = 200  # 20% of each class's 1,000 test images: the authors' search set
HELD_OUT_PER_CLASS = 200


def split_test(test: Split, seed: int = 0) -> tuple:
    """``(search, held_out)``: a seeded ``SEARCH_PER_CLASS`` and the next ``HELD_OUT_PER_CLASS`` of each class."""
    generator = torch.Generator().manual_seed(seed)
    search, held = [], []
    for cls in range(10):
        where = torch.nonzero(test.labels == cls).flatten()
        where = where[torch.randperm(where.numel(), generator=generator)]
        search.append(where[:SEARCH_PER_CLASS])
        held.append(where[SEARCH_PER_CLASS : SEARCH_PER_CLASS + HELD_OUT_PER_CLASS])
    pick = [torch.cat(parts).sort().values for parts in (search, held)]
    return tuple(Split(test.images[index], test.labels[index]) for index in pick)


def _trigger_agreement(setting: str, outcome: Any, rows: List[Any]) -> Optional[Dict[str, Any]]:
    """How the backdoor target's pattern relates to the planted trigger."""
    trigger = zoo.trigger_of(setting)
    if trigger is None:
        return None
    target = zoo.BACKDOOR_TARGET
    others = [row.predictive_power for row in rows if row.class_ != target]
    record: Dict[str, Any] = {
        "target": target,
        "target_power": rows[target].predictive_power,
        "other_classes_mean_power": mean(others),
        "target_rank": 1 + sum(power > rows[target].predictive_power for power in others),
    }
    if setting == "patch":
        side = outcome.canvases.shape[-1]
        true_mask = trigger.mask(side, side).bool()
        mask = outcome.patterns[target].mask.cpu()
        record["trigger_pixels_in_pattern"] = float((mask & true_mask).sum() / true_mask.sum())
        # The map's top |trigger| pixels against the trigger: Jaccard at the trigger's own size.
        scores = outcome.maps[target, 0].flatten().cpu()
        top = torch.zeros_like(scores, dtype=torch.bool)
        top[scores.topk(int(true_mask.sum())).indices] = True
        record["top_trigger_size_jaccard"] = trigger_jaccard(top.view_as(true_mask), true_mask)
    return record


def _save_patterns(outcome: Any, rows: List[Any], path: str) -> None:
    """Keep the canvases, maps and pattern masks for the figure (docs/_tools/cifar10_figure.py)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    state = {
        "canvases": outcome.canvases.cpu(),
        "maps": outcome.maps[:, :1].cpu(),
        "masks": torch.stack([pattern.mask for pattern in outcome.patterns]).cpu(),
        "powers": torch.tensor([row.predictive_power for row in rows]),
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomic(path, buffer.getvalue())


def measure(model: torch.nn.Module, search: Split, held_out: Split, schedule: str, classes: Sequence[int]) -> tuple:
    """``(outcome, seconds)`` of one search-and-measure run."""
    with Timer() as clock:
        outcome = search_classes(
            model,
            search,
            held_out,
            list(classes),
            k=K,
            class_names=CIFAR10_CLASSES,
            baselines=BASELINES,
            schedule=schedule,
            seed=0,
            show_progress=False,
        )
    return outcome, clock.seconds


def _searched_power(model, search: Split, held_out: Split, schedule: str, classes: List[int], per_class: bool):
    """``(mean power, search seconds, images forwarded per class)`` of one schedule, search time only."""
    canvases = select_canvases(model, search.images, search.labels, classes, strategy="confident")
    explainer = ClassPattern(model)
    groups = [[cls] for cls in classes] if per_class else [classes]
    maps, evidence, seconds, images = [], [], 0.0, 0
    for group in groups:
        index = [classes.index(cls) for cls in group]
        with Timer() as clock:
            maps.append(
                explainer.attribute(
                    canvases[index],
                    target=group,
                    baselines=search.images,
                    baseline_labels=search.labels,
                    schedule=schedule,
                    seed=0,
                )
            )
        seconds += clock.seconds
        evidence.append(explainer.last_tie_break)
        images += explainer.last_stats.images_forwarded
    maps_all, evidence_all = torch.cat(maps), torch.cat(evidence)
    powers = []
    for row, cls in enumerate(classes):
        pattern = top_k_pattern(maps_all[row], canvases[row], K, tie_break=evidence_all[row])
        powers.append(predictive_power(model, pattern, held_out.images, held_out.labels, cls))
    return mean(powers), seconds, images / len(classes)


def paper_vs_default(model, search: Split, held_out: Split, classes: List[int]) -> Dict[str, Any]:
    """The paper schedule (one class per call, as the authors run it) against the default (all classes batched)."""
    paper_power, paper_seconds, paper_images = _searched_power(model, search, held_out, "paper", classes, True)
    default_power, default_seconds, default_images = _searched_power(model, search, held_out, "default", classes, False)
    return {
        "paper_power": paper_power,
        "paper_search_seconds": paper_seconds,
        "paper_images_per_class": paper_images,
        "default_power": default_power,
        "default_search_seconds": default_seconds,
        "default_images_per_class": default_images,
        "power_ratio": default_power / paper_power if paper_power > 0 else None,
        "speedup": paper_seconds / default_seconds,
    }


def model_record(model: torch.nn.Module, arch: str, setting: str, data: tuple, args: argparse.Namespace) -> dict:
    """Everything measured on one trained model."""
    search, held_out, test = data
    classes = range(2) if args.quick else range(10)
    if args.paper_only:
        return {
            "arch": arch,
            "setting": setting,
            "paper_vs_default": paper_vs_default(model, search, held_out, list(classes)),
        }
    schedule = "fast" if args.quick else "default"
    outcome, seconds = measure(model, search, held_out, schedule, classes)
    rows = list(outcome.report.classes)
    power = mean([row.predictive_power for row in rows])
    baselines = {name: mean([row.baselines[name] for row in rows]) for name in BASELINES}
    best = max(baselines.values())
    random = mean([row.random for row in rows])
    record: Dict[str, Any] = {
        "arch": arch,
        "setting": setting,
        "clean_accuracy": accuracy(model, test.images, test.labels),
        "k_pixels": rows[0].k,
        "power": power,
        "random": random,
        "floor": mean([row.floor for row in rows]),
        **{f"{name}_power": value for name, value in baselines.items()},
        "power_over_best_captum": power / best if best > 0 else None,
        "power_over_random": power / random if random > 0 else None,
        "seconds": seconds,
        "simplicity": summarise_simplicity(pattern.mask for pattern in outcome.patterns),
        "per_class": [row.to_dict() for row in rows],
    }
    if not args.quick:
        _save_patterns(outcome, rows, os.path.join(zoo.cache_folder(args.cache), "patterns", f"{arch}-{setting}.pt"))
    backdoor = _trigger_agreement(setting, outcome, rows)
    if backdoor is not None:
        record["backdoor"] = backdoor
    if args.paper and setting == "natural":
        record["paper_vs_default"] = paper_vs_default(model, search, held_out, list(classes))
    return record


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Measure every trained model asked for; print one JSON line. Returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="CIFAR-10 folder (default: $CLASSPATTERN_CIFAR10)")
    parser.add_argument("--cache", help="the models' folder (default: that of cifar10_models.py)")
    parser.add_argument("--models", nargs="+", default=list(zoo.ARCHITECTURES), choices=list(zoo.ARCHITECTURES))
    parser.add_argument("--settings", nargs="+", default=list(zoo.SETTINGS), choices=list(zoo.SETTINGS))
    parser.add_argument("--paper", action="store_true", help="also time the paper schedule on natural models")
    parser.add_argument("--paper-only", action="store_true", help="only the paper-against-default timing")
    add_threads_option(parser)
    parser.add_argument("--out", help="also write the JSON to this file")
    add_quick_option(parser, "two classes, the fast schedule")
    args = parser.parse_args(argv)
    root = zoo.cifar10_root(args.data)
    if root is None:
        emit_json({"skipped": "no CIFAR-10: give --data PATH or set CLASSPATTERN_CIFAR10"})
        return 0
    set_threads(args)
    test = load_cifar10(root, train=False)
    search, held_out = split_test(test)
    records, missing = [], []
    for arch in args.models:
        for setting in args.settings:
            try:
                model = zoo.load_trained(arch, setting, cache=args.cache)
            except FileNotFoundError:
                missing.append(zoo.run_name(arch, setting, 0))
                continue
            records.append(model_record(model, arch, setting, (search, held_out, test), args))
            brief = {k: v for k, v in records[-1].items() if k not in ("per_class", "simplicity")}
            emit_json(brief, file=sys.stderr)
    result = {
        "k": K,
        "search_per_class": SEARCH_PER_CLASS,
        "held_out_per_class": HELD_OUT_PER_CLASS,
        "baselines": list(BASELINES),
        "threads": torch.get_num_threads(),
        "models": records,
        "missing": missing,
    }
    if args.out:
        write_json_atomic(args.out, result)
    emit_json(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

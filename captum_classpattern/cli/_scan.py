"""The ``classpattern scan`` subcommand: a backdoor scan of a model with class patterns.

``classpattern scan --demo-backdoor`` trains (and caches) a digits CNN with a BadNets patch
backdoor and scans it; ``classpattern scan --model mypkg.nets:build --weights w.pt
--data cifar10:PATH`` scans your own model on clean images you hold. Writes ``scan.json``
(the run's settings and the :class:`~captum_classpattern.backdoor.ScanResult` under
``"result"``, readable with ``ScanResult.from_dict``), ``scan.png`` (each class's recovered
pattern and its anomaly index) and ``scan.html`` (a page with the verdict, the sortable
per-class table, the recovered triggers, the figure, the settings and the versions) into
``--out``; the three appear together or not at all. Every input is checked before any
training or search.
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .._utils import write_atomic, write_json_atomic
from ..backdoor import (
    SCORES,
    KnownTrigger,
    ScanConfig,
    ScanResult,
    ScanSettings,
    ScoringSettings,
    demo_backdoor_model,
    scan,
)
from ..data import Split
from ..visualization import plot_scan, png_bytes
from ._arguments import (
    MODEL_HELP,
    WEIGHTS_HELP,
    add_run_flags,
    non_negative_int,
    positive_float,
    positive_int,
    seed_int,
    show_progress,
)
from ._classes import ClassSpec, class_mapping, parse_classes
from ._errors import UsageError
from ._loaders import check_job, load_data, load_model, parse_device
from ._output import prepare_out, publish
from ._report import mirror_claimed, mirror_location, place_free, scan_page, trigger_location

DEMO_SIDE = 16
"""Side of the digits the scan draws when ``--size`` is not given (the demo backdoor's CNN is built for it)."""

"""The ``--score`` choices: the scores :class:`~captum_classpattern.backdoor.ScoringSettings` accepts."""


def add_scan_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``scan`` subcommand to an ``argparse`` subparsers object.

    Args:
        subparsers: the object returned by ``parser.add_subparsers()``.

    Returns:
        The ``scan`` subparser.
    """
    scan = subparsers.add_parser(
        "scan",
        help="scan a model for backdoors with class patterns (clean images only)",
        description="Search one class pattern per class on clean images, flag classes whose pattern is "
        "abnormally small (MAD anomaly index > threshold), write scan.json, scan.html and scan.png. Bad input is "
        "reported in one line on stderr with exit status 2, before any training or search.",
        epilog="Exit status: 0 done; 1 a class is flagged with --fail-on-flag, or an unexpected error (a bug: "
        "traceback); 2 bad input (one line; --debug adds the traceback); 130 interrupted.",
    )
    source = scan.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help=MODEL_HELP)
    source.add_argument(
        "--demo-backdoor",
        action="store_true",
        help="train (or load from the cache) a digits CNN with a 3x3 patch backdoor and scan it",
    )
    scan.add_argument("--weights", help=WEIGHTS_HELP)
    scan.add_argument(
        "--reference-weights",
        nargs="+",
        metavar="W",
        help="weights of one or more reference models: the --model architecture trained by you on clean data of "
        "the same task; a class that is just as easy to flip on them is not flagged",
    )
    scan.add_argument("--data", default="digits", help="digits | cifar10:PATH | folder:PATH (default digits)")
    scan.add_argument(
        "--size",
        type=positive_int,
        help="side of the images: digits are drawn at it (default 16), cifar10/folder images resized to it "
        "(default 32 for cifar10, 224 for a folder)",
    )
    scan.add_argument(
        "--limit",
        type=positive_int,
        default=2000,
        help="images read from cifar10/folder data, the first of each class in equal shares (default 2000)",
    )
    scan.add_argument(
        "--classes",
        help="comma-separated class numbers or names to scan, e.g. 0,3,7 (default: all, at least three); the run "
        "prints the number = name mapping",
    )
    scan.add_argument(
        "--device", default="cpu", help="torch device, e.g. cuda:0; checked before any work (default cpu)"
    )
    scan.add_argument("--demo-target", type=int, default=0, help="target class of --demo-backdoor, 0-9 (default 0)")
    scan.add_argument("--steps", type=positive_int, default=150, help="search steps (default 150)")
    scan.add_argument(
        "--max-eval",
        type=positive_int,
        default=ScoringSettings().max_eval,
        help=f"held-out images per class the predictive power is measured on (default {ScoringSettings().max_eval})",
    )
    scan.add_argument(
        "--score",
        choices=SCORES,
        default=ScoringSettings().score,
        help=f"class score (default {ScoringSettings().score})",
    )
    scan.add_argument(
        "--threshold",
        type=positive_float,
        default=ScoringSettings().threshold,
        help=f"the top-k patterns' anomaly-index threshold (default {ScoringSettings().threshold:g})",
    )
    scan.add_argument(
        "--blend-steps",
        type=non_negative_int,
        default=ScanSettings().blend_steps,
        help=f"steps of the blend probe, which finds blended triggers (default {ScanSettings().blend_steps}; 0: off)",
    )
    scan.add_argument(
        "--warp-steps",
        type=non_negative_int,
        default=ScanSettings().warp_steps,
        help=f"steps of the warp probe, which finds warping triggers (default {ScanSettings().warp_steps}; 0: off)",
    )
    scan.add_argument(
        "--blend-threshold",
        type=positive_float,
        default=ScoringSettings().blend_threshold,
        help=f"the blend probe's anomaly-index threshold (default {ScoringSettings().blend_threshold:g})",
    )
    scan.add_argument(
        "--warp-threshold",
        type=positive_float,
        default=ScoringSettings().warp_threshold,
        help=f"the warp probe's anomaly-index threshold (default {ScoringSettings().warp_threshold:g})",
    )
    scan.add_argument(
        "--accuracy-threshold",
        type=positive_float,
        default=ScoringSettings().accuracy_threshold,
        help="with two or more --reference-weights, the anomaly-index threshold of a class's held-out accuracy "
        f"below the references' (default {ScoringSettings().accuracy_threshold:g})",
    )
    scan.add_argument(
        "--no-reference-spread",
        dest="reference_spread",
        action="store_false",
        help="with two or more --reference-weights, do not floor the relative anomaly index's spread by how "
        "much the references differ among themselves (ScoringSettings.reference_spread)",
    )
    scan.add_argument("--seed", type=seed_int, default=0, help="seed of the search, 0..2**32 - 1 (default 0)")
    scan.add_argument(
        "--out",
        default="classpattern_scan",
        help="output folder, checked writable before any work and created when the run first writes "
        "(default classpattern_scan)",
    )
    scan.add_argument("--fail-on-flag", action="store_true", help="exit with status 1 when a class is flagged")
    add_run_flags(scan)
    return scan


def _load(
    args: argparse.Namespace, classes: Optional[List[ClassSpec]]
) -> Tuple[torch.nn.Module, Split, Split, Sequence[str], Dict[str, Any]]:
    """The model, the search and held-out images on the device, the class names and what to report.

    The reference models, if any, are under ``info["references"]``; the class numbers of
    ``--classes`` (names resolved) under ``info["classes"]``.
    """
    device = parse_device(args.device)
    size: Optional[int] = args.size or (DEMO_SIDE if args.data == "digits" else None)
    side = size or DEMO_SIDE  # the demo's digits
    if args.demo_backdoor:
        if args.data != "digits":
            raise UsageError("--demo-backdoor trains on the digits: leave --data at its default.")
        if side % 4:
            raise UsageError(f"--demo-backdoor's CNN pools twice by 2: --size must be a multiple of 4, got {side}.")
        if not 0 <= args.demo_target < 10:
            raise UsageError(f"--demo-target must be a digit class, 0 to 9, got {args.demo_target}.")
        references: List[torch.nn.Module] = []
    else:
        model = load_model(args.model, args.weights, device)
        references = [load_model(args.model, weights, device) for weights in args.reference_weights or []]
    search, held_out, names = load_data(args.data, args.limit, size=size)
    info: Dict[str, Any] = {"model": args.model, "weights": args.weights}
    if references:
        info["reference_weights"] = list(args.reference_weights)
    if args.demo_backdoor:
        model, trigger = demo_backdoor_model(side, args.demo_target, args.seed, show_progress=show_progress(args))
        model = model.to(device)
        info = {
            "model": "SpatialCNN, patch-backdoored digits (demo)",
            "true_target": args.demo_target,
            "trigger": repr(trigger),
            "trigger_mask": trigger.mask(side, side),
        }
    chosen = check_job(model, search, names, classes, None, args.model, args.data, args.weights)
    for reference, weights in zip(references, args.reference_weights or []):
        check_job(reference, search, names, classes, None, args.model, args.data, weights)
    info["classes"] = None if classes is None else chosen
    info["references"] = references
    search = Split(search.images.to(device), search.labels.to(device))
    held_out = Split(held_out.images.to(device), held_out.labels.to(device))
    return model, search, held_out, names, info


def run_scan(args: argparse.Namespace) -> int:
    """Run ``classpattern scan`` with parsed arguments.

    Returns:
        The exit status: 0, or 1 with ``--fail-on-flag`` when a class is flagged.

    Raises:
        UsageError: bad arguments, files or data, found before any training or search.
        ValueError: bad options or data the scan itself refuses.
    """
    _check_flags(args)
    prepare_out(args.out)
    wanted = _parse_scan_classes(args)
    settings, scoring = _scan_settings(args)
    model, search, held_out, names, info = _load(args, wanted)
    trigger_mask = info.pop("trigger_mask", None)
    classes = info.pop("classes")
    if classes is not None:
        print(class_mapping(classes, names))
    references = info.pop("references", [])
    result, seconds = _timed_scan(
        args, model, search, held_out, settings, scoring, classes, trigger_mask, info, references
    )
    class_names = [str(names[c]) if c < len(names) else str(c) for c in result.classes]
    _print_table(result, class_names)
    info["recovered_triggers"] = recovered_triggers(result)
    _print_findings(result, class_names, args.threshold, seconds, info)
    _write_outputs(args, result, class_names, info, seconds)
    return 1 if args.fail_on_flag and result.flagged else 0


def _check_flags(args: argparse.Namespace) -> None:
    """Refuse --weights or --reference-weights without --model."""
    if args.weights and not args.model:
        raise UsageError("--weights needs --model.")
    if args.reference_weights and not args.model:
        raise UsageError("--reference-weights needs --model: the references share its architecture.")


def _parse_scan_classes(args: argparse.Namespace) -> Optional[List[ClassSpec]]:
    """The classes of --classes (``None``: all), at least three."""
    classes = parse_classes(args.classes)
    if classes is not None and len(classes) < 3:
        raise UsageError(f"--classes: a scan compares classes with each other and needs at least three, got {classes}.")
    return classes


def _scan_settings(args: argparse.Namespace) -> Tuple[ScanSettings, ScoringSettings]:
    """The scan's search and scoring settings from the flags."""
    settings = ScanSettings(steps=args.steps, blend_steps=args.blend_steps, warp_steps=args.warp_steps)
    scoring = ScoringSettings(
        score=args.score,
        max_eval=args.max_eval,
        threshold=args.threshold,
        blend_threshold=args.blend_threshold,
        warp_threshold=args.warp_threshold,
        accuracy_threshold=args.accuracy_threshold,
        reference_spread=args.reference_spread,
    )
    return settings, scoring


def _timed_scan(
    args: argparse.Namespace,
    model: torch.nn.Module,
    search: Split,
    held_out: Split,
    settings: ScanSettings,
    scoring: ScoringSettings,
    classes: Optional[List[int]],
    trigger_mask: Optional[torch.Tensor],
    info: Dict[str, Any],
    references: List[torch.nn.Module],
) -> Tuple[ScanResult, float]:
    """Scan the model on the search images, measured on the held-out ones; returns the result and its seconds."""
    started = time.perf_counter()
    result = scan(
        model,
        search.images,
        search.labels,
        ScanConfig(settings, scoring),
        held_out=(held_out.images, held_out.labels),
        classes=classes,
        known_trigger=KnownTrigger(trigger_mask, info.get("true_target")),
        seed=args.seed,
        show_progress=show_progress(args),
        reference=references or None,
    )
    return result, time.perf_counter() - started


def _print_table(result: ScanResult, class_names: List[str]) -> None:
    """Print one row per class: score, anomaly index, pattern size, power (and the probes' indices) and its flag."""
    # Every number to three decimals, as in the search's table; a probe's column only when it ran.
    # Cells are joined by a space, so that an anomaly index wider than its column (a spread of 0
    # makes it huge) cannot run into its neighbour.
    probes = [
        (name, index)
        for name, index in (("blend", result.blend_anomaly_index), ("warp", result.warp_anomaly_index))
        if index
    ]
    names = ["score", "anomaly", "k", "power"] + [name for name, _ in probes]
    widths = [9, 9, 5, 6] + [8] * len(probes)
    print(" ".join([f"{'class':<11}"] + [f"{n:>{w}}" for n, w in zip(names, widths)]) + "  flagged")
    for row, cls in enumerate(result.classes):
        values = [result.scores[row], result.anomaly_index[row], result.patterns[row].k, result.powers[row]]
        values += [index[row] for _, index in probes]
        cells = [f"{v:>{w}}" if isinstance(v, int) else f"{v:>{w}.3f}" for v, w in zip(values, widths)]
        mark = "  <-- flagged" if cls in result.flagged else ""
        print(" ".join([f"{class_names[row]:<11}"] + cells) + mark)


def recovered_triggers(result: ScanResult) -> List[Dict[str, Any]]:
    """Each flagged class's recovered trigger: its pixels, place in image coordinates, and held-out success.

    The success (``result.trigger_success``) is the share of held-out images of other
    classes that the trigger sends to the class; ``reported`` says whether it reaches
    ``result.recovery.min_success``, the bar from which a trigger is trusted.
    """
    found = []
    for cls in result.flagged:
        if cls not in result.trigger_maps:
            continue
        trigger = result.recovered_trigger(cls)
        found.append(
            {
                "class": cls,
                "pixels": trigger.k,
                "where": trigger_location(trigger),
                "success": result.trigger_success[cls],
                "elsewhere": result.trigger_elsewhere.get(cls),
                "mirrored": result.trigger_mirrored.get(cls),
                "mirror_where": mirror_location(trigger),
                "reported": cls in result.reported_triggers,
            }
        )
    return found


def _mirror_note(found: Dict[str, Any], min_success: float) -> str:
    """The clause saying a printed place has a working mirror image, or ``""``."""
    mirrored, where = found.get("mirrored"), found.get("mirror_where")
    if not mirror_claimed(mirrored, where, min_success):
        return ""
    # Training on images flipped left to right teaches a stamped trigger at both places.
    return (
        f"; flipped left to right ({where}) it sends {mirrored:.2f} too: the model answers at both places "
        "(as one trained on flipped images does), and either may be where the attacker put it"
    )


def _print_findings(
    result: ScanResult, class_names: List[str], threshold: float, seconds: float, info: Dict[str, Any]
) -> None:
    """Print the verdict, the recovered and blended triggers and, for the demo, the trigger's Jaccard."""
    verdict = ", ".join(class_names[result.classes.index(c)] for c in result.flagged) or "none"
    print(f"flagged: {verdict}  (score {result.score}, threshold {threshold:g}, {seconds:.1f} s)")
    height, width = result.maps.shape[-2:]
    for found in info["recovered_triggers"]:
        name = class_names[result.classes.index(found["class"])]
        elsewhere = found["elsewhere"]
        if found["reported"] and place_free(elsewhere):
            print(
                f"recovered trigger of {name}: a {found['pixels']}-pixel pattern (scan.png) that sends "
                f"{found['success']:.2f} of the held-out images of other classes to {name} wherever it is stamped "
                f"({elsewhere:.0%} of the other places tried): the model does not tell where the attacker put it"
            )
        elif found["reported"]:
            also = f"; it works at {elsewhere:.0%} of the other places tried too" if elsewhere else ""
            also += _mirror_note(found, result.recovery.min_success)
            print(
                f"recovered trigger of {name}: {found['pixels']} pixels at {found['where']} of the {height} x {width} "
                f"image; it sends {found['success']:.2f} of the held-out images of other classes to {name}{also}"
            )
        else:
            print(
                f"no trigger recovered for {name}: the best region found sends only {found['success']:.2f} of the "
                f"held-out images of other classes to it (a trigger is reported from {result.recovery.min_success:g})"
            )
    # Each dense probe's flags, with the strength at which its learned trigger flips half the other images.
    probes = [
        (result.blend_flagged, result.blend, "blended trigger", "pattern", "at blend strength {}", "blend.patterns"),
        (result.warp_flagged, result.warp, "warping trigger", "field", "when it moves pixels by {} pixel at most",
         "warp.fields"),
    ]  # fmt: skip
    for flagged, probe, kind, learned, how, where in probes:
        for cls in flagged:
            row, table = result.classes.index(cls), probe.table  # type: ignore[union-attr]
            reached = table.first_reaching(row)
            half = f"more than {table.strengths[-1]:g}" if reached is None else f"{reached:g}"
            print(
                f"{kind} of {class_names[row]}: its probe {learned} flips half the other images "
                f"{how.format(half)} (scan.json: result.{where})"
            )
    if result.collapsed:
        median = float(np.median(result.class_accuracy))
        for cls in result.collapsed:
            row = result.classes.index(cls)
            print(
                f"collapsed class {class_names[row]}: the model classifies {result.class_accuracy[row]:.2f} of its "
                f"held-out images as it (median class {median:.2f}); a clean-label attack that poisoned every "
                "training image of the class leaves this mark"
            )
    for cls in result.weakened:
        row = result.classes.index(cls)
        references = np.mean(result.reference_accuracy, axis=0)[row]
        print(
            f"weakened class {class_names[row]}: the model classifies {result.class_accuracy[row]:.2f} of its held-out "
            f"images as it, the references {references:.2f} (accuracy index {result.accuracy_index[row]:.1f}); a "
            "clean-label attack that poisoned part of the class's training images leaves this mark"
        )
    if result.trigger_jaccard is not None:
        print(f"true target {info['true_target']}: trigger Jaccard {result.trigger_jaccard:.2f}")


def _write_outputs(
    args: argparse.Namespace, result: ScanResult, class_names: List[str], info: Dict[str, Any], seconds: float
) -> None:
    """Write scan.json, scan.html and scan.png into --out, together or not at all."""
    report = {
        "command": "scan",
        "data": args.data,
        **info,
        "class_names": class_names,
        "flagged_names": [class_names[result.classes.index(c)] for c in result.flagged],
        "seconds": round(seconds, 2),
        "result": result.to_dict(),
    }
    fig, _ = plot_scan(result, class_names, args.threshold, use_pyplot=False)
    figure = png_bytes(fig, dpi=120)
    run_settings = {
        "command": args.command_line,
        "data": args.data,
        **info,
        "steps": args.steps,
        "score": args.score,
        "max eval": args.max_eval,
        "threshold": args.threshold,
        "seed": args.seed,
        "device": args.device,
        "seconds": round(seconds, 2),
    }
    page = scan_page(result, class_names, figure, run_settings)
    png_path, html_path, json_path = publish(
        args.out,
        [
            ("scan.png", lambda path: write_atomic(path, figure)),
            ("scan.html", lambda path: write_atomic(path, page.encode("utf-8"))),
            ("scan.json", lambda path: write_json_atomic(path, report)),
        ],
    )
    print(f"wrote {json_path}, {html_path} and {png_path}")

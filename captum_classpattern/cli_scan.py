"""The ``classpattern scan`` subcommand: a backdoor scan of a model with class patterns.

``classpattern scan --demo-backdoor`` trains (and caches) a digits CNN with a BadNets patch
backdoor and scans it; ``classpattern scan --model mypkg.nets:build --weights w.pt
--data cifar10:PATH`` scans your own model on clean images you hold. Writes ``scan.json``
and ``scan.png`` (each class's recovered pattern and its anomaly index) into ``--out``.
"""
from __future__ import annotations

import argparse
import os
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from ._helpers import save_figure_atomic, write_json_atomic
from .data import DIGIT_CLASSES, Split, load_digits

__all__ = ["add_scan_parser", "run_scan", "plot_scan"]

GROUND = (0.75, 0.85, 1.0)  # colour of the pixels outside a pattern in scan.png


def add_scan_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``scan`` subcommand to an ``argparse`` subparsers object.

    Args:
        subparsers: the object returned by ``parser.add_subparsers()``.

    Returns:
        The ``scan`` subparser.
    """
    scan = subparsers.add_parser(
        "scan", help="scan a model for backdoors with class patterns (clean images only)",
        description="Search one class pattern per class on clean images, flag classes whose pattern is "
                    "abnormally small (MAD anomaly index > threshold), write scan.json and scan.png.")
    source = scan.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="module:factory returning the model, e.g. mypkg.nets:build")
    source.add_argument("--demo-backdoor", action="store_true",
                        help="train (or load from the cache) a digits CNN with a 3x3 patch backdoor and scan it")
    scan.add_argument("--weights", help="state_dict file to load into --model")
    scan.add_argument("--data", default="digits", help="digits | cifar10:PATH | folder:PATH (default digits)")
    scan.add_argument("--size", type=int, default=16, help="side of the digits images (default 16)")
    scan.add_argument("--limit", type=int, default=2000, help="images read from cifar10/folder data (default 2000)")
    scan.add_argument("--classes", help="comma-separated classes to scan (default: all, at least three)")
    scan.add_argument("--device", default="cpu", help="torch device, e.g. cuda:0 (default cpu)")
    scan.add_argument("--demo-target", type=int, default=0, help="target class of --demo-backdoor (default 0)")
    scan.add_argument("--steps", type=int, default=150, help="search steps (default 150)")
    scan.add_argument("--max-eval", type=int, default=300,
                      help="held-out images per class the predictive power is measured on (default 300)")
    scan.add_argument("--score", choices=("min_k", "power_at_k", "mask_l1"), default=None,
                      help="class score (default: the scan's default)")
    scan.add_argument("--threshold", type=float, default=2.0, help="anomaly-index threshold (default 2)")
    scan.add_argument("--seed", type=int, default=0, help="seed of the search (default 0)")
    scan.add_argument("--out", default="classpattern_scan", help="output folder (default classpattern_scan)")
    scan.add_argument("--fail-on-flag", action="store_true", help="exit with status 1 when a class is flagged")
    scan.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return scan


def _digits(size: int) -> Tuple[Split, Split, Split]:
    data = load_digits(size=size)
    return data.train, data.search, data.eval


def demo_backdoor_model(size: int = 16, target: int = 0, seed: int = 0, epochs: int = 10,
                        show_progress: bool = False):
    """A SpatialCNN trained on digits with 10% of the training set carrying a 3x3 white patch.

    Cached by its settings (see :func:`~captum_classpattern.training.cached_model`).

    Returns:
        ``(model, trigger)``.
    """
    from .backdoor import PatchTrigger, PoisonedDataset
    from .models import SpatialCNN
    from .training import cached_model, train_classifier

    trigger = PatchTrigger()
    settings = {"model": "SpatialCNN", "width": 16, "size": size, "target": target, "seed": seed, "epochs": epochs,
                "trigger": repr(trigger), "rate": 0.1, "v": 1}

    def build():
        torch.manual_seed(seed)
        return SpatialCNN(size, 1, 10, 16)

    def train(model):
        split = load_digits(size=size).train
        poisoned = PoisonedDataset((split.images, split.labels), trigger, target=target, rate=0.1, seed=seed)
        images, labels = poisoned.tensors()
        return train_classifier(model, images, labels, epochs=epochs, seed=seed, show_progress=show_progress,
                                description="training a backdoored digits CNN")

    return cached_model("digits_backdoor", settings, build, train), trigger


def _load(args) -> Tuple[torch.nn.Module, Split, Split, Sequence[str], Dict[str, Any]]:
    info: Dict[str, Any] = {}
    if args.demo_backdoor:
        if args.data != "digits":
            raise ValueError("--demo-backdoor trains on the digits: leave --data at its default.")
        if args.size % 4:
            raise ValueError(f"--demo-backdoor's CNN pools twice by 2: --size must be a multiple of 4, "
                             f"got {args.size}.")
        model, trigger = demo_backdoor_model(args.size, args.demo_target, args.seed,
                                             show_progress=not args.no_progress)
        model = model.to(args.device)
        info = {"model": "SpatialCNN, patch-backdoored digits (demo)", "true_target": args.demo_target,
                "trigger": repr(trigger), "trigger_mask": trigger.mask(args.size, args.size)}
    else:
        from .cli import load_model

        model = load_model(args.model, args.weights, args.device)
        info = {"model": args.model, "weights": args.weights}
    if args.data == "digits":
        _, search, held_out = _digits(args.size)
        names: Sequence[str] = DIGIT_CLASSES
    else:
        from .cli import load_data

        search, held_out, names = load_data(args.data, args.limit)
    device = torch.device(args.device)
    search = Split(search.images.to(device), search.labels.to(device))
    held_out = Split(held_out.images.to(device), held_out.labels.to(device))
    return model, search, held_out, names, info


def plot_scan(result, class_names: Optional[Sequence[str]] = None, threshold: float = 2.0):
    """Each class's recovered pattern above a bar chart of the anomaly indices.

    Flagged classes show their recovered trigger (see ``ScanResult.recovered_trigger``),
    the others the smallest pattern that reached the power threshold. Pattern pixels are
    drawn with their values; the rest of the image is light blue, so that white and black
    pattern pixels both show.

    Args:
        result: a :class:`~captum_classpattern.scan.ScanResult`.
        class_names: a name per scanned class (default the class indices).
        threshold: drawn as a dashed line; flagged classes are drawn in red.

    Returns:
        ``(figure, axes)``: a :class:`matplotlib.figure.Figure` (pyplot is not used) and
        the list of its axes.
    """
    from matplotlib.figure import Figure

    count = len(result.classes)
    names = [str(c) for c in result.classes] if class_names is None else [str(n) for n in class_names]
    fig = Figure(figsize=(max(6.0, 1.1 * count), 4.2), layout="constrained")
    grid = fig.add_gridspec(2, count, height_ratios=(1.0, 1.4))
    axes = []
    for column, pattern in enumerate(result.patterns):
        cls = result.classes[column]
        flagged = cls in result.flagged
        label = f"k={pattern.k}"
        if flagged and cls in result.trigger_maps:
            pattern = result.recovered_trigger(cls)
            label = f"trigger {pattern.k}px"
        ax = fig.add_subplot(grid[0, column])
        values = pattern.values.detach().cpu().clamp(0, 1)
        rgb = values.expand(3, -1, -1) if values.shape[0] == 1 else values[:3]
        # A tinted ground, so that white and black pattern pixels both show.
        ground = torch.tensor(GROUND).view(3, 1, 1).expand_as(rgb)
        shown = torch.where(pattern.mask.cpu(), rgb, ground)
        ax.imshow(shown.permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(f"{names[column]}\n{label}", fontsize=8, color="red" if flagged else "black")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_edgecolor("red" if flagged else "0.7")
            spine.set_linewidth(2 if flagged else 1)
        axes.append(ax)
    bars = fig.add_subplot(grid[1, :])
    colours = ["tab:red" if c in result.flagged else "tab:gray" for c in result.classes]
    bars.bar(range(count), result.anomaly_index, color=colours)
    bars.axhline(threshold, color="black", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    bars.set_xticks(range(count), names, fontsize=8)
    bars.set_ylabel("anomaly index")
    side = "small" if result.direction == "low" else "large"
    bars.set_title(f"score: {result.score} ({side} is suspicious); red: flagged", fontsize=9)
    bars.legend(fontsize=8, loc="upper right")
    axes.append(bars)
    return fig, axes


def run_scan(args: argparse.Namespace) -> int:
    """Run ``classpattern scan`` with parsed arguments.

    Returns:
        The exit status: 0, or 1 with ``--fail-on-flag`` when a class is flagged.

    Raises:
        ValueError: bad options or data (the command line turns them into a message).
    """
    from .scan import scan

    if args.weights and not args.model:
        raise ValueError("--weights needs --model.")
    if args.steps < 1:
        raise ValueError(f"--steps must be positive, got {args.steps}.")
    model, search, held_out, names, info = _load(args)
    classes: Optional[List[int]] = None
    if args.classes:
        try:
            classes = [int(c) for c in args.classes.split(",")]
        except ValueError as error:
            raise ValueError(f"--classes must be comma-separated ints, got {args.classes!r}.") from error
    trigger_mask = info.pop("trigger_mask", None)
    options: Dict[str, Any] = {} if args.score is None else {"score": args.score}
    started = time.perf_counter()
    result = scan(model, search.images, search.labels, eval_images=held_out.images, eval_labels=held_out.labels,
                  classes=classes, steps=args.steps, max_eval=args.max_eval, threshold=args.threshold, seed=args.seed,
                  trigger_mask=trigger_mask, trigger_target=info.get("true_target"),
                  show_progress=not args.no_progress, **options)
    seconds = time.perf_counter() - started
    class_names = [str(names[c]) if c < len(names) else str(c) for c in result.classes]

    print(f"{'class':<12}{'score':>10}{'anomaly':>9}{'k':>6}{'power':>7}  flagged")
    for row, cls in enumerate(result.classes):
        mark = "  <-- flagged" if cls in result.flagged else ""
        print(f"{class_names[row]:<12}{result.scores[row]:>10.3g}{result.anomaly_index[row]:>9.2f}"
              f"{result.patterns[row].k:>6}{result.powers[row]:>7.2f}{mark}")
    verdict = ", ".join(class_names[result.classes.index(c)] for c in result.flagged) or "none"
    print(f"flagged: {verdict}  (score {result.score}, threshold {args.threshold:g}, {seconds:.1f} s)")
    for cls in result.flagged:
        if cls in result.trigger_maps:
            trigger = result.recovered_trigger(cls)
            rows, cols = trigger.mask.nonzero(as_tuple=True)
            where = (f"rows {int(rows.min())}-{int(rows.max())}, columns {int(cols.min())}-{int(cols.max())}"
                     if trigger.k else "empty")
            print(f"recovered trigger of {class_names[result.classes.index(cls)]}: {trigger.k} pixels, {where}")
    if result.trigger_jaccard is not None:
        print(f"true target {info['true_target']}: trigger Jaccard {result.trigger_jaccard:.2f}")

    os.makedirs(args.out, exist_ok=True)
    report = {"command": "scan", "data": args.data, **info, "class_names": class_names,
              "flagged_names": [class_names[result.classes.index(c)] for c in result.flagged],
              "seconds": round(seconds, 2), "result": result.as_dict()}
    json_path, png_path = os.path.join(args.out, "scan.json"), os.path.join(args.out, "scan.png")
    write_json_atomic(json_path, report)
    fig, _ = plot_scan(result, class_names, args.threshold)
    save_figure_atomic(fig, png_path, dpi=120)
    print(f"wrote {json_path} and {png_path}")
    return 1 if args.fail_on_flag and result.flagged else 0

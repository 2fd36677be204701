"""The ``classpattern`` command line: ``demo`` and ``search``."""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import warnings
from typing import List, Optional, Sequence, Tuple

import torch

from .data import DIGIT_CLASSES, Split, load_cifar10, load_digits, load_image_folder
from .pipeline import search_classes
from .training import accuracy, digits_model


def _parse_k(text: str):
    value = float(text)
    return value if "." in text or "e" in text.lower() else int(value)


def _common(parser: argparse.ArgumentParser, default_out: str) -> None:
    parser.add_argument("--k", type=_parse_k, default=0.05, help="pattern size: pixels (int) or fraction (float), default 0.05")
    parser.add_argument("--out", default=default_out, help=f"output folder (default {default_out})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the search (default 0)")
    parser.add_argument("--schedule", choices=("default", "paper"), default="default", help="search schedule")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``classpattern`` command."""
    parser = argparse.ArgumentParser(prog="classpattern", description="Class-wise patterns of image classifiers (Captum).")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="train (or load) the digits CNN and search all 10 class patterns")
    _common(demo, "classpattern_output")
    search = commands.add_parser("search", help="search class patterns of your own model and data")
    search.add_argument("--model", required=True, help="module:factory returning the model, e.g. mypkg.nets:build")
    search.add_argument("--weights", help="state_dict file to load into the model")
    search.add_argument("--data", default="digits", help="digits | cifar10:PATH | folder:PATH (default digits)")
    search.add_argument("--classes", help="comma-separated classes (default: all)")
    search.add_argument("--device", default="cpu", help="torch device, e.g. cuda:0 (default cpu)")
    search.add_argument("--limit", type=int, default=2000, help="images read from cifar10/folder data (default 2000)")
    _common(search, "classpattern_output")
    try:
        from .cli_scan import add_scan_parser
    except ImportError:  # the scan subcommand ships with the backdoor module
        pass
    else:
        add_scan_parser(commands)
    return parser


def load_model(spec: str, weights: Optional[str], device: str) -> torch.nn.Module:
    """Build a model from ``module:factory`` and optionally load a state dict.

    Raises:
        ValueError: the spec is malformed or names nothing callable.
        FileNotFoundError: the weights file is missing.
    """
    if ":" not in spec:
        raise ValueError(f"--model must look like module:factory, got {spec!r}.")
    module_name, factory_name = spec.split(":", 1)
    sys.path.insert(0, os.getcwd())
    factory = getattr(importlib.import_module(module_name), factory_name, None)
    if not callable(factory):
        raise ValueError(f"{spec!r}: {module_name} has no callable {factory_name}.")
    model = factory()
    if weights:
        if not os.path.exists(weights):
            raise FileNotFoundError(f"weights file {weights} not found.")
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.to(device).eval()


def _halves(split: Split, seed: int) -> Tuple[Split, Split]:
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))
    cut = len(split) // 2
    first, second = order[:cut], order[cut:]
    return Split(split.images[first], split.labels[first]), Split(split.images[second], split.labels[second])


def load_data(spec: str, limit: int) -> Tuple[Split, Split, Sequence[str]]:
    """``(search, held_out, class_names)`` for ``digits``, ``cifar10:PATH`` or ``folder:PATH``.

    Raises:
        ValueError: an unknown data spec.
    """
    if spec == "digits":
        data = load_digits()
        return data.search, data.eval, DIGIT_CLASSES
    kind, _, path = spec.partition(":")
    if kind == "cifar10" and path:
        from .data import CIFAR10_CLASSES

        search, held_out = _halves(load_cifar10(path, train=False, limit=limit), 0)
        return search, held_out, CIFAR10_CLASSES
    if kind == "folder" and path:
        split, names = load_image_folder(path, limit=limit)
        search, held_out = _halves(split, 0)
        return search, held_out, names
    raise ValueError(f"--data must be digits, cifar10:PATH or folder:PATH, got {spec!r}.")


def run_search(model, search: Split, held_out: Split, class_names, classes: List[int], args, extra_settings) -> int:
    """Search, print the table, write ``report.json`` and ``patterns.png`` into ``args.out``.

    Under ``torchrun`` every process searches its share of the classes (see
    :func:`~captum_classpattern.pipeline.search_classes`) and only rank 0 prints and writes.
    """
    from ._helpers import save_figure_atomic
    from .distributed import init_distributed, is_main_process
    from .visualization import plot_class_patterns

    device = next(model.parameters()).device
    init_distributed(device)
    main_process = is_main_process()
    test_accuracy = None
    if main_process:
        test_accuracy = accuracy(model, held_out.images.to(device), held_out.labels.to(device))
        print(f"test accuracy on {len(held_out)} held-out images: {test_accuracy:.3f}")
    start = time.perf_counter()
    outcome = search_classes(model, search, held_out, classes, k=args.k, class_names=class_names,
                             schedule=args.schedule, seed=args.seed, show_progress=not args.no_progress)
    seconds = time.perf_counter() - start
    if not main_process:
        return 0
    report = outcome.report
    report.test_accuracy = test_accuracy
    report.settings = {"schedule": args.schedule, "seed": args.seed, "k": args.k, "seconds": round(seconds, 2),
                       **extra_settings}
    print(report.table())
    os.makedirs(args.out, exist_ok=True)
    report.save(os.path.join(args.out, "report.json"))
    fig, _ = plot_class_patterns(
        outcome.canvases.cpu(), outcome.maps.cpu(), [p.to("cpu") for p in outcome.patterns],
        class_names=[str(class_names[c]) for c in classes],
        powers=[row.predictive_power for row in report.classes], use_pyplot=False,
    )
    save_figure_atomic(fig, os.path.join(args.out, "patterns.png"), dpi=120, bbox_inches="tight")
    print(f"wrote {os.path.join(args.out, 'report.json')} and {os.path.join(args.out, 'patterns.png')} "
          f"(search and measurement took {seconds:.1f} s)")
    return 0


def run_demo(args) -> int:
    """``classpattern demo``: the digits CNN and all 10 classes (also under ``torchrun``)."""
    from .distributed import init_distributed, is_main_process, main_process_first

    torch.manual_seed(args.seed)
    init_distributed("cpu")
    # Rank 0 trains and caches the model if needed; the other ranks then load the cache.
    with main_process_first():
        model = digits_model(show_progress=not args.no_progress and is_main_process())
    data = load_digits()
    return run_search(model, data.search, data.eval, DIGIT_CLASSES, list(range(10)), args,
                      {"data": "digits", "model": "SmallCNN (cached)"})


def run_user_search(args) -> int:
    """``classpattern search``: a user's model and data (also under ``torchrun``)."""
    from .distributed import init_distributed, local_device

    # Under torchrun a bare "cuda" means this process's own GPU (cuda:LOCAL_RANK).
    device = local_device(args.device)
    init_distributed(device)
    model = load_model(args.model, args.weights, str(device))
    search, held_out, names = load_data(args.data, args.limit)
    classes = list(range(len(names))) if not args.classes else [int(c) for c in args.classes.split(",")]
    return run_search(model, search, held_out, names, classes, args, {"data": args.data, "model": args.model})


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``classpattern`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    handlers = {"demo": run_demo, "search": run_user_search}
    if args.command == "scan":
        from .cli_scan import run_scan

        handlers["scan"] = run_scan
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients")
            return handlers[args.command](args)
    except (ValueError, TypeError, FileNotFoundError) as error:
        print(f"classpattern {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

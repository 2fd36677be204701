"""The demo and search subcommands."""

from __future__ import annotations

import os
import time
from typing import List

import torch

from .._utils import save_figure_atomic
from ..data import DIGIT_CLASSES, Split, load_digits
from ..pipeline import init_distributed, is_main_process, local_device, main_process_first, search_classes
from ..training import accuracy, digits_model
from ..visualization import plot_class_patterns
from ._loaders import load_data, load_model


def run_search(model, search: Split, held_out: Split, class_names, classes: List[int], args, extra_settings) -> int:
    """Search, print the table, write ``report.json`` and ``patterns.png`` into ``args.out``.

    Under ``torchrun`` every process searches its share of the classes (see
    :func:`~captum_classpattern.pipeline.search_classes`) and only rank 0 prints and writes.
    """
    device = next(model.parameters()).device
    init_distributed(device)
    main_process = is_main_process()
    test_accuracy = None
    if main_process:
        test_accuracy = accuracy(model, held_out.images.to(device), held_out.labels.to(device))
        print(f"test accuracy on {len(held_out)} held-out images: {test_accuracy:.3f}")
    start = time.perf_counter()
    outcome = search_classes(
        model,
        search,
        held_out,
        classes,
        k=args.k,
        class_names=class_names,
        schedule=args.schedule,
        seed=args.seed,
        show_progress=not args.no_progress,
    )
    seconds = time.perf_counter() - start
    if not main_process:
        return 0
    report = outcome.report
    report.test_accuracy = test_accuracy
    report.settings = {
        "schedule": args.schedule,
        "seed": args.seed,
        "k": args.k,
        "seconds": round(seconds, 2),
        **extra_settings,
    }
    print(report.table())
    os.makedirs(args.out, exist_ok=True)
    report.to_json(os.path.join(args.out, "report.json"))
    fig, _ = plot_class_patterns(
        outcome.canvases.cpu(),
        outcome.maps.cpu(),
        [p.to("cpu") for p in outcome.patterns],
        class_names=[str(class_names[c]) for c in classes],
        powers=[row.predictive_power for row in report.classes],
        use_pyplot=False,
    )
    save_figure_atomic(fig, os.path.join(args.out, "patterns.png"), dpi=120, bbox_inches="tight")
    print(
        f"wrote {os.path.join(args.out, 'report.json')} and {os.path.join(args.out, 'patterns.png')} "
        f"(search and measurement took {seconds:.1f} s)"
    )
    return 0


def run_demo(args) -> int:
    """``classpattern demo``: the digits CNN and all 10 classes (also under ``torchrun``)."""
    torch.manual_seed(args.seed)
    init_distributed("cpu")
    # Rank 0 trains and caches the model if needed; the other ranks then load the cache.
    with main_process_first():
        model = digits_model(show_progress=not args.no_progress and is_main_process())
    data = load_digits()
    return run_search(
        model,
        data.search,
        data.eval,
        DIGIT_CLASSES,
        list(range(10)),
        args,
        {"data": "digits", "model": "SmallCNN (cached)"},
    )


def run_user_search(args) -> int:
    """``classpattern search``: a user's model and data (also under ``torchrun``)."""
    # Under torchrun a bare "cuda" means this process's own GPU (cuda:LOCAL_RANK).
    device = local_device(args.device)
    init_distributed(device)
    model = load_model(args.model, args.weights, str(device))
    search, held_out, names = load_data(args.data, args.limit)
    classes = list(range(len(names))) if not args.classes else [int(c) for c in args.classes.split(",")]
    return run_search(model, search, held_out, names, classes, args, {"data": args.data, "model": args.model})

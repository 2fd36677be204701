"""The ``demo`` and ``search`` subcommands: search class patterns, print the table, write the report and figure.

Every input is checked before any training or search (output folder, device, classes,
model, weights, data). The search is checkpointed chunk by chunk into
``<out>/checkpoints/``, so that ``--resume`` continues a run that was killed. The figure
``patterns.png``, the page ``report.html`` and the report ``report.json`` appear together or
not at all.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from typing import Dict, List, Sequence, Union

import torch

from .._utils import phase, predict, thread_report, write_atomic
from ..attr import NAMED_SCHEDULES, Budget, ImageStream, SearchSchedule, pixel_budget
from ..data import DIGIT_CLASSES, Split, load_digits
from ..pipeline import (
    Chunking,
    ClassSearchSettings,
    PowerSample,
    SearchOutcome,
    SearchReport,
    init_distributed,
    is_main_process,
    main_process_first,
    search_classes,
)
from ..training import accuracy, digits_model
from ..visualization import plot_class_patterns, png_bytes
from ._arguments import show_progress
from ._classes import class_mapping, parse_classes
from ._loaders import (
    FOLDER_SIDE,
    check_job,
    is_stream_spec,
    load_data,
    load_model,
    load_stream,
    parse_device,
    probe_split,
)
from ._output import prepare_out, publish
from ._report import search_page

Source = Union[Split, ImageStream]

CHECKPOINTS = "checkpoints"
"""The folder under ``--out`` that ``demo`` and ``search`` checkpoint finished chunks of classes into."""


def run_search(
    model: torch.nn.Module,
    search: Source,
    held_out: Source,
    class_names: Sequence[str],
    classes: List[int],
    args: argparse.Namespace,
    extra_settings: dict,
) -> int:
    """Search, print the table, write ``patterns.png``, ``report.html`` and ``report.json`` into ``args.out``.

    Under ``torchrun`` every process searches (and checkpoints) its share of the classes
    (see :func:`~captum_classpattern.pipeline.search_classes`) and only rank 0 prints and
    writes the results.

    Returns:
        The exit status, 0.
    """
    device = next(model.parameters()).device
    init_distributed(device)
    main_process = is_main_process()
    schedule = _schedule(args)  # a bad --alpha is refused before any work
    test_accuracy = None
    if main_process:
        print(class_mapping(classes, class_names))
        with phase("test accuracy"):
            test_accuracy = _accuracy(model, held_out, device)
        print(f"test accuracy on {len(held_out)} held-out images: {test_accuracy:.3f}")
    power_images = getattr(args, "power_images", None)
    measured: Union[Source, PowerSample] = held_out if power_images is None else PowerSample(held_out, power_images)
    start = time.perf_counter()
    with warnings.catch_warnings():
        # A collapsed map is reported below in one line, with advice this command can follow.
        warnings.filterwarnings("ignore", message="only .* pixels asked for have a positive score")
        outcome = search_classes(
            model,
            search,
            measured,
            classes,
            ClassSearchSettings(k=args.k, schedule=schedule),
            class_names=class_names,
            seed=args.seed,
            show_progress=show_progress(args),
            chunks=Chunking(os.path.join(args.out, CHECKPOINTS), args.chunk_size, args.resume),
        )
    seconds = time.perf_counter() - start
    if not main_process:
        return 0
    report = outcome.report
    report.test_accuracy = test_accuracy
    with phase("figure"):
        figure = _figure(outcome, report, classes, class_names, _collapsed(outcome.maps, args.k))
    report.settings = {
        "schedule": args.schedule,
        **({} if args.alpha is None else {"alpha": args.alpha}),
        "seed": args.seed,
        "k": args.k,
        "seconds": round(seconds, 2),
        **({} if power_images is None else {"power_images": power_images, "confidence": 0.95}),
        **extra_settings,
        **_run_costs(args, search, held_out),
    }
    print(report.table())
    collapsed = _collapsed(outcome.maps, args.k)
    if collapsed:
        print(_collapse_note(args, collapsed, classes, class_names), file=sys.stderr)
    page = search_page(report, figure, args.command_line)
    figure_path, page_path, report_path = publish(
        args.out,
        [
            ("patterns.png", lambda path: write_atomic(path, figure)),
            ("report.html", lambda path: write_atomic(path, page.encode("utf-8"))),
            ("report.json", report.to_json),
        ],
    )
    print(f"wrote {report_path}, {page_path} and {figure_path} (search and measurement took {seconds:.1f} s)")
    return 0


def _figure(
    outcome: SearchOutcome,
    report: SearchReport,
    classes: List[int],
    class_names: Sequence[str],
    collapsed: Dict[int, int],
) -> bytes:
    """``patterns.png``: every class's canvas, map and pattern, collapsed maps marked."""
    fig, _ = plot_class_patterns(
        outcome.canvases.cpu(),
        outcome.maps.cpu(),
        [p.to("cpu") for p in outcome.patterns],
        class_names=[
            f"{class_names[c]}\n(map collapsed)" if i in collapsed else str(class_names[c])
            for i, c in enumerate(classes)
        ],
        powers=[row.predictive_power for row in report.classes],
        use_pyplot=False,
    )
    return png_bytes(fig, dpi=120, bbox_inches="tight")


def _run_costs(args: argparse.Namespace, search: Source, held_out: Source) -> dict:
    """Where the run's seconds went, the threads its loops used, and how often a folder's images were decoded."""
    costs: dict = {
        "phase_seconds": {name: round(seconds, 2) for name, seconds in getattr(args, "phases", {}).items()},
        "threads": thread_report(),
    }
    if isinstance(search, ImageStream):
        cache = search.cache  # shared with the held-out half: both are subsets of one folder
        costs["images"] = {"decoded": cache.decoded, "reused": cache.reused, "kept_mb": round(cache.used / 2**20, 1)}
    return costs


def _schedule(args: argparse.Namespace) -> Union[str, SearchSchedule]:
    """The named ``--schedule``, with ``--alpha`` when given.

    Raises:
        ValueError: ``--alpha`` above 1.
    """
    if args.alpha is None:
        return args.schedule
    return NAMED_SCHEDULES[args.schedule].replace(alpha=args.alpha)


def _collapsed(maps: torch.Tensor, k: Budget) -> Dict[int, int]:
    """Row -> positive pixels, for the maps with fewer positive pixels than the pattern size asks for."""
    count = pixel_budget(k, *maps.shape[-2:])
    positive = (maps.reshape(maps.shape[0], -1, *maps.shape[-2:])[:, 0] > 0).flatten(1).sum(1).tolist()
    return {row: int(n) for row, n in enumerate(positive) if n < count}


def _collapse_note(
    args: argparse.Namespace, collapsed: Dict[int, int], classes: List[int], class_names: Sequence[str]
) -> str:
    """One plain line about collapsed maps, with advice this command can follow."""
    which = ", ".join(f"{class_names[classes[row]]} ({n} px)" for row, n in collapsed.items())
    alpha = args.alpha if args.alpha is not None else NAMED_SCHEDULES[args.schedule].alpha
    return (
        f"classpattern {args.command}: warning: the map of {len(collapsed)} class(es) collapsed, with fewer positive "
        f"pixels than --k asks for: {which}; their patterns are partly filler (marked in patterns.png). Rerun with "
        f"a larger --alpha (now {alpha:g}, e.g. {min(1.0, alpha * 2):g}) or a smaller --k."
    )


def run_demo(args: argparse.Namespace) -> int:
    """``classpattern demo``: the digits CNN and all 10 classes (also under ``torchrun``)."""
    prepare_out(args.out)
    torch.manual_seed(args.seed)
    init_distributed("cpu")
    # Rank 0 trains and caches the model if needed; the other ranks then load the cache.
    with main_process_first(), phase("load"):
        model = digits_model(show_progress=show_progress(args) and is_main_process())
        data = load_digits()
    classes = check_job(model, data.search, DIGIT_CLASSES, None, args.k, None, "digits")
    return run_search(
        model,
        data.search,
        data.eval,
        DIGIT_CLASSES,
        classes,
        args,
        {"data": "digits", "model": "SmallCNN (cached)"},
    )


def run_user_search(args: argparse.Namespace) -> int:
    """``classpattern search``: a user's model and data (also under ``torchrun``)."""
    prepare_out(args.out)
    device = parse_device(args.device)
    chosen = parse_classes(args.classes)
    init_distributed(device)
    settings = {"data": args.data, "model": args.model}
    search: Source
    held_out: Source
    with phase("load"):
        model = load_model(args.model, args.weights, device)
        if is_stream_spec(args.data):
            side = args.image_size or FOLDER_SIDE
            search, held_out, names = load_stream(args.data, args.workers, args.max_batch, side)
            probe = probe_split(search)
            settings.update(streamed=True, image_size=side, workers=args.workers, max_batch=args.max_batch)
        else:
            search, held_out, names = load_data(args.data, args.limit, size=args.image_size)
            probe = search
            if args.image_size:
                settings["image_size"] = args.image_size
        classes = check_job(model, probe, names, chosen, args.k, args.model, args.data, args.weights)
    return run_search(model, search, held_out, names, classes, args, settings)


def _accuracy(model: torch.nn.Module, held_out: Source, device: torch.device) -> float:
    """Top-1 accuracy on the held-out images, read batch by batch when they are a stream."""
    if isinstance(held_out, Split):
        return accuracy(model, held_out.images.to(device), held_out.labels.to(device))
    correct = 0
    for images, labels in held_out:
        correct += int((predict(model, images, batch_size=len(images), device=device) == labels).sum())
    return correct / len(held_out)

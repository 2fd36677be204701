"""The ``classpattern`` parser and entry point; each subcommand lives in its own module.

Faults: every expected fault (bad arguments, unusable files, missing data or device, a
user's model that fails to build or run, checkpoints of another run) is reported as one
line on stderr with exit status 2, before any work where it can be found early; ``--debug``
prints the traceback before that line. Anything else is a bug, reported with its
traceback and exit status 1. Ctrl-C stops with exit status 130 (``demo`` and ``search``
keep their finished chunks: rerun with ``--resume``).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import traceback
import warnings
from typing import Optional, Sequence

from .._utils import recording_phases, set_threads, thread_scope, thread_setting
from ..attr import NAMED_SCHEDULES
from ..pipeline import DEFAULT_CHUNK_SIZE, DEFAULT_FORWARD_BATCH
from ._arguments import (
    MODEL_HELP,
    WEIGHTS_HELP,
    Parser,
    add_run_flags,
    non_negative_int,
    pattern_size,
    positive_float,
    positive_int,
    seed_int,
)
from ._errors import EXIT_INTERRUPTED, EXIT_USAGE, EXPECTED, one_line
from ._scan import add_scan_parser, run_scan
from ._search import CHECKPOINTS, run_demo, run_user_search

EXIT_STATUS = (
    "Exit status: 0 done; 2 bad input (one line on stderr; --debug adds the traceback); 1 an unexpected "
    "error (a bug: traceback); 130 interrupted."
)


SEARCH_TIME = (
    "How long it takes (one class, default schedule, a fresh process on a 2-core x86_64 CPU): a torchvision "
    "ResNet-18 on a folder of 1,000 images (500 held out) about 36 s at --image-size 64 and 17 s at 32 on a calm "
    "machine, 52 s at 64 with another process keeping a core busy; the digits model about 7 s (17 s for all ten "
    "classes); at 224 about 6 minutes per class with one thread, mostly the measurement (--power-images M caps "
    "it). --threads auto (the default) measures whether one thread or all cores is faster; with torch's own "
    "two threads the busy run took 107 s. No GPU figure has been measured yet "
    "(python -m benchmarks.bench_imagenet --device cuda measures one)."
)


def _search_options(parser: argparse.ArgumentParser, default_out: str) -> None:
    parser.add_argument(
        "--k", type=pattern_size, default=0.05, help="pattern size: pixels (int) or fraction (float), default 0.05"
    )
    parser.add_argument(
        "--out",
        default=default_out,
        help="output folder, checked writable before any work and created when the run first writes "
        f"(default {default_out}); report.json, report.html and patterns.png appear together, checkpoints go "
        f"to OUT/{CHECKPOINTS}/",
    )
    parser.add_argument("--seed", type=seed_int, default=0, help="seed of the search, 0..2**32 - 1 (default 0)")
    parser.add_argument("--schedule", choices=tuple(NAMED_SCHEDULES), default="default", help="search schedule")
    parser.add_argument(
        "--alpha",
        type=positive_float,
        help="weight of the class term of the search, in (0, 1]; 1 - alpha weighs the map's size (default: the "
        "schedule's, 0.2). Raise it when a map collapses (fewer positive pixels than --k asks for)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help=f"continue an interrupted run from OUT/{CHECKPOINTS}/ (same arguments; refused if they differ); "
        "without it a run starts afresh and deletes old checkpoints",
    )
    parser.add_argument(
        "--chunk-size",
        type=positive_int,
        default=DEFAULT_CHUNK_SIZE,
        help=f"classes searched (and checkpointed) at a time (default {DEFAULT_CHUNK_SIZE})",
    )
    parser.add_argument(
        "--power-images",
        type=positive_int,
        metavar="M",
        help="measure predictive power on M held-out images of each class (seeded), with its 95%% confidence "
        "interval in the table and report (default: all held-out images, no interval)",
    )
    add_run_flags(parser)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``classpattern`` command.

    Returns:
        The parser; its errors are one line on stderr with exit status 2.
    """
    parser = Parser(
        prog="classpattern",
        description="Class-wise patterns of image classifiers (Captum).",
        epilog=EXIT_STATUS,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="train (or load) the digits CNN and search all 10 class patterns",
        description="Train (or load from the cache) the digits CNN and search all 10 class patterns.",
        epilog=EXIT_STATUS,
    )
    _search_options(demo, "classpattern_output")
    # The demo is the reference run whose table the README quotes: one thread, so it
    # reproduces to the last digit on any machine (and one thread is the faster for its CNN).
    demo.set_defaults(threads=1)
    search = commands.add_parser(
        "search",
        help="search class patterns of your own model and data",
        description="Search class patterns of your model on your data. The output folder, device, classes, model, "
        "weights and data are checked before any search; faults are reported in one line.",
        epilog=SEARCH_TIME + " " + EXIT_STATUS,
    )
    search.add_argument("--model", required=True, help=MODEL_HELP)
    search.add_argument("--weights", help=WEIGHTS_HELP)
    search.add_argument(
        "--data",
        default="digits",
        help="digits | cifar10:PATH | folder:PATH (read into memory, at most --limit images) | DIR, an image folder "
        "DIR/<class>/<image> streamed by a DataLoader, never read whole (default digits)",
    )
    search.add_argument(
        "--classes",
        help="comma-separated class numbers or names (folder names), e.g. 0,3,7 or cat,dog; numbers follow the "
        "sorted class names, and the run prints the number = name mapping (default: all)",
    )
    search.add_argument(
        "--device", default="cpu", help="torch device, e.g. cuda:0; checked before any work (default cpu)"
    )
    search.add_argument(
        "--limit",
        type=positive_int,
        default=2000,
        help="images read from cifar10/folder data, the first of each class in equal shares (default 2000)",
    )
    search.add_argument(
        "--workers", type=non_negative_int, default=0, help="DataLoader workers reading --data DIR (default 0)"
    )
    search.add_argument(
        "--image-size",
        type=positive_int,
        help="side of the images: a folder's are resized and centre-cropped to it (default 224), cifar10's resized "
        "(default 32), the digits drawn at it (default 32)",
    )
    search.add_argument(
        "--max-batch",
        type=positive_int,
        default=DEFAULT_FORWARD_BATCH,
        help="with --data DIR: the most images per model call, search composites included (default "
        f"{DEFAULT_FORWARD_BATCH}; in-memory data always uses {DEFAULT_FORWARD_BATCH})",
    )
    _search_options(search, "classpattern_output")
    add_scan_parser(commands)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``classpattern`` command.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 done (``scan --fail-on-flag``: 1 when a class is flagged), 2 an
        expected fault (one line on stderr), 130 interrupted. Unexpected exceptions propagate
        with their traceback (exit status 1 from the ``classpattern`` command).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.command_line = shlex.join(["classpattern", *argv])
    handlers = {"demo": run_demo, "search": run_user_search, "scan": run_scan}
    prefix = f"classpattern {args.command}"
    caller_threads = thread_setting()
    try:
        set_threads(args.threads)
        # On the CPU, one thread until the first loop has measured: on a busy machine even loading
        # pays for two. A GPU run leaves torch's count alone (its loops are not tuned).
        start = 1 if str(getattr(args, "device", "cpu")).startswith("cpu") else None
        with warnings.catch_warnings(), recording_phases() as args.phases, thread_scope(start=start):
            warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients")
            return handlers[args.command](args)
    except KeyboardInterrupt:
        if args.debug:
            traceback.print_exc()
        hint = "; finished chunks are kept: rerun with --resume" if args.command != "scan" else ""
        print(f"{prefix}: interrupted{hint}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except EXPECTED as error:
        if args.debug:
            traceback.print_exc()
        print(one_line(f"{prefix}: error: {_message(error)}", limit=1000), file=sys.stderr)
        return EXIT_USAGE
    finally:
        set_threads(caller_threads)


def _message(error: BaseException) -> str:
    """The error's message; for an error raised in a DataLoader worker, the worker's own last line.

    PyTorch re-raises a worker's error with the worker's whole traceback as its message; its
    last line (e.g. ``ValueError: cannot read the image ...``) is what the user needs.
    """
    text = str(error)
    if "Original Traceback" in text:
        lines = [line for line in text.strip().splitlines() if line.strip()]
        return lines[-1].strip() if lines else text
    return text

"""The ``classpattern`` parser and entry point; each subcommand lives in its own module."""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Optional, Sequence

from ._scan import add_scan_parser, run_scan
from ._search import run_demo, run_user_search


def _parse_k(text: str):
    value = float(text)
    return value if "." in text or "e" in text.lower() else int(value)


def _common(parser: argparse.ArgumentParser, default_out: str) -> None:
    parser.add_argument(
        "--k", type=_parse_k, default=0.05, help="pattern size: pixels (int) or fraction (float), default 0.05"
    )
    parser.add_argument("--out", default=default_out, help=f"output folder (default {default_out})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the search (default 0)")
    parser.add_argument("--schedule", choices=("default", "paper"), default="default", help="search schedule")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``classpattern`` command."""
    parser = argparse.ArgumentParser(
        prog="classpattern", description="Class-wise patterns of image classifiers (Captum)."
    )
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
    add_scan_parser(commands)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``classpattern`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    handlers = {"demo": run_demo, "search": run_user_search, "scan": run_scan}
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients")
            return handlers[args.command](args)
    except (ValueError, TypeError, FileNotFoundError) as error:
        print(f"classpattern {args.command}: error: {error}", file=sys.stderr)
        return 2

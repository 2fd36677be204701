"""Argument types and the flags every subcommand shares; parse errors as one line."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn, Union

from ._errors import EXIT_USAGE


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (and exit status 2), not usage plus error."""

    def error(self, message: str) -> NoReturn:
        """Report a parse error in one line and exit with status 2."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def pattern_size(text: str) -> Union[int, float]:
    """``--k``: a number of pixels (``51``) or a fraction of the image (``0.05``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a number of pixels (e.g. 51) or a fraction of the image (e.g. 0.05), got {text!r}"
        ) from None
    return value if "." in text or "e" in text.lower() else int(value)


def positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def seed_int(text: str) -> int:
    """``--seed``: an integer in 0..2**32 - 1, the range every entry point takes (see ``check_seed``)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be an integer in 0..4294967295 (2**32 - 1), got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def thread_count(text: str) -> Union[int, str]:
    """``--threads``: ``auto``, ``torch`` or an integer >= 1."""
    if text in ("auto", "torch"):
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be auto, torch or a positive integer, got {text!r}")
    return value


MODEL_HELP = (
    "module:factory returning the model, e.g. mypkg.nets:build; or the path of a BackdoorBench attack_result.pt, "
    "loaded with its architecture (preactresnet18 or the torchvision ones BackdoorBench uses), weights and "
    "normalisation"
)
"""The help of ``--model`` (``search`` and ``scan``)."""

WEIGHTS_HELP = (
    "weights loaded into --model: a .safetensors file, a state dict saved with torch.save, or a checkpoint "
    "holding it under 'state_dict', 'model_state_dict', 'model' or 'net' (a 'module.' prefix is removed); with a "
    "BackdoorBench --model, another BackdoorBench result file of the same architecture"
)
"""The help of ``--weights`` (``search`` and ``scan``)."""


def show_progress(args: argparse.Namespace) -> bool:
    """Whether to draw progress bars: not under ``--no-progress``, and only when stderr is a terminal."""
    return not args.no_progress and sys.stderr.isatty()


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    """``--no-progress`` and ``--debug``, which every subcommand takes."""
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="hide progress bars (they are drawn on stderr, and only when it is a terminal)",
    )
    parser.add_argument(
        "--threads",
        type=thread_count,
        default="auto",
        help="torch threads of the search and measurement loops: auto (default) times one thread against all "
        "cores on the first steps of each loop and keeps the faster, which on a busy machine is often one; "
        "N: N threads; torch: torch's own count. OMP_NUM_THREADS or MKL_NUM_THREADS, when set, fix the count. "
        "demo defaults to 1, so that its table reproduces exactly",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="on an error, print the full traceback before the one-line message (for bug reports)",
    )

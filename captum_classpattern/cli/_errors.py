"""The faults the command line expects, and how it reports them: one line on stderr, exit status 2."""

from __future__ import annotations

from typing import Sequence

import torch

EXIT_USAGE = 2
"""Exit status of an expected fault (bad arguments, unusable files, missing data or device)."""

EXIT_INTERRUPTED = 130
"""Exit status when the run is interrupted (Ctrl-C)."""

DEBUG_HINT = "--debug shows the traceback"


class UsageError(Exception):
    """An expected fault in what the user passed: the message names the argument and what to do."""


EXPECTED = (UsageError, ValueError, TypeError, OSError, torch.cuda.OutOfMemoryError)
"""Exceptions turned into one line: the package's own checks raise ValueError/TypeError with a
message saying what to change, OSError is the file system's verdict, and running out of GPU
memory is the size of the job. Anything else is unexpected (a bug in the package or in the
model's code) and keeps its traceback."""


def one_line(text: object, limit: int = 600) -> str:
    """``str(text)`` on a single line (whitespace runs become one space), cut to ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def listing(items: Sequence[str], limit: int = 5) -> str:
    """``['a', 'b', ... and 7 more]``: a list short enough for a one-line message."""
    shown = ", ".join(repr(item) for item in items[:limit])
    more = f", ... and {len(items) - limit} more" if len(items) > limit else ""
    return f"[{shown}{more}]"

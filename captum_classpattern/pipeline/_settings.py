"""The grouped arguments of :func:`~captum_classpattern.pipeline.search_classes`, and its older keywords."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, Optional, Union

from .._utils import Replaceable, check_choice, refuse_both
from ..attr import CANVAS_STRATEGIES, NAMED_SCHEDULES, Budget, SearchSchedule


@dataclass(frozen=True)
class ClassSearchSettings(Replaceable):
    """How :func:`~captum_classpattern.pipeline.search_classes` searches and measures each class.

    Attributes:
        k: pattern size (pixels, or a fraction of the image; default 0.05).
        schedule: the search schedule, a :class:`~captum_classpattern.attr.SearchSchedule`
            or one of :data:`~captum_classpattern.attr.NAMED_SCHEDULES` (default: the
            default schedule).
        canvas_strategy: how canvases are chosen (see
            :func:`~captum_classpattern.attr.select_canvases`; default ``"confident"``).

    Raises:
        ValueError: an unknown schedule name or canvas strategy.

    Example:
        >>> search_classes(model, data.search, data.eval, range(10), ClassSearchSettings(k=0.02, schedule="fast"))
    """

    k: Budget = 0.05
    schedule: Union[str, SearchSchedule, None] = None
    canvas_strategy: str = "confident"

    def __post_init__(self) -> None:
        named = isinstance(self.schedule, str) and self.schedule in NAMED_SCHEDULES
        if not (self.schedule is None or isinstance(self.schedule, SearchSchedule) or named):
            raise ValueError(
                f"schedule must be a SearchSchedule or one of {sorted(NAMED_SCHEDULES)}, got {self.schedule!r}."
            )
        check_choice(self.canvas_strategy, CANVAS_STRATEGIES, "canvas_strategy")


@dataclass(frozen=True)
class Chunking(Replaceable):
    """How :func:`~captum_classpattern.pipeline.search_classes` splits its classes and checkpoints them.

    Attributes:
        checkpoint_dir: a folder each finished chunk is written to at once (default: none).
        chunk_size: classes searched per call (default: all at once, or
            :data:`~captum_classpattern.pipeline.DEFAULT_CHUNK_SIZE` with
            ``checkpoint_dir``); smaller chunks lose less work when a run is killed and use
            less memory.
        resume: load the finished chunks found in ``checkpoint_dir`` instead of searching
            them again (default ``False``).

    They are checked when the search starts (the folder against the file system).

    Example:
        >>> search_classes(model, data.search, data.eval, range(1000), chunks=Chunking("ckpt", resume=True))
    """

    checkpoint_dir: Union[str, os.PathLike, None] = None
    chunk_size: Optional[int] = None
    resume: bool = False


OLDER_SEARCH_KEYWORDS = ("k", "schedule", "canvas_strategy", "checkpoint_dir", "chunk_size", "resume")
"""``search_classes``'s keywords before they were grouped into ``settings`` and ``chunks``."""


def fold_search_keywords(older: Dict[str, Any], arguments: Dict[str, Any]) -> None:
    """Move ``search_classes``'s older keywords into ``settings`` and ``chunks``.

    Raises:
        TypeError: a group given both ways.
    """
    refuse_both(older, arguments, ("k", "schedule", "canvas_strategy"), "settings")
    refuse_both(older, arguments, ("checkpoint_dir", "chunk_size", "resume"), "chunks")
    searched = {name: older[name] for name in ("k", "schedule", "canvas_strategy") if name in older}
    if searched:
        arguments["settings"] = ClassSearchSettings(**searched)
    chunked = {name: older[name] for name in ("checkpoint_dir", "chunk_size", "resume") if name in older}
    if chunked:
        arguments["chunks"] = Chunking(**chunked)

"""The class-pattern attribution: :class:`ClassPattern`, its schedules, search sets, canvases and patterns.

Every pattern search of the package runs one loop (:func:`search_patterns`, behind
:class:`ClassPattern` too) against a :class:`SearchObjective`: :class:`StampObjective`
and :class:`BlendObjective` are the backdoor scan's.
"""

from ._candidates import CANVAS_STRATEGIES
from ._canvas import select_canvases
from ._class_pattern import ClassPattern
from ._composite import stamp_loss
from ._engine import SearchObjective, SearchStats, SearchStep, search_batches, search_patterns
from ._forward_settings import ForwardSettings
from ._image_stream import ImageStream
from ._objectives import BlendObjective, StampObjective
from ._pattern import (
    Budget,
    Pattern,
    pixel_budget,
    pixel_scores,
    random_pattern,
    top_k_mask,
    top_k_pattern,
)
from ._schedule import (
    DEFAULT_SCHEDULE,
    FAST_SCHEDULE,
    NAMED_SCHEDULES,
    PAPER_IMAGENET_SCHEDULE,
    PAPER_SCHEDULE,
    SearchSchedule,
)
from ._search_data import IterableSearchSet, SearchSet, StreamSearchSet

__all__ = [
    "ClassPattern",
    "SearchStats",
    "SearchSchedule",
    "DEFAULT_SCHEDULE",
    "FAST_SCHEDULE",
    "NAMED_SCHEDULES",
    "PAPER_SCHEDULE",
    "PAPER_IMAGENET_SCHEDULE",
    "ForwardSettings",
    "search_patterns",
    "SearchObjective",
    "SearchStep",
    "StampObjective",
    "BlendObjective",
    "stamp_loss",
    "search_batches",
    "SearchSet",
    "ImageStream",
    "StreamSearchSet",
    "IterableSearchSet",
    "select_canvases",
    "CANVAS_STRATEGIES",
    "Pattern",
    "Budget",
    "top_k_pattern",
    "top_k_mask",
    "random_pattern",
    "pixel_budget",
    "pixel_scores",
]

"""The class-pattern attribution: :class:`ClassPattern`, its schedules, search sets, canvases and patterns."""

from ._candidates import CANVAS_STRATEGIES
from ._canvas import select_canvases
from ._class_pattern import ClassPattern, SearchStats
from ._composite import canvas_mean_cross_entropy
from ._image_stream import ImageStream
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
from ._search_data import (
    IterableSearchSet,
    SearchSet,
    StepBatch,
    StreamSearchSet,
    TensorSearchSet,
    make_search_set,
)

__all__ = [
    "ClassPattern",
    "SearchStats",
    "SearchSchedule",
    "DEFAULT_SCHEDULE",
    "FAST_SCHEDULE",
    "NAMED_SCHEDULES",
    "PAPER_SCHEDULE",
    "PAPER_IMAGENET_SCHEDULE",
    "make_search_set",
    "SearchSet",
    "StepBatch",
    "TensorSearchSet",
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
    "canvas_mean_cross_entropy",
]

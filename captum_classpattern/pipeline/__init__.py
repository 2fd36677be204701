"""Searching many classes: one call that searches, measures and reports, sharded over processes under ``torchrun``."""

from .._utils import recording_phases, set_threads, thread_report
from ._budget import PowerSample
from ._distributed import (
    all_gather,
    barrier,
    init_distributed,
    is_main_process,
    launched_with_several_processes,
    local_device,
    main_process_first,
    shard,
    world,
)
from ._report import ClassReport, SearchReport
from ._results import SearchOutcome
from ._search import DEFAULT_CHUNK_SIZE, DEFAULT_FORWARD_BATCH, search_classes
from ._settings import Chunking, ClassSearchSettings

__all__ = [
    "search_classes",
    "ClassSearchSettings",
    "Chunking",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_FORWARD_BATCH",
    "PowerSample",
    "SearchOutcome",
    "SearchReport",
    "ClassReport",
    "init_distributed",
    "is_main_process",
    "shard",
    "world",
    "all_gather",
    "barrier",
    "main_process_first",
    "local_device",
    "launched_with_several_processes",
    "set_threads",
    "thread_report",
    "recording_phases",
]

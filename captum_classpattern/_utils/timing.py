"""Phase timers: where a run's seconds went (loading, canvas choice, search, measurement, ...)."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Dict, Iterator, List

_local = threading.local()


def _recorders() -> List[Dict[str, float]]:
    if not hasattr(_local, "recorders"):
        _local.recorders = []
    return _local.recorders


@contextmanager
def recording_phases() -> Iterator[Dict[str, float]]:
    """Collect the seconds of every :func:`phase` run inside the block, by name.

    Yields:
        A dict phase name -> seconds, filled as the phases end (phases inside phases are
        counted in both).

    Example:
        >>> with recording_phases() as seconds:
        ...     outcome = search_classes(model, data.search, data.eval, range(10))
        >>> seconds  # {'canvas choice': 0.4, 'search': 12.1, 'measurement': 0.6, 'baselines': 1.1}
    """
    seconds: Dict[str, float] = {}
    _recorders().append(seconds)
    try:
        yield seconds
    finally:
        _recorders().remove(seconds)


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Count the block's wall time under ``name`` in every recording open in this thread."""
    began = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - began
        for seconds in _recorders():
            seconds[name] = seconds.get(name, 0.0) + elapsed

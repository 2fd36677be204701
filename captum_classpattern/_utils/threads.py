"""The thread policy: how many intra-op threads each kind of step in the package's loops uses.

Torch starts one intra-op thread per physical core. On small steps (a search step sends a
handful of composites through the model) those threads mostly wait for each other, and
when another process shares the cores they spin against it: a step can become 5x to 30x
slower than on one thread. On a calm machine the same threads make a step up to about 1.5x
faster. Neither count is right everywhere, so the package measures: each kind of work (a
loop's steps of one shape, one model) starts on the count the last measured kind chose (at
first: one thread unless the machine's cores are idle, read from ``/proc/stat``), and once
it has run a few steps, times one thread against the available threads and keeps the
faster, trying the other again now and then (sooner when its steps slow down) so that a
machine that becomes busy or calm is followed. Loops too short to measure cost nothing.

The user's explicit choice always wins: ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` in the
environment, a ``torch.set_num_threads`` call that changed torch's default count, or
:func:`set_threads` (the command line's ``--threads``). Deterministic algorithms
(``torch.use_deterministic_algorithms(True)``) switch the policy off as well: thread counts
round differently, in the last bits.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import torch
from torch import Tensor

EXPLICIT_ENVIRONMENT = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
"""Environment variables that fix torch's thread count; when either is set the policy stands aside."""

TIMED_STEPS = 2
"""Timed steps per thread count while trying counts (the fastest is kept)."""

GIVE_UP = 2.0
"""A count whose first timed step is this many times slower than the best so far is not timed again."""

PREFER_FEWER = 0.05
"""More threads are kept only when they are more than this share faster (fewer threads weather a busy machine)."""

PROBE_SHARE = 0.03
"""Trying the other counts again costs at most about this share of a kind's time."""

DRIFT = 1.5
"""The chosen count is tried again sooner when its recent steps are this many times slower than measured..."""

DRIFT_SHARE = 0.2
"""...as soon as trying costs at most about this share of the time since the last try (a noisy machine's
slow steps must not make the policy try a slow count over and over)."""

FIRST_TRY_STEPS = 16
"""Steps a kind runs on its starting count before the counts are timed (shorter loops never pay for trying)."""

PRIOR_SECONDS = 30.0
"""How long the idle-core reading that picks the starting count is trusted."""

_MAX_KINDS = 64

Setting = Union[int, str, None]


def physical_cores() -> int:
    """The physical cores of this machine, the count torch starts with (``os.cpu_count()`` when unknown)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cores = set()
            physical = core = ""
            for line in info:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "physical id":
                    physical = value.strip()
                elif key == "core id":
                    core = value.strip()
                    cores.add((physical, core))
        if cores:
            return len(cores)
    except OSError:
        pass
    return os.cpu_count() or 1


_AT_IMPORT = torch.get_num_threads()
# Torch's own count when this package was imported: a different count now (or already then)
# means the user called torch.set_num_threads.
_TORCH_DEFAULT = physical_cores()
_setting: Setting = None
_kinds: OrderedDict[Tuple[Any, ...], StepTuner] = OrderedDict()
_lock = threading.Lock()
_last_measured: Optional[int] = None
_prior: Optional[Tuple[int, float]] = None


def set_threads(setting: Setting) -> None:
    """Choose how many intra-op threads the package's loops use.

    Args:
        setting: ``None`` or ``"auto"``: the measured policy (the default; it stands aside
            when the environment or ``torch.set_num_threads`` fixed the count); an int >= 1:
            that many threads in every loop; ``"torch"``: leave torch's count as it is.

    Raises:
        ValueError: an int below 1 or another string.
        TypeError: a setting of another type.

    Example:
        >>> set_threads(1)        # every search step and measurement on one thread
        >>> set_threads("auto")   # back to the measured policy
    """
    global _setting
    if isinstance(setting, bool) or not isinstance(setting, (int, str, type(None))):
        raise TypeError(f"threads must be an int, 'auto', 'torch' or None, got {type(setting).__name__}.")
    if isinstance(setting, int) and setting < 1:
        raise ValueError(f"threads must be at least 1, got {setting}.")
    if isinstance(setting, str) and setting not in ("auto", "torch"):
        raise ValueError(f"threads must be an int >= 1, 'auto' or 'torch', got {setting!r}.")
    _setting = None if setting == "auto" else setting
    forget()


def forget() -> None:
    """Forget every measured choice (the next steps start from the machine's idle cores)."""
    global _last_measured, _prior
    with _lock:
        _kinds.clear()
        _last_measured = None
        _prior = None


def thread_setting() -> Setting:
    """The setting :func:`set_threads` was last given (``None``: the measured policy)."""
    return _setting


def explicit_threads() -> Optional[str]:
    """Why the measured policy stands aside now (``None`` when it decides)."""
    if isinstance(_setting, int):
        return f"set_threads({_setting})"
    if _setting == "torch":
        return "set_threads('torch')"
    for name in EXPLICIT_ENVIRONMENT:
        if os.environ.get(name):
            return f"{name}={os.environ[name]}"
    current = torch.get_num_threads()
    if current != _AT_IMPORT or _AT_IMPORT != _TORCH_DEFAULT:
        return f"torch.set_num_threads({current})"
    if torch.are_deterministic_algorithms_enabled():
        return "torch.use_deterministic_algorithms(True)"
    return None


class StepTuner:
    """The thread count for one kind of step, chosen by timing steps of that kind.

    Call :meth:`threads` for the count of the next step and :meth:`record` with the seconds
    it took. A kind starts on ``start`` (the count the last measured kind chose, else the
    machine's idle cores, :func:`idle_cores`), so a short loop pays nothing for trying. The
    first step only warms up (allocations, kernel choice). After :data:`FIRST_TRY_STEPS`
    steps each candidate count is timed for :data:`TIMED_STEPS` steps (a count much slower
    than the best is dropped after one), the fastest is kept (fewer threads unless more are
    clearly faster), and the candidates are tried again once the chosen count has run long
    enough that trying costs little (:data:`PROBE_SHARE`; sooner, :data:`DRIFT_SHARE`, when
    its steps slowed down).

    Args:
        available: the most threads (torch's count for the caller).
        start: the count the kind starts on.
    """

    def __init__(self, available: int, start: int) -> None:
        counts = {1, available} | ({available // 2} if available >= 4 else set())
        self.candidates: List[int] = sorted(counts)
        self.choice = min(max(start, 1), available)
        self.scores: Dict[int, float] = {}
        self.samples: List[float] = []
        self.queue: List[int] = []
        self.warm = False
        self.recent = 0.0
        self.since_probe = 0.0
        self.probe_cost: Optional[float] = None  # unknown until the counts have been timed
        self.steps = 0
        self.measured = False

    def threads(self) -> int:
        """The thread count for the next step."""
        return self.queue[0] if self.queue else self.choice

    def record(self, threads: int, seconds: float) -> None:
        """Note that a step on ``threads`` threads took ``seconds``."""
        self.steps += 1
        if not self.warm:
            self.warm = True
            return
        if self.queue:
            self._timed(seconds)
            return
        self.since_probe += seconds
        self.recent = seconds if self.recent == 0.0 else 0.8 * self.recent + 0.2 * seconds
        if len(self.candidates) == 1:
            return
        if self.probe_cost is None:
            if self.steps > FIRST_TRY_STEPS:
                self._probe(first=self.choice)
            return
        drifted = self.recent > DRIFT * self.scores[self.choice]
        share = DRIFT_SHARE if drifted else PROBE_SHARE
        if self.since_probe * share > self.probe_cost:
            self._probe(first=self.choice)

    def _probe(self, first: int) -> None:
        self.queue = [first] + [count for count in self.candidates if count != first]
        self.scores, self.samples = {}, []

    def _timed(self, seconds: float) -> None:
        self.samples.append(seconds)
        best = min(self.scores.values(), default=None)
        if len(self.samples) < TIMED_STEPS and (best is None or seconds <= GIVE_UP * best):
            return
        self.scores[self.queue.pop(0)] = min(self.samples)
        self.samples = []
        if not self.queue:
            self._choose()

    def _choose(self) -> None:
        fastest = min(self.scores.values())
        self.choice = min(count for count, score in self.scores.items() if score <= fastest * (1 + PREFER_FEWER))
        self.recent = self.scores[self.choice]
        self.measured = True
        # What trying the other counts cost this time bounds how soon they are tried again.
        self.probe_cost = sum(score for count, score in self.scores.items() if count != self.choice) * TIMED_STEPS
        self.since_probe = 0.0


def idle_cores(interval: float = 0.05) -> Optional[float]:
    """How many cores other processes left idle over ``interval`` seconds (``None`` where unknown).

    Read from ``/proc/stat`` (Linux) while this thread sleeps, so the process's own work does
    not count.
    """

    def totals() -> List[int]:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = stat.readline().split()[1:]
        return [int(value) for value in fields]

    try:
        before = totals()
        time.sleep(interval)
        after = totals()
    except (OSError, ValueError):
        return None
    spent = [b - a for a, b in zip(before, after)]
    elapsed = sum(spent)
    if elapsed <= 0:
        return None
    idle = spent[3] + (spent[4] if len(spent) > 4 else 0)  # idle and iowait
    return (os.cpu_count() or 1) * idle / elapsed


def _starting_count(available: int) -> int:
    """The count a new kind starts on: the last measured choice, else one thread unless the cores are idle."""
    global _prior
    if _last_measured is not None:
        return _last_measured
    if _prior is None or time.monotonic() - _prior[1] > PRIOR_SECONDS:
        idle = idle_cores()
        _prior = (available if idle is None or idle >= available - 0.5 else 1, time.monotonic())
    return _prior[0]


class _Scope(threading.local):
    """The open :func:`thread_scope` of this thread: its depth, the caller's count and who decides."""

    depth = 0
    caller = 1
    explicit: Optional[str] = None


_scope = _Scope()


@contextmanager
def thread_scope(start: Optional[int] = None) -> Iterator[None]:
    """Keep the counts the policy chooses between the steps of the block; the caller's count comes back after.

    Between two timed steps a loop does other tensor work (stamping patterns, the map's
    update, choosing the next images); on a busy machine every parallel operation of it
    pays the same toll as the model, so it runs with the count the last step chose. The
    decision whether the user fixed the count is taken once, on entering the outermost
    scope. Scopes nest; only the outermost one acts.

    Args:
        start: the count to begin with, when the policy decides (the command line begins
            with one thread; the first loop then measures).
    """
    outermost = _scope.depth == 0
    if outermost:
        _scope.caller = torch.get_num_threads()
        _scope.explicit = explicit_threads()
    _scope.depth += 1
    try:
        if outermost:
            first = _setting if isinstance(_setting, int) else (start if _scope.explicit is None else None)
            if first is not None and first != _scope.caller:
                torch.set_num_threads(first)
        yield
    finally:
        _scope.depth -= 1
        if outermost and torch.get_num_threads() != _scope.caller:
            torch.set_num_threads(_scope.caller)


@contextmanager
def tuned_threads(kind: str, work: Any, owner: Any = None) -> Iterator[None]:
    """Run one step of a loop with the thread count the policy chooses for steps like it.

    Steps of a kind are told apart by ``kind``, ``owner``, the dtype and shape of ``work``
    with its first (batch) dimension rounded down to a power of two, and are timed per row,
    so that the ragged batches of a measurement share what was learnt. Inside a
    :func:`thread_scope` the count stays set after the step (for the loop's other work);
    outside one, torch's count is restored when the step ends.

    Args:
        kind: names the loop (``"search"``, ``"predict"``, ...).
        work: the step's input tensor: its shape and dtype tell steps of like cost apart,
            its device whether threads matter at all.
        owner: the model (or other object) whose steps these are.
    """
    if not isinstance(work, Tensor) or work.device.type != "cpu" or _setting == "torch":
        yield
        return
    scoped = _scope.depth > 0
    caller = _scope.caller if scoped else torch.get_num_threads()
    reason = _scope.explicit if scoped else explicit_threads()
    if reason is not None:
        with _threads(_setting if isinstance(_setting, int) else caller, caller, scoped):
            yield
        return
    if caller == 1:  # nothing to choose between
        yield
        return
    rows = max(1, int(work.shape[0])) if work.dim() else 1
    bucket = 1 << (rows.bit_length() - 1)
    key = (kind, (bucket,) + tuple(work.shape[1:]), work.dtype, id(owner), caller)
    with _lock:
        tuner = _kinds.get(key)
        if tuner is None:
            tuner = _kinds[key] = StepTuner(caller, _starting_count(caller))
            while len(_kinds) > _MAX_KINDS:
                _kinds.popitem(last=False)
        count = tuner.threads()
    with _threads(count, caller, scoped):
        began = time.perf_counter()
        yield
        seconds = time.perf_counter() - began
    global _last_measured
    with _lock:
        tuner.record(count, seconds / rows)
        if tuner.measured and not tuner.queue:
            _last_measured = tuner.choice


@contextmanager
def _threads(count: int, caller: int, keep: bool) -> Iterator[None]:
    """Torch's count set to ``count`` for the block; back to ``caller`` after it unless ``keep``."""
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        if not keep and torch.get_num_threads() != caller:
            torch.set_num_threads(caller)


def thread_report() -> Dict[str, Any]:
    """The policy's state, for reports: who decides, and each kind of step's chosen count.

    Returns:
        ``{"policy": "measured" | <the explicit setting>, "kinds": {label: {"threads": n,
        "steps": count, "ms_per_row": {threads: ms}}}}``, a kind labelled by its loop and
        its step's shape (the batch rounded down to a power of two); the same kind of
        several models is listed once.
    """
    reason = _scope.explicit if _scope.depth > 0 else explicit_threads()
    kinds: Dict[str, Any] = {}
    with _lock:
        for (kind, shape, _, _, _), tuner in _kinds.items():
            rows = str(shape[0]) if shape[0] == 1 else f"{shape[0]}-{2 * shape[0] - 1}"
            label = f"{kind} {'x'.join([rows, *map(str, shape[1:])])}"
            entry = kinds.setdefault(label, {"threads": tuner.threads(), "steps": 0, "ms_per_row": {}})
            entry["steps"] += tuner.steps
            entry["ms_per_row"].update({str(n): round(s * 1000, 3) for n, s in tuner.scores.items()})
    return {"policy": "measured" if reason is None else reason, "kinds": kinds}

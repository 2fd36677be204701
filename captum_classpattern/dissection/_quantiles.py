"""The first pass of network dissection: each unit's top-quantile threshold.

:class:`TopQuantile` finds each unit's threshold exactly as ``numpy.quantile(method="hazen")``
would, from one buffered pass or, with bounded memory, from histogram refinement passes. It
works on tensors only (no model, no data loading).
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from ._batches import DATA_CHANGED

_HIST_CHUNK = 2**21  # values binned at once in a refinement pass


def _hazen_ranks(count: int, level: float) -> Tuple[int, int, float]:
    """Order statistics (0-based) and weight numpy.quantile(method="hazen") interpolates."""
    virtual = count * level + (0.5 + level * (1 - 0.5 - 0.5)) - 1  # numpy's own expression
    if virtual >= count - 1:
        return count - 1, count - 1, 0.0
    if virtual < 0:
        return 0, 0, 0.0
    lower = math.floor(virtual)
    return lower, lower + 1, virtual - lower


def _lerp(lower: np.ndarray, upper: np.ndarray, weight: float) -> np.ndarray:
    """Interpolate as numpy does, so thresholds agree with ``numpy.quantile`` bit for bit."""
    diff = upper - lower
    if weight >= 0.5:
        return upper - diff * (1 - weight)
    return lower + diff * weight


class TopQuantile:
    """Streams N x U x P blocks of values and finds each unit's (1 - quantile) level.

    Stages: ``scan`` (count, min, max, and a buffer of all values while they fit), then, if
    the buffer was dropped, ``hist`` passes that narrow each unit's interval ``[lo, hi]``
    around the two order statistics it needs, and a ``collect`` pass that keeps only the
    values inside those intervals once they fit, which gives the exact answer again.
    Per-unit state of the units still unresolved lives in ``self.state``, in the order of
    ``self.active``.

    Args:
        quantile: the top share of values above each threshold, in (0, 1).
        exact: ``None`` (buffer while the values fit ``budget``), ``True`` (always buffer),
            ``False`` (never buffer: always refine).
        budget: most values kept in memory.
        bins: histogram bins per unit in a refinement pass.
        max_refine: most refinement passes before thresholds are interpolated.

    Raises:
        ValueError: non-finite values.
        RuntimeError: the values changed between passes.
    """

    def __init__(self, quantile: float, exact: Optional[bool], budget: int, bins: int, max_refine: int) -> None:
        self.level = 1.0 - quantile
        self.exact, self.budget, self.bins, self.max_refine = exact, budget, bins, max_refine
        self.stage, self.done, self.refinements = "scan", False, 0
        self.count = 0
        self.buffer: Optional[List[Tensor]] = [] if exact is not False else None
        self.buffered = 0
        self.minimum: Optional[Tensor] = None
        self.maximum: Optional[Tensor] = None
        self.state: Dict[str, Tensor] = {}

    # -- scan ------------------------------------------------------------------------
    def _update_scan(self, values: Tensor, fresh: bool) -> None:
        low, high = values.amin((0, 2)), values.amax((0, 2))
        if not (bool(torch.isfinite(low).all()) and bool(torch.isfinite(high).all())):
            raise ValueError("the layer produced NaN or infinite activations; dissection needs finite values.")
        self.count += values.shape[0] * values.shape[2]
        self.minimum = low if self.minimum is None else torch.minimum(self.minimum, low)
        self.maximum = high if self.maximum is None else torch.maximum(self.maximum, high)
        if self.buffer is None:
            return
        if self.exact is None and self.buffered + values.numel() > self.budget:
            self.buffer = None  # too large to keep: switch to the bounded-memory refinement
            return
        self.buffer.append(values if fresh else values.clone())  # never keep the caller's tensors
        self.buffered += values.numel()

    def _finish_scan(self) -> None:
        assert self.minimum is not None and self.maximum is not None
        units = self.minimum.shape[0]
        self.ranks = _hazen_ranks(self.count, self.level)
        self.lower = torch.zeros(units, dtype=torch.float64)
        self.upper = torch.zeros(units, dtype=torch.float64)
        self.error = torch.zeros(units, dtype=torch.float64)
        if self.buffer is not None:
            self._select_buffered()
            return
        device = self.minimum.device
        self.active = torch.arange(units, device=device)
        self.state = {
            "lo": self.minimum.clone(),
            "hi": self.maximum.clone(),
            "below": torch.zeros(units, dtype=torch.long, device=device),
            "inside": torch.full((units,), self.count, dtype=torch.long, device=device),
        }
        self._resolve_flat()
        self._next_stage()

    def _select_buffered(self) -> None:
        """Exact order statistics from the buffer, a few units at a time to bound the copy."""
        assert self.buffer is not None
        units = self.lower.shape[0]
        step = max(1, min(units, (self.budget // 8) // max(self.count, 1)))
        taken = self.count - self.ranks[0]  # values at or above the lower order statistic
        for first in range(0, units, step):
            rows = torch.cat(
                [b[:, first : first + step].transpose(0, 1).reshape(-1, b.shape[0] * b.shape[2]) for b in self.buffer],
                1,
            )
            if taken <= self.count // 10:  # top quantiles: a small top-k beats a full selection
                top = rows.topk(taken, dim=1).values
                lower, upper = top[:, taken - 1], top[:, taken - 1 - (self.ranks[1] - self.ranks[0])]
            else:
                lower = rows.kthvalue(self.ranks[0] + 1, dim=1).values
                upper = rows.kthvalue(self.ranks[1] + 1, dim=1).values
            self.lower[first : first + step] = lower.double().cpu()
            self.upper[first : first + step] = upper.double().cpu()
        self.buffer = None
        self.done = True

    # -- bookkeeping -----------------------------------------------------------------
    def _resolve(self, which: Tensor, lower: Tensor, upper: Tensor, error: Optional[Tensor] = None) -> None:
        """Record results for the active units flagged in ``which`` and drop them."""
        if bool(which.any()):
            units = self.active[which].cpu()
            self.lower[units] = lower[which].double().cpu()
            self.upper[units] = upper[which].double().cpu()
            if error is not None:
                self.error[units] = error[which].double().cpu()
        keep = ~which
        self.active = self.active[keep]
        self.state = {key: value[keep] for key, value in self.state.items()}

    def _resolve_flat(self) -> None:
        """Units whose interval is a single number: both order statistics equal it."""
        lo = self.state["lo"]
        self._resolve(lo == self.state["hi"], lo, lo)

    def _next_stage(self) -> None:
        if self.active.numel() == 0:
            self.done = True
            return
        if int(self.state["inside"].sum()) <= self.budget:
            self.stage = "collect"
            self.kept_units: List[Tensor] = []
            self.kept_values: List[Tensor] = []
            return
        if self.refinements >= self.max_refine:
            everything = torch.ones_like(self.active, dtype=torch.bool)
            state = self.state
            self._resolve(everything, state["guess_lower"], state["guess_upper"], state["guess_error"])
            self.done = True
            return
        self.stage = "hist"
        size, device = self.active.numel() * (self.bins + 3), self.active.device
        self.hist = torch.zeros(size, dtype=torch.long, device=device)
        self.bin_min = torch.full((size,), math.inf, device=device)
        self.bin_max = torch.full((size,), -math.inf, device=device)

    def _rows(self, values: Tensor) -> Tensor:
        if self.active.numel() == values.shape[1]:
            return values
        return values.index_select(1, self.active)

    # -- hist ------------------------------------------------------------------------
    def _update_hist(self, values: Tensor) -> None:
        """Per unit, bins in value order: 0 below lo, 1 equal to lo, 2..bins+1 inside, above."""
        rows = self._rows(values)
        # A few images at a time: the temporaries (about 24 bytes a value) stay small.
        step = max(1, _HIST_CHUNK // max(1, rows.shape[1] * rows.shape[2]))
        for first in range(0, rows.shape[0], step):
            self._histogram(rows[first : first + step])

    def _histogram(self, rows: Tensor) -> None:
        lo, hi = self.state["lo"][None, :, None], self.state["hi"][None, :, None]
        # Any monotone bin assignment keeps the rank bookkeeping exact; float32 is enough.
        position = ((rows - lo) * (self.bins / (hi - lo))).floor_().clamp_(0, self.bins - 1).add_(2)
        position.masked_fill_(rows < lo, 0).masked_fill_(rows == lo, 1).masked_fill_(rows > hi, self.bins + 2)
        offsets = torch.arange(rows.shape[1], device=rows.device)[None, :, None] * (self.bins + 3)
        flat = (position.long() + offsets).view(-1)
        flat_values = rows.reshape(-1)
        self.hist += torch.bincount(flat, minlength=self.hist.numel())
        self.bin_min.scatter_reduce_(0, flat, flat_values, "amin")
        self.bin_max.scatter_reduce_(0, flat, flat_values, "amax")

    def _locate(self, rank: int, hist: Tensor, cumulative: Tensor) -> Dict[str, Tensor]:
        """The bin holding order statistic ``rank`` of each unit, its value range and a guess."""
        target = torch.full((hist.shape[0], 1), rank, dtype=cumulative.dtype, device=cumulative.device)
        index = torch.searchsorted(cumulative, target, right=True)
        if bool((index < 1).any()) or bool((index > self.bins + 1).any()):
            raise RuntimeError(DATA_CHANGED)
        before = cumulative.gather(1, index - 1)[:, 0]
        low = self.bin_min.view_as(hist).gather(1, index)[:, 0]
        high = self.bin_max.view_as(hist).gather(1, index)[:, 0]
        size = hist.gather(1, index)[:, 0]
        # Interpolated guess inside the bin, used only if the refinement budget runs out.
        guess = low + (high - low) * ((rank - before).float() + 0.5) / size.float()
        return {
            "index": index[:, 0],
            "before": before,
            "low": low,
            "high": high,
            "guess": torch.minimum(torch.maximum(guess, low), high),
        }

    def _finish_hist(self) -> None:
        self.refinements += 1
        hist = self.hist.view(self.active.numel(), self.bins + 3)
        if not (
            torch.equal(hist[:, 0], self.state["below"]) and torch.equal(hist[:, 1:-1].sum(1), self.state["inside"])
        ):
            raise RuntimeError(DATA_CHANGED)
        cumulative = hist.cumsum(1)
        first = self._locate(self.ranks[0], hist, cumulative)
        last = self._locate(self.ranks[1], hist, cumulative)
        self.state.update(
            lo=first["low"],
            hi=last["high"],
            below=first["before"],
            inside=cumulative.gather(1, last["index"][:, None])[:, 0] - first["before"],
            guess_lower=first["guess"],
            guess_upper=last["guess"],
            guess_error=torch.maximum(first["high"] - first["low"], last["high"] - last["low"]),
        )
        self._resolve_flat()
        self._next_stage()

    # -- collect ---------------------------------------------------------------------
    def _update_collect(self, values: Tensor) -> None:
        """Keep the values inside each unit's interval, unit by unit (4 bytes a value)."""
        rows = self._rows(values).transpose(0, 1).contiguous()  # A x N x P, unit-major
        lo, hi = self.state["lo"][:, None, None], self.state["hi"][:, None, None]
        inside = (rows >= lo) & (rows <= hi)
        # masked_select on a contiguous tensor: no index tensors, the order stays unit-major.
        self.kept_values.append(torch.masked_select(rows, inside))
        self.kept_units.append(inside.sum((1, 2)).cpu())

    def _finish_collect(self) -> None:
        counts = torch.stack(self.kept_units)  # batches x A
        if not torch.equal(counts.sum(0), self.state["inside"].cpu()):
            raise RuntimeError(DATA_CHANGED)
        ends = counts.cumsum(1).numpy()
        starts = ends - counts.numpy()
        below = self.state["below"].cpu().numpy()
        lower = torch.empty(self.active.numel(), device=self.active.device)
        upper = torch.empty_like(lower)
        for unit in range(self.active.numel()):
            segment = torch.cat([kept[s:e] for kept, s, e in zip(self.kept_values, starts[:, unit], ends[:, unit])])
            lower[unit] = segment.kthvalue(int(self.ranks[0] - below[unit]) + 1).values
            upper[unit] = segment.kthvalue(int(self.ranks[1] - below[unit]) + 1).values
        self.kept_units, self.kept_values = [], []
        self._resolve(torch.ones_like(self.active, dtype=torch.bool), lower, upper)
        self.done = True

    # -- driver ----------------------------------------------------------------------
    def update(self, values: Tensor, fresh: bool = True) -> None:
        """Add an N x U x P block (``fresh``: a new tensor that may be kept as it is)."""
        if self.stage == "scan":
            self._update_scan(values, fresh)
        else:
            getattr(self, "_update_" + self.stage)(values)

    def finish_pass(self) -> None:
        """End a pass over the data; sets ``done`` once every threshold is known."""
        getattr(self, "_finish_" + self.stage)()

    def thresholds(self) -> Tuple[np.ndarray, np.ndarray]:
        """Per-unit thresholds (float64) and the bound on their error (0 where exact)."""
        return _lerp(self.lower.numpy(), self.upper.numpy(), self.ranks[2]), self.error.numpy().copy()


def strictly_below(thresholds: np.ndarray, device: torch.device) -> Tensor:
    """float32 ``t`` with ``x > t`` exactly when ``x > threshold`` for every float32 ``x``."""
    as_float = thresholds.astype(np.float32)
    rounded_up = as_float.astype(np.float64) > thresholds
    as_float[rounded_up] = np.nextafter(as_float[rounded_up], np.float32(-np.inf))
    return torch.from_numpy(as_float).to(device)

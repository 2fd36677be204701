"""Network dissection: which concept does each unit (channel) of a layer detect?

The method of Bau, Zhu, Strobelt, Lapedriza, Zhou and Torralba (PNAS 2020), METHOD.md §4:

1. per unit, a threshold at the top ``quantile`` of its activations over every pixel of every
   image, the activation maps being upsampled bilinearly to the masks' resolution first;
2. per unit and concept, the IoU of the thresholded maps with the concept's masks, pooled
   over the data set from integer counts: ``sum |A & M| / sum |A | M|``;
3. a unit's label is its best concept; it is a *detector* when that IoU reaches 0.04.

Everything streams one batch at a time, so memory is bounded by the batch, not the data set
(see :func:`dissect` for the one documented exception, the exact-threshold buffer).
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ._helpers import evaluation_mode, write_atomic

LayerSpec = Union[str, nn.Module]

__all__ = ["DissectionResult", "dissect", "plot_top_activations"]


# ----------------------------------------------------------------------------------------
# Layers, devices, model calls (shared with ablation.py)
# ----------------------------------------------------------------------------------------


def _resolve_layer(model: nn.Module, layer: LayerSpec) -> Tuple[str, nn.Module]:
    """Return ``(dotted name, module)`` for a layer given by name or as a module."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    if isinstance(layer, str):
        try:
            return layer, model.get_submodule(layer)
        except AttributeError:
            names = [name for name, _ in model.named_modules() if name]
            shown = ", ".join(names[:40]) + (f", ... ({len(names)} in all)" if len(names) > 40 else "")
            raise ValueError(
                f"the model has no layer named {layer!r}; pass one of model.named_modules(): {shown}."
            ) from None
    if isinstance(layer, nn.Module):
        for name, module in model.named_modules():
            if module is layer:
                return name or "<model>", module
        raise ValueError("layer is not a submodule of model; pass one of its modules or its dotted name.")
    raise TypeError(f"layer must be a dotted name (str) or an nn.Module, got {type(layer).__name__}.")


def _model_device(model: nn.Module, device: Optional[Union[str, torch.device]]) -> torch.device:
    """The device to run on: ``device`` if given, else the model's, else the CPU."""
    if device is not None:
        return torch.device(device)
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


class _StopForward(Exception):
    """Raised by the capture hook: nothing after the dissected layer needs to run."""


class _LayerTap:
    """Context manager that captures a layer's output; the hook is removed on exit."""

    def __init__(self, module: nn.Module, name: str, stop: bool = True) -> None:
        self.module, self.name, self.stop = module, name, stop
        self.output: Optional[Tensor] = None
        self.handle: Any = None

    def __enter__(self) -> "_LayerTap":
        self.handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.handle.remove()

    def _hook(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if self.output is not None:  # a layer used twice: keep its first call
            return
        self.output = output
        if self.stop:
            raise _StopForward

    def run(self, model: nn.Module, images: Tensor) -> Any:
        """Run ``model`` on ``images`` (up to the layer) and return the layer's output."""
        self.output = None
        try:
            model(images)
        except _StopForward:
            pass
        if self.output is None:
            raise ValueError(f"layer {self.name!r} did not run during the forward pass; pick a layer the model uses.")
        output, self.output = self.output, None
        return output

    def features(self, model: nn.Module, images: Tensor) -> Tensor:
        """Run ``model`` on ``images`` and return the layer's N x C x H x W output."""
        return _check_feature_map(self.run(model, images), self.name)


def _check_feature_map(output: Any, name: str) -> Tensor:
    if not isinstance(output, Tensor):
        raise TypeError(
            f"layer {name!r} returned {type(output).__name__}, not a tensor; dissect a layer whose "
            "output is one N x C x H x W tensor (e.g. a Conv2d or the ReLU after it)."
        )
    if output.dim() != 4:
        raise ValueError(
            f"layer {name!r} outputs shape {tuple(output.shape)}; dissection needs N x C x H x W "
            "feature maps: pick a convolutional layer (or the activation after it)."
        )
    return output


# ----------------------------------------------------------------------------------------
# Reading the data
# ----------------------------------------------------------------------------------------


@dataclass
class _Batch:
    images: Tensor
    masks: Tensor  # N x K x Hm x Wm integer concept ids, 0 = none, < 0 = not annotated
    labels: Optional[Tensor]  # N x num_concepts bool, image-level concepts


def _batches(data: Any, batch_size: int) -> Iterable:
    """Iterate batches: whole tensors are split, map-style data sets go through a DataLoader."""
    if isinstance(data, tuple) and data and all(isinstance(item, Tensor) for item in data):
        count = data[0].shape[0]
        return (tuple(item[start:start + batch_size] for item in data) for start in range(0, count, batch_size))
    if isinstance(data, Dataset):
        return DataLoader(data, batch_size=batch_size, shuffle=False)
    return data


def _parse_batch(batch: Any, index: int) -> _Batch:
    if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
        raise TypeError(
            f"batch {index} is a {type(batch).__name__}; data must yield (images, masks) or "
            "(images, masks, image_labels) tuples."
        )
    images, masks = batch[0], batch[1]
    labels = batch[2] if len(batch) == 3 else None
    if not isinstance(images, Tensor) or images.dim() != 4 or not images.is_floating_point():
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise TypeError(f"batch {index}: images must be a float tensor N x C x H x W, got {shape}.")
    if not isinstance(masks, Tensor) or masks.is_floating_point() or masks.is_complex() or masks.dtype == torch.bool:
        kind = masks.dtype if isinstance(masks, Tensor) else type(masks).__name__
        raise TypeError(
            f"batch {index}: masks must be an integer tensor of concept ids (0 = no concept), got {kind}; "
            "convert with masks.long()."
        )
    if masks.dim() == 3:
        masks = masks.unsqueeze(1)
    if masks.dim() != 4 or masks.shape[0] != images.shape[0]:
        raise ValueError(
            f"batch {index}: masks of shape {tuple(batch[1].shape)} do not fit {images.shape[0]} images; "
            "pass N x H x W (one category) or N x K x H x W (K categories) concept ids."
        )
    if labels is not None:
        if not isinstance(labels, Tensor) or labels.dim() != 2 or labels.shape[0] != images.shape[0]:
            shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
            raise ValueError(
                f"batch {index}: image_labels must be multi-hot N x num_concepts, got {shape} for "
                f"{images.shape[0]} images."
            )
        labels = labels != 0
    return _Batch(images, masks.long(), labels)


class _Layout:
    """What the first pass learns about the data, and the checks that every batch agrees."""

    def __init__(self) -> None:
        self.images = 0
        self.mask_channels = -1
        self.mask_size: Tuple[int, int] = (0, 0)
        self.label_width: Optional[int] = None
        self.max_id = 0
        self.units = 0

    def check(self, batch: _Batch, features: Tensor, index: int) -> None:
        shape = (batch.masks.shape[1], tuple(batch.masks.shape[2:]))
        width = None if batch.labels is None else batch.labels.shape[1]
        if self.images == 0:
            self.mask_channels, self.mask_size = shape[0], shape[1]  # type: ignore[assignment]
            self.label_width, self.units = width, features.shape[1]
        elif shape != (self.mask_channels, self.mask_size) or width != self.label_width:
            raise ValueError(
                f"batch {index}: masks {shape[0]} x {shape[1]} / image_labels width {width} differ from the "
                f"first batch's {self.mask_channels} x {self.mask_size} / {self.label_width}; every batch "
                "needs the same mask categories and resolution (resize masks with nearest-neighbour)."
            )
        self.images += batch.images.shape[0]
        if batch.masks.numel():
            self.max_id = max(self.max_id, int(batch.masks.max()))


# ----------------------------------------------------------------------------------------
# Pass 1: per-unit thresholds (numpy's "hazen" quantile, exact or bounded-memory)
# ----------------------------------------------------------------------------------------


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
    """numpy's interpolation formula, so thresholds agree with numpy.quantile bit for bit."""
    diff = upper - lower
    if weight >= 0.5:
        return upper - diff * (1 - weight)
    return lower + diff * weight


class _TopQuantile:
    """Streams N x U x P blocks of values and finds each unit's (1 - quantile) level.

    Stages: ``scan`` (count, min, max, and a buffer of all values while they fit), then, if
    the buffer was dropped, ``hist`` passes that narrow each unit's interval ``[lo, hi]``
    around the two order statistics it needs, and a ``collect`` pass that keeps only the
    values inside those intervals once they fit, which gives the exact answer again.
    Per-unit state of the units still unresolved lives in ``self.state``, in the order of
    ``self.active``.
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
            rows = torch.cat([b[:, first:first + step].transpose(0, 1).reshape(-1, b.shape[0] * b.shape[2])
                              for b in self.buffer], 1)
            if taken <= self.count // 10:  # top quantiles: a small top-k beats a full selection
                top = rows.topk(taken, dim=1).values
                lower, upper = top[:, taken - 1], top[:, taken - 1 - (self.ranks[1] - self.ranks[0])]
            else:
                lower = rows.kthvalue(self.ranks[0] + 1, dim=1).values
                upper = rows.kthvalue(self.ranks[1] + 1, dim=1).values
            self.lower[first:first + step] = lower.double().cpu()
            self.upper[first:first + step] = upper.double().cpu()
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
            self._histogram(rows[first:first + step])

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
            raise RuntimeError(_CHANGED)
        before = cumulative.gather(1, index - 1)[:, 0]
        low = self.bin_min.view_as(hist).gather(1, index)[:, 0]
        high = self.bin_max.view_as(hist).gather(1, index)[:, 0]
        size = hist.gather(1, index)[:, 0]
        # Interpolated guess inside the bin, used only if the refinement budget runs out.
        guess = low + (high - low) * ((rank - before).float() + 0.5) / size.float()
        return {"index": index[:, 0], "before": before, "low": low, "high": high,
                "guess": torch.minimum(torch.maximum(guess, low), high)}

    def _finish_hist(self) -> None:
        self.refinements += 1
        hist = self.hist.view(self.active.numel(), self.bins + 3)
        if not (torch.equal(hist[:, 0], self.state["below"])
                and torch.equal(hist[:, 1:-1].sum(1), self.state["inside"])):
            raise RuntimeError(_CHANGED)
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
            raise RuntimeError(_CHANGED)
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
        getattr(self, "_finish_" + self.stage)()

    def thresholds(self) -> Tuple[np.ndarray, np.ndarray]:
        """Per-unit thresholds (float64) and the bound on their error (0 where exact)."""
        return _lerp(self.lower.numpy(), self.upper.numpy(), self.ranks[2]), self.error.numpy().copy()


_HIST_CHUNK = 2**21  # values binned at once in a refinement pass

_CHANGED = (
    "the data changed between dissection passes (random augmentation?); dissect needs data "
    "that yields the same images and masks every time it is iterated."
)


def _strictly_below(thresholds: np.ndarray, device: torch.device) -> Tensor:
    """float32 ``t`` with ``x > t`` exactly when ``x > threshold`` for every float32 ``x``."""
    as_float = thresholds.astype(np.float32)
    rounded_up = as_float.astype(np.float64) > thresholds
    as_float[rounded_up] = np.nextafter(as_float[rounded_up], np.float32(-np.inf))
    return torch.from_numpy(as_float).to(device)


# ----------------------------------------------------------------------------------------
# Pass 2: integer intersection and area counts
# ----------------------------------------------------------------------------------------


class _IoUCounts:
    """Integer counts per source (mask channel, or image-level labels) for pooled IoU."""

    def __init__(self, units: int, concepts: int, channels: int, has_labels: bool, device: torch.device) -> None:
        sources = channels + int(has_labels)
        self.units, self.concepts, self.channels = units, concepts, channels
        self.inter = torch.zeros(sources, units * concepts, dtype=torch.long, device=device)
        self.unit_area = torch.zeros(sources, units, dtype=torch.long, device=device)
        self.concept_area = torch.zeros(sources, concepts, dtype=torch.long, device=device)

    def update(self, active: Tensor, masks: Tensor, labels: Optional[Tensor]) -> None:
        """Add one batch: ``active`` N x U x Hm x Wm bool, ``masks`` N x K x Hm x Wm ids."""
        image, unit, row, col = active.nonzero(as_tuple=True)
        active_total = active.sum((0, 2, 3))
        for channel in range(self.channels):
            ids = masks[:, channel]
            annotated = ids >= 0
            self.concept_area[channel] += torch.bincount(ids[annotated], minlength=self.concepts)[: self.concepts]
            if bool(annotated.all()):
                self.unit_area[channel] += active_total
            else:  # pixels without annotation in this category count for none of its concepts
                self.unit_area[channel] += (active & annotated[:, None]).sum((0, 2, 3))
            hit = ids[image, row, col]
            keep = hit > 0
            if keep.any() and int(hit.max()) >= self.concepts:
                raise RuntimeError(_CHANGED)
            flat = unit[keep] * self.concepts + hit[keep]
            self.inter[channel] += torch.bincount(flat, minlength=self.inter.shape[1])
        if labels is not None:  # image-level concepts: the whole activated area intersects
            per_image = active.sum((2, 3)).double()  # N x U, exact integers in float64
            inter = per_image.t() @ labels.double()
            self.inter[self.channels] += inter.round().long().reshape(-1)
            self.unit_area[self.channels] += active_total
            pixels = active.shape[2] * active.shape[3]
            self.concept_area[self.channels] += labels.sum(0).long() * pixels

    def ious(self) -> Tuple[np.ndarray, np.ndarray]:
        """Per (unit, concept) IoU, each concept taken from the source where it appears most."""
        inter = self.inter.view(-1, self.units, self.concepts).cpu().numpy()
        unit_area = self.unit_area.cpu().numpy()
        concept_area = self.concept_area.cpu().numpy()
        source = concept_area.argmax(0)  # a concept is expected to belong to one category
        columns = np.arange(self.concepts)
        inter = inter[source, :, columns].T  # U x C
        union = unit_area[source].T + concept_area[source, columns][None, :] - inter
        ious = np.divide(inter, union, out=np.zeros(inter.shape), where=union > 0)
        ious[:, 0] = 0.0  # id 0 means "no concept"
        seen = concept_area.max(0) > 0
        return ious, np.where(seen, source, -1)


# ----------------------------------------------------------------------------------------
# The result
# ----------------------------------------------------------------------------------------


@dataclass
class DissectionResult:
    """The labels that network dissection gives the units of one layer.

    Attributes:
        layer: dotted name of the dissected layer.
        concept_names: name of each concept id; entry 0 stands for "no concept".
        concept_categories: category of each concept id (``None`` for entry 0 and for
            concepts that never occurred).
        thresholds: per-unit activation thresholds, float64, length U.
        ious: U x num_concepts pooled IoU of each unit with each concept (column 0 is 0).
        threshold_errors: per-unit bound on ``|threshold - exact threshold|``; 0 where the
            threshold is exact (always, unless the bounded-memory refinement ran out).
        quantile: the top quantile that set the thresholds.
        iou_threshold: the IoU a unit needs to count as a detector.
        num_images: images dissected.
        mask_size: ``(height, width)`` of the masks, the resolution of the IoU.
    """

    layer: str
    concept_names: List[str]
    concept_categories: List[Optional[str]]
    thresholds: np.ndarray
    ious: np.ndarray
    threshold_errors: np.ndarray
    quantile: float
    iou_threshold: float
    num_images: int
    mask_size: Tuple[int, int]

    @property
    def num_units(self) -> int:
        """Number of units (channels) of the layer."""
        return int(self.thresholds.shape[0])

    @property
    def unit_ious(self) -> np.ndarray:
        """Each unit's best IoU, length U."""
        return self.ious.max(1) if self.ious.shape[1] else np.zeros(self.num_units)

    @property
    def unit_concepts(self) -> List[Optional[str]]:
        """Each unit's best concept, ``None`` for units that overlap no concept at all."""
        best = self.ious.argmax(1)
        return [self.concept_names[c] if self.ious[u, c] > 0 else None for u, c in enumerate(best)]

    @property
    def unit_categories(self) -> List[Optional[str]]:
        """The category of each unit's best concept."""
        best = self.ious.argmax(1)
        return [self.concept_categories[c] if self.ious[u, c] > 0 else None for u, c in enumerate(best)]

    @property
    def is_detector(self) -> np.ndarray:
        """Boolean mask of the units whose best IoU reaches ``iou_threshold``."""
        return (self.unit_ious >= self.iou_threshold) & (self.unit_ious > 0)

    def rows(self) -> List[Dict[str, Any]]:
        """The per-unit table as dicts with keys unit, concept, category, iou, threshold, detector."""
        concepts, categories, ious = self.unit_concepts, self.unit_categories, self.unit_ious
        detector = self.is_detector
        return [
            {
                "unit": unit,
                "concept": concepts[unit],
                "category": categories[unit],
                "iou": float(ious[unit]),
                "threshold": float(self.thresholds[unit]),
                "detector": bool(detector[unit]),
            }
            for unit in range(self.num_units)
        ]

    def detectors(self, by: str = "concept") -> Dict[str, int]:
        """Count detector units per concept (or per category), most frequent first.

        Args:
            by: ``"concept"`` or ``"category"``.

        Returns:
            A dict from name to number of detector units.

        Raises:
            ValueError: ``by`` is neither ``"concept"`` nor ``"category"``.
        """
        if by not in ("concept", "category"):
            raise ValueError(f"by must be 'concept' or 'category', got {by!r}.")
        key = "concept" if by == "concept" else "category"
        counts: Dict[str, int] = {}
        for row in self.rows():
            if row["detector"]:
                counts[row[key]] = counts.get(row[key], 0) + 1
        return dict(sorted(counts.items(), key=lambda item: (-item[1], str(item[0]))))

    def units_for(self, concept: str, detectors_only: bool = True) -> List[int]:
        """Units labelled ``concept``, highest IoU first.

        Args:
            concept: a concept name.
            detectors_only: keep only units whose IoU reaches ``iou_threshold``.

        Returns:
            Unit indices.

        Raises:
            ValueError: the concept is unknown.
        """
        if concept not in self.concept_names:
            raise ValueError(f"unknown concept {concept!r}; known: {', '.join(self.concept_names[1:])}.")
        rows = [r for r in self.rows() if r["concept"] == concept and (r["detector"] or not detectors_only)]
        return [r["unit"] for r in sorted(rows, key=lambda r: -r["iou"])]

    def table(self, units: Optional[Sequence[int]] = None, detectors_only: bool = False,
              sort_by: str = "unit") -> str:
        """A plain-text table of the units.

        Args:
            units: units to show (default all).
            detectors_only: show only detector units.
            sort_by: ``"unit"`` or ``"iou"`` (highest first).

        Returns:
            The table as a string.
        """
        rows = self.rows()
        if units is not None:
            rows = [rows[int(u)] for u in units]
        if detectors_only:
            rows = [r for r in rows if r["detector"]]
        if sort_by == "iou":
            rows = sorted(rows, key=lambda r: -r["iou"])
        lines = [f"{'unit':>5}  {'concept':<16} {'category':<12} {'iou':>6}  {'threshold':>10}  detector"]
        for r in rows:
            lines.append(
                f"{r['unit']:>5}  {str(r['concept'] or '-'):<16} {str(r['category'] or '-'):<12} "
                f"{r['iou']:>6.3f}  {r['threshold']:>10.4g}  {'yes' if r['detector'] else 'no'}"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        detectors = int(self.is_detector.sum())
        head = (
            f"Dissection of {self.layer!r}: {self.num_units} units, {detectors} detectors "
            f"(IoU >= {self.iou_threshold:g}), {self.num_images} images at {self.mask_size[0]}x{self.mask_size[1]}, "
            f"top quantile {self.quantile:g}"
        )
        return head + "\n" + self.table()

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict: settings, the per-unit table and the full IoU matrix."""
        return {
            "layer": self.layer,
            "quantile": self.quantile,
            "iou_threshold": self.iou_threshold,
            "num_images": self.num_images,
            "mask_size": list(self.mask_size),
            "concept_names": list(self.concept_names),
            "concept_categories": list(self.concept_categories),
            "units": self.rows(),
            "thresholds": self.thresholds.tolist(),
            "threshold_errors": self.threshold_errors.tolist(),
            "ious": self.ious.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "DissectionResult":
        """Rebuild a result from :meth:`to_dict`'s output."""
        units = len(data["thresholds"])
        ious = np.asarray(data["ious"], dtype=np.float64).reshape(units, len(data["concept_names"]))
        return cls(
            layer=data["layer"],
            concept_names=list(data["concept_names"]),
            concept_categories=list(data["concept_categories"]),
            thresholds=np.asarray(data["thresholds"], dtype=np.float64),
            ious=ious,
            threshold_errors=np.asarray(data["threshold_errors"], dtype=np.float64),
            quantile=float(data["quantile"]),
            iou_threshold=float(data["iou_threshold"]),
            num_images=int(data["num_images"]),
            mask_size=(int(data["mask_size"][0]), int(data["mask_size"][1])),
        )

    def to_json(self, path: Union[str, os.PathLike]) -> None:
        """Write the result as JSON, atomically (a temporary file, then ``os.replace``).

        Args:
            path: the file to write; its folder is created if needed.
        """
        write_atomic(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def from_json(cls, path: Union[str, os.PathLike]) -> "DissectionResult":
        """Read a result written by :meth:`to_json`.

        Args:
            path: the JSON file.

        Returns:
            The :class:`DissectionResult`.
        """
        with open(path, encoding="utf-8") as stream:
            return cls.from_dict(json.load(stream))


# ----------------------------------------------------------------------------------------
# dissect()
# ----------------------------------------------------------------------------------------


def _check_settings(quantile: float, iou_threshold: float, batch_size: int, max_exact_values: int,
                    refine_bins: int, max_refine_passes: int, exact: Optional[bool]) -> None:
    if isinstance(quantile, bool) or not isinstance(quantile, (int, float)) or not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must lie in (0, 1), e.g. 0.005 for the top 0.5%, got {quantile!r}.")
    if isinstance(iou_threshold, bool) or not isinstance(iou_threshold, (int, float)) or not 0 <= iou_threshold <= 1:
        raise ValueError(f"iou_threshold must lie in [0, 1] (0.04 in the paper), got {iou_threshold!r}.")
    for name, value, least in (("batch_size", batch_size, 1), ("max_exact_values", max_exact_values, 0),
                               ("refine_bins", refine_bins, 2), ("max_refine_passes", max_refine_passes, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an int >= {least}, got {value!r}.")
    if exact not in (None, True, False):
        raise TypeError(f"exact must be None, True or False, got {exact!r}.")


def _concept_metadata(layout: _Layout, concept_names: Optional[Sequence[str]],
                      categories: Optional[Sequence[str]]) -> Tuple[int, List[str]]:
    count = max(layout.max_id + 1, layout.label_width or 0, 1)
    if concept_names is not None:
        names = [str(name) for name in concept_names]
        if len(names) < count:
            raise ValueError(
                f"the data uses concept ids up to {count - 1} but only {len(names)} concept_names were given; "
                "concept_names[i] names id i, and id 0 is 'no concept'."
            )
        count = len(names)
    else:
        names = ["-"] + [f"concept{i}" for i in range(1, count)]
    if layout.label_width is not None and layout.label_width != count:
        raise ValueError(f"image_labels have {layout.label_width} columns but there are {count} concepts.")
    if categories is not None and len(categories) != count:
        raise ValueError(f"categories must give one category per concept id ({count}), got {len(categories)}.")
    return count, names


def _progress(iterable: Iterable, desc: str, show: bool) -> Iterable:
    if not show:
        return iterable
    return tqdm(iterable, total=len(iterable) if hasattr(iterable, "__len__") else None, desc=desc, leave=False)


def dissect(
    model: nn.Module,
    layer: LayerSpec,
    data: Any,
    *,
    quantile: float = 0.005,
    iou_threshold: float = 0.04,
    concept_names: Optional[Sequence[str]] = None,
    categories: Optional[Sequence[str]] = None,
    device: Optional[Union[str, torch.device]] = None,
    batch_size: int = 64,
    show_progress: bool = False,
    exact: Optional[bool] = None,
    max_exact_values: int = 2**24,
    refine_bins: int = 2048,
    max_refine_passes: int = 3,
) -> DissectionResult:
    """Label each unit of ``layer`` with the concept it detects (network dissection).

    Pass 1 sets each unit's threshold at the top ``quantile`` of its activations over all
    pixels of all images, after bilinear upsampling (``align_corners=False``) to the masks'
    resolution; the value is ``numpy.quantile(values, 1 - quantile, method="hazen")``.
    Pass 2 counts, as integers, ``|A_u & M_k|``, ``|A_u|`` and ``|M_k|`` for every unit ``u``
    and concept ``k`` (``A_u``: pixels where the unit exceeds its threshold) and forms the
    pooled IoU ``inter / (|A_u| + |M_k| - inter)``.

    Thresholds are exact as long as the values that decide them fit in ``max_exact_values``:
    with ``exact=None`` pass 1 keeps all values while they fit (one extra copy of the
    upsampled activations, at most ``max_exact_values`` floats). Beyond that the data are read
    again: histogram passes (``refine_bins`` bins per unit, at most ``max_refine_passes``)
    narrow each unit's interval around the two order statistics it needs, then one pass
    keeps only the values inside those intervals and the result is exact again. Only when
    the refinement budget runs out first is a threshold interpolated inside its last bin;
    ``DissectionResult.threshold_errors`` then holds a strict per-unit bound on the error
    (the width of its last bin, typically about ``range / 2048**3`` with the defaults).
    Memory is bounded by the batch, the histograms (units x ``refine_bins``) and
    ``max_exact_values``, never by the size of the data set
    (``benchmarks/bench_dissection.py`` measures it).

    Masks use ids: 0 means no concept, negative values mark pixels not annotated for that
    category (they count for none of its concepts, as images without a category's labels do
    in NetDissect-Lite). Image-level concepts (scene, texture) come as multi-hot
    ``image_labels``; the whole activated area of an image counts as intersection and the
    whole image as the concept's area. Each concept is expected to belong to one category.

    Args:
        model: the network; its mode, parameters and buffers are left exactly as found
            (it runs in eval mode under ``torch.inference_mode`` and each submodule's
            training flag is restored, also on errors).
        layer: the layer to dissect, an ``nn.Module`` of ``model`` or its dotted name
            (``"features.relu4"``); its output must be N x C x H x W. Only the model's
            forward pass up to this layer runs.
        data: re-iterable batches ``(images, masks)`` or ``(images, masks, image_labels)``
            (a DataLoader or a list), a map-style ``Dataset`` of such items (batched with
            ``batch_size``), or a tuple of whole tensors. ``masks`` hold integer concept
            ids, N x Hm x Wm or N x K x Hm x Wm (K categories); ``image_labels`` is
            N x num_concepts. It is read twice (thresholds from the buffer, then IoU) or
            up to ``max_refine_passes + 3`` times, and must give the same data each time
            (no random augmentation; a change is detected in the refinement passes).
        quantile: top share of activations above each unit's threshold, in (0, 1).
        iou_threshold: IoU from which a unit counts as a detector.
        concept_names: name of each concept id (entry 0 names "no concept").
        categories: category of each concept id (same length as ``concept_names``);
            default: one category per mask channel (``"pixel"`` or ``"mask<k>"``) and
            ``"image"`` for image-level labels.
        device: where to run; default the model's device.
        batch_size: images per model call when ``data`` is a Dataset or a tuple of tensors.
        show_progress: show a tqdm progress bar per pass.
        exact: ``None`` (exact thresholds from one pass while the values fit, else the
            bounded-memory refinement), ``True`` (keep every value: exact, memory grows with
            the data), ``False`` (always the bounded-memory refinement).
        max_exact_values: most activation values kept in memory for exact thresholds.
        refine_bins: histogram bins per unit in a refinement pass.
        max_refine_passes: most histogram passes before thresholds are interpolated.

    Returns:
        A :class:`DissectionResult`.

    Raises:
        ValueError: unknown layer, a layer output that is not N x C x H x W, empty data,
            masks or labels whose shapes disagree, a setting out of range, non-finite
            activations.
        TypeError: a one-shot iterator as ``data``, batches of the wrong kind, masks that
            are not integer tensors.
        RuntimeError: the data changed between passes.

    Example:
        >>> data = ConceptDataset(200, seed=0)
        >>> result = dissect(model, "features.relu4", data, concept_names=data.concept_names,
        ...                  categories=data.concept_categories)
        >>> print(result.detectors())
    """
    _check_settings(quantile, iou_threshold, batch_size, max_exact_values, refine_bins, max_refine_passes, exact)
    name, module = _resolve_layer(model, layer)
    if isinstance(data, Iterator):
        raise TypeError(
            "data is a one-shot iterator (e.g. a generator); dissection reads the data several times: "
            "pass a DataLoader, a list of batches, a Dataset or a tuple of tensors."
        )
    run_on = _model_device(model, device)
    finder = _TopQuantile(quantile, exact, max_exact_values, refine_bins, max_refine_passes)
    layout = _Layout()

    def stream(desc: str, first: bool = False) -> Iterable[Tuple[_Batch, Tensor, bool]]:
        for index, raw in enumerate(_progress(_batches(data, batch_size), desc, show_progress)):
            batch = _parse_batch(raw, index)
            if batch.images.shape[0] == 0:
                continue
            features = tap.features(model, batch.images.to(run_on))
            if first:  # the first pass learns the layout and checks every batch against it
                layout.check(batch, features, index)
            size = tuple(batch.masks.shape[2:])
            values = features.float()
            if tuple(values.shape[2:]) != size:
                values = F.interpolate(values, size=size, mode="bilinear", align_corners=False)
            yield batch, values, values is not features

    with evaluation_mode(model, "dissect"), _LayerTap(module, name) as tap, torch.inference_mode():
        passes = 0
        while not finder.done:
            passes += 1
            for _, values, fresh in stream(f"Network dissection: thresholds ({passes})", first=passes == 1):
                finder.update(values.flatten(2), fresh)
            if layout.images == 0:
                raise ValueError("data is empty: dissect needs at least one batch of (images, masks).")
            finder.finish_pass()
        thresholds, errors = finder.thresholds()
        count, names = _concept_metadata(layout, concept_names, categories)
        cut = _strictly_below(thresholds, run_on)[None, :, None, None]
        counts = _IoUCounts(layout.units, count, layout.mask_channels, layout.label_width is not None, run_on)
        for batch, values, _ in stream("Network dissection: IoU"):
            labels = None if batch.labels is None else batch.labels.to(run_on)
            counts.update(values > cut, batch.masks.to(run_on), labels)
    ious, source = counts.ious()
    return DissectionResult(
        layer=name,
        concept_names=names,
        concept_categories=_categories(categories, source, layout.mask_channels),
        thresholds=thresholds,
        ious=ious,
        threshold_errors=errors,
        quantile=float(quantile),
        iou_threshold=float(iou_threshold),
        num_images=layout.images,
        mask_size=layout.mask_size,
    )


def _categories(categories: Optional[Sequence[str]], source: np.ndarray, channels: int) -> List[Optional[str]]:
    if categories is not None:
        return [None] + [str(c) for c in list(categories)[1:]]
    names = ["pixel"] if channels == 1 else [f"mask{k}" for k in range(channels)]
    names.append("image")
    return [None] + [names[s] if s >= 0 else None for s in source[1:]]


# ----------------------------------------------------------------------------------------
# Figure
# ----------------------------------------------------------------------------------------


def _layer_features(model: nn.Module, module: nn.Module, name: str, images: Tensor, device: torch.device,
                    batch_size: int, units: Tensor) -> Iterable[Tuple[int, Tensor]]:
    """Yield ``(start, features of the chosen units)`` batch by batch."""
    with evaluation_mode(model, "plot_top_activations"), _LayerTap(module, name) as tap, torch.inference_mode():
        for start in range(0, images.shape[0], batch_size):
            features = tap.features(model, images[start:start + batch_size].to(device))
            yield start, features.index_select(1, units.to(features.device)).float()


def _as_rgb(image: Tensor) -> np.ndarray:
    array = image.detach().float().cpu().clamp(0, 1)
    if array.shape[0] == 3:
        return array.permute(1, 2, 0).numpy()
    return array.mean(0).numpy()  # one (or an unusual number of) channels: grey


def plot_top_activations(
    model: nn.Module,
    layer: LayerSpec,
    result: DissectionResult,
    images: Tensor,
    units: Sequence[int],
    *,
    num_images: int = 5,
    batch_size: int = 64,
    device: Optional[Union[str, torch.device]] = None,
    use_pyplot: bool = True,
    outline_color: str = "yellow",
    figsize: Optional[Tuple[float, float]] = None,
) -> Tuple[Any, np.ndarray]:
    """Draw each unit's top-activating images with the region above its threshold outlined.

    Images are ranked by the unit's maximum activation (as NetDissect-Lite does); the
    outline is the unit's map upsampled bilinearly to the image and cut at its
    dissection threshold.

    Args:
        model: the dissected network (left as found).
        layer: the dissected layer (module or dotted name).
        result: the :class:`DissectionResult` of that layer.
        images: N x C x H x W images in [0, 1] to search for top activations.
        units: the units to draw, one row each.
        num_images: images per unit (columns).
        batch_size: images per model call.
        device: where to run; default the model's device.
        use_pyplot: create the figure with ``matplotlib.pyplot``; ``False`` builds a
            ``matplotlib.figure.Figure`` directly (no global state, safe in servers).
        outline_color: colour of the outline.
        figsize: figure size in inches; default from the grid.

    Returns:
        ``(fig, axes)`` with ``axes`` a len(units) x num_images array.

    Raises:
        ValueError: units out of range, ``num_images`` out of range, images of the wrong shape.

    Example:
        >>> fig, axes = plot_top_activations(model, "features.relu4", result, images,
        ...                                  result.units_for("circle")[:3], use_pyplot=False)
    """
    name, module = _resolve_layer(model, layer)
    if not isinstance(images, Tensor) or images.dim() != 4:
        raise ValueError("images must be a tensor N x C x H x W.")
    chosen = [int(u) for u in units]
    if not chosen or any(u < 0 or u >= result.num_units for u in chosen):
        raise ValueError(f"units must be a non-empty list of unit indices in 0..{result.num_units - 1}, got {units}.")
    if isinstance(num_images, bool) or not isinstance(num_images, int) or not 1 <= num_images <= images.shape[0]:
        raise ValueError(f"num_images must be an int in 1..{images.shape[0]}, got {num_images!r}.")
    run_on = _model_device(model, device)
    index = torch.tensor(chosen)
    scores = torch.empty(images.shape[0], len(chosen))
    for start, features in _layer_features(model, module, name, images, run_on, batch_size, index):
        scores[start:start + features.shape[0]] = features.amax((2, 3)).cpu()
    top = scores.topk(num_images, dim=0).indices.t()  # units x num_images
    picked = sorted(set(top.flatten().tolist()))
    maps: Dict[int, Tensor] = {}
    for start, features in _layer_features(model, module, name, images[picked], run_on, batch_size, index):
        upsampled = F.interpolate(features, size=tuple(images.shape[2:]), mode="bilinear", align_corners=False)
        for offset, image_index in enumerate(picked[start:start + features.shape[0]]):
            maps[image_index] = upsampled[offset].cpu()
    fig, axes = _grid(len(chosen), num_images, use_pyplot, figsize)
    concepts, ious = result.unit_concepts, result.unit_ious
    for row, unit in enumerate(chosen):
        for col in range(num_images):
            image_index = int(top[row, col])
            ax = axes[row, col]
            ax.imshow(_as_rgb(images[image_index]), cmap="gray", vmin=0, vmax=1)
            region = (maps[image_index][row] > float(result.thresholds[unit])).numpy()
            if region.any() and not region.all():  # contour needs both sides of the level
                ax.contour(region.astype(float), levels=[0.5], colors=outline_color, linewidths=1.5)
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_title(f"unit {unit}: {concepts[unit] or '-'} (IoU {ious[unit]:.2f})", fontsize=8, loc="left")
    return fig, axes


def _grid(rows: int, cols: int, use_pyplot: bool, figsize: Optional[Tuple[float, float]]) -> Tuple[Any, np.ndarray]:
    size = figsize or (1.6 * cols, 1.7 * rows)
    if use_pyplot:
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(rows, cols, figsize=size, squeeze=False)
    else:
        from matplotlib.figure import Figure

        fig = Figure(figsize=size)
        axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes

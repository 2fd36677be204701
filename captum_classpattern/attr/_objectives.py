"""The objectives of the search loop: paste the canvas (``ClassPattern``), stamp learned values, blend.

Each says how a step's composites are made and which penalty the maps pay, and returns
the gradients of the step's loss (:class:`~captum_classpattern.attr.SearchObjective`);
:func:`~captum_classpattern.attr.search_patterns` runs the loop and takes the signed steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, List, Optional, Tuple, Union

import torch
from torch import Tensor

from .._utils import check_positive_float
from ._composite import composite_loss, stamp_loss, total_variation
from ._engine import SearchStep
from ._schedule import SearchSchedule

Gradients = Tuple[Optional[Tensor], Optional[Tensor]]


def _check_share(value: float, name: str, high: float = 1.0) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}.")
    if not 0.0 <= value <= high:
        raise ValueError(f"{name} must lie in [0, {high}], got {value}.")


@dataclass(frozen=True)
class StampObjective:
    r"""Stamp each canvas's values under its map: composite ``m * v + (1 - m) * x``.

    The loss is :math:`\alpha\,\mathrm{CE} + (1 - \alpha)\,(\lVert m \rVert_1 + s\,\mathrm{TV}(m))
    / (H W / 2)`, the cross-entropy being each canvas's mean over its own images and
    ``alpha`` the schedule's; the backdoor scan searches its patterns, and recovers
    triggers, with it.

    Attributes:
        learn_values: learn the pasted values ``v`` too (with signed steps of
            ``value_step``), or paste the canvases as they are (default ``True``).
        value_step: the constant signed step on the values (default 0.05).
        harden: the share of the steps, at the end, in which the composite uses the
            binarised map ``m >= 0.5`` (straight-through gradient), so that the searched
            composite is a real top-k stamp (default 0: soft throughout).
        smoothness: ``s``, the multiple of the map's total variation added to its size,
            which favours one compact region over scattered pixels (default 0).

    Raises:
        TypeError: a field of the wrong type.
        ValueError: ``harden`` outside [0, 1], a non-positive ``value_step`` or a negative
            ``smoothness``.

    Example:
        >>> objective = StampObjective(learn_values=True, harden=0.5, smoothness=2.0)
    """

    learn_values: bool = True
    value_step: float = 0.05
    harden: float = 0.0
    smoothness: float = 0.0
    kind: ClassVar[str] = "scan search"
    fixed_map: ClassVar[Optional[float]] = None

    def __post_init__(self) -> None:
        if not isinstance(self.learn_values, bool):
            raise TypeError(f"learn_values must be a bool, got {type(self.learn_values).__name__}.")
        check_positive_float(self.value_step, "value_step")
        _check_share(self.harden, "harden")
        _check_share(self.smoothness, "smoothness", float("inf"))

    def value_schedule(self, plan: SearchSchedule) -> Optional[SearchSchedule]:
        """Constant signed steps of ``value_step`` when the values are learned, else ``None``."""
        return plan.replace(step_size=self.value_step, final_step_size=None) if self.learn_values else None

    def _hard_from(self, plan: SearchSchedule) -> Optional[int]:
        """The first step of the binarised map, ``None`` when the map stays soft."""
        if not self.harden:
            return None
        if plan.steps is None:
            raise ValueError("harden needs the number of steps: give the schedule steps=..., not epochs.")
        return plan.steps - int(round(self.harden * plan.steps))

    def gradients(self, step: SearchStep) -> Gradients:
        """The gradients of the step's loss with respect to the maps and (when learned) the values."""
        plan = step.plan
        count, height, width = step.maps.shape
        hard_from = self._hard_from(plan)
        owner = step.owner.to(step.maps.device)
        counts = torch.bincount(owner, minlength=count).clamp(min=1).to(step.values.dtype)
        leaf_m = step.maps.detach().requires_grad_(True)
        leaf_v = step.values.detach().requires_grad_(self.learn_values)
        with torch.enable_grad():
            used = leaf_m
            if hard_from is not None and step.index >= hard_from:
                used = (leaf_m >= 0.5).to(leaf_m.dtype) + leaf_m - leaf_m.detach()
            _, ce = stamp_loss(step.forward, step.images, owner, used, leaf_v, step.targets, counts)
            size = leaf_m.sum()
            if self.smoothness:
                size = size + self.smoothness * total_variation(leaf_m)
            loss = plan.alpha * ce + (1 - plan.alpha) * size / (height * width / 2.0)
            grads = torch.autograd.grad(loss, [leaf_m, leaf_v] if self.learn_values else [leaf_m])
        return grads[0], (grads[1] if self.learn_values else None)


@dataclass(frozen=True)
class BlendObjective:
    """Blend each canvas's values into the whole image: composite ``(1 - a) x + a v``, at a fixed strength ``a``.

    Only the values are learned (with the schedule's steps, annealed as it says); the loss
    is each canvas's mean cross-entropy, without a penalty (the blend covers the whole
    image). The backdoor scan's blend probe searches with it.

    Attributes:
        strength: the blend strength ``a``, in (0, 1].

    Raises:
        ValueError: a strength outside (0, 1].

    Example:
        >>> objective = BlendObjective(strength=0.1)
    """

    strength: float = 0.1
    kind: ClassVar[str] = "blend probe"

    def __post_init__(self) -> None:
        _check_share(self.strength, "strength")
        if self.strength == 0:
            raise ValueError("strength must lie in (0, 1], got 0.")

    @property
    def fixed_map(self) -> Optional[float]:
        """The blend strength: every map holds it at every pixel."""
        return float(self.strength)

    def value_schedule(self, plan: SearchSchedule) -> Optional[SearchSchedule]:
        """The search's own schedule: the values are what the blend learns."""
        return plan

    def gradients(self, step: SearchStep) -> Gradients:
        """The gradient of the step's loss with respect to the values (the maps are fixed)."""
        owner = step.owner.to(step.values.device)
        counts = torch.bincount(owner, minlength=step.values.shape[0]).clamp(min=1).to(step.values.dtype)
        leaf = step.values.detach().requires_grad_(True)
        with torch.enable_grad():
            _, loss = stamp_loss(step.forward, step.images, owner, step.maps, leaf, step.targets, counts)
            (grad,) = torch.autograd.grad(loss, [leaf])
        return None, grad


@dataclass(frozen=True)
class PasteObjective:
    r"""``ClassPattern``'s objective: paste each canvas under its map, ``x + m (x_c - x)``, and pay for the map's size.

    The loss is :math:`\alpha\,\mathrm{CE} + (1 - \alpha) \sum m / (H W / 2)`. Autograd runs
    only from the loss to each row's copy of its canvas's map; the rows are then summed
    into their canvas in row order (:func:`_sum_rows`), and the size term (the same
    constant at every pixel) is added in closed form. Both ways of building the
    composites (broadcast when every canvas has the same number of rows, gathered
    otherwise) therefore give bit-identical gradients, and a canvas's result does not
    depend on which other canvases share its steps.

    Attributes:
        max_forward_batch: split each step's composites into model calls of at most this
            many images (``None``: one call).
    """

    max_forward_batch: Optional[int] = None
    kind: ClassVar[str] = "search"
    fixed_map: ClassVar[Optional[float]] = None

    def value_schedule(self, plan: SearchSchedule) -> Optional[SearchSchedule]:
        """``None``: the canvases are pasted as they are."""
        return None

    def gradients(self, step: SearchStep) -> Gradients:
        """The gradient of the step's loss with respect to the maps."""
        maps, alpha = step.maps, step.plan.alpha
        rows_total = step.images.shape[0]
        chunk = self.max_forward_batch or rows_total
        if step.per_canvas is not None and chunk >= rows_total:
            row_grads = _uniform_row_grads(step, step.per_canvas, alpha)
        else:
            owner = step.owner.to(maps.device, non_blocking=True)
            counts = torch.bincount(owner, minlength=maps.shape[0]).clamp(min=1).to(maps.dtype)
            parts: List[Tensor] = []
            for begin in range(0, rows_total, chunk):  # max_forward_batch bounds each model call
                rows = owner[begin : begin + chunk]
                parts.append(
                    _row_grads(
                        step.forward,
                        maps.index_select(0, rows),
                        step.values.index_select(0, rows),
                        step.targets.index_select(0, rows),
                        counts.index_select(0, rows),
                        step.images[begin : begin + chunk],
                        alpha,
                    )
                )
            row_grads = _pad_rows(torch.cat(parts), owner, maps.shape[0])
        grad = _sum_rows(row_grads)
        return grad.add_(_size_gradient(step)), None


def _size_gradient(step: SearchStep) -> Union[float, Tensor]:
    """Gradient of the size term with respect to the map (zero for inactive canvases)."""
    height, width = step.maps.shape[-2:]
    # d(size term)/d(map) at every pixel: (1 - alpha) / (H W / 2), the paper's normalisation.
    weight = (1 - step.plan.alpha) / (height * width / 2.0)
    if step.active is None:
        return weight
    return step.active.to(step.maps.dtype).view(-1, 1, 1) * weight


def _row_grads(
    forward: Callable[[Tensor], Tensor],
    keep: Tensor,
    canvases: Tensor,
    targets: Tensor,
    counts: Tensor,
    images: Tensor,
    alpha: float,
) -> Tensor:
    """Gradient of the loss with respect to each row's map: ``images`` composited with their gathered canvases."""
    with torch.enable_grad():
        keep = keep.unsqueeze(1).requires_grad_(True)
        # Mean over each canvas's own rows, so its loss does not depend on its neighbours.
        loss = composite_loss(forward, images, keep, canvases, targets, counts)
        return torch.autograd.grad(alpha * loss, keep)[0][:, 0]


def _uniform_row_grads(step: SearchStep, per_canvas: int, alpha: float) -> Tensor:
    """As :func:`_row_grads` when every canvas has ``per_canvas`` consecutive rows.

    The canvases are broadcast over their rows instead of gathered (no copy per row);
    the arithmetic is the same, so the numbers are too.
    """
    count, channels, height, width = step.values.shape
    with torch.enable_grad():
        keep = step.maps.view(count, 1, 1, height, width).expand(count, per_canvas, 1, height, width)
        keep = keep.contiguous().requires_grad_(True)
        base = step.images.reshape(count, per_canvas, channels, height, width)
        targets = step.targets.repeat_interleave(per_canvas)
        loss = composite_loss(step.forward, base, keep, step.values.unsqueeze(1), targets, float(per_canvas))
        return torch.autograd.grad(alpha * loss, keep)[0].view(count, per_canvas, height, width)


def _pad_rows(row_grads: Tensor, owner: Tensor, count: int) -> Tensor:
    """Arrange per-row gradients as count x most-rows x H x W, zeros where a canvas has fewer rows.

    Rows are grouped by canvas in ``owner`` (both search sets list them that way).
    """
    rows_of = torch.bincount(owner, minlength=count)
    most = int(rows_of.max())
    first_row = torch.cumsum(rows_of, 0) - rows_of
    slot = owner * most + torch.arange(owner.numel(), device=owner.device) - first_row.index_select(0, owner)
    padded = row_grads.new_zeros((count * most,) + tuple(row_grads.shape[1:]))
    return padded.index_copy_(0, slot, row_grads).view((count, most) + tuple(row_grads.shape[1:]))


def _sum_rows(row_grads: Tensor) -> Tensor:
    """Sum count x rows x H x W over the rows, one row after the other.

    A fixed order (and zeros added for missing rows change nothing) makes a canvas's sum
    the same whether its rows came broadcast or gathered, alone or with other canvases.
    Plain slice additions also stay single-threaded on small maps, where a scatter
    (``index_add_``) would start a thread pool per row.
    """
    total = row_grads[:, 0].clone()
    for row in range(1, row_grads.shape[1]):
        total.add_(row_grads[:, row])
    return total

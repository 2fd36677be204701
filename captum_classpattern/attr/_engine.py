"""The one search loop of the package: a map (and pasted values) per canvas, learned against an objective.

:class:`~captum_classpattern.ClassPattern`, the backdoor scan's patterns, its blend probe
and its trigger recovery all run :func:`run_search`: it draws each canvas's stream of
other-class images from a search set, asks a :class:`SearchObjective` for the gradients
of one step's loss, and updates the maps and values with :class:`MapOptimizer` (signed
steps or Adam, annealed by the :class:`~captum_classpattern.attr.SearchSchedule`). An
objective says only how a step's composites are made (paste the canvas, stamp learned
values, blend) and which penalty the maps pay (size, total variation).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Protocol, Tuple

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .._utils import call_model, tuned_threads
from ._map_optimizer import MapOptimizer
from ._schedule import SearchSchedule
from ._search_data import BaselineSource, SearchSet, make_search_set


@dataclass
class SearchStats:
    """What the last :meth:`ClassPattern.attribute` call cost.

    Attributes:
        steps: optimisation steps taken (all canvases update together in one step).
        images_forwarded: composite images sent through the model.
        seconds: wall time of the search loop.
    """

    steps: int = 0
    images_forwarded: int = 0
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        """Throughput of the search loop (0 before any search)."""
        return self.images_forwarded / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class SearchStep:
    """What an objective is given at one step of :func:`run_search`.

    Attributes:
        index: the step's number, from 0.
        images: the step's search images on the canvases' device and dtype, one row per
            (canvas, image) pair, grouped by canvas.
        owner: the canvas of each row (on the CPU, as the search set made it).
        per_canvas: when every canvas has exactly this many rows, in canvas order, the
            rows can be paired with canvases by reshaping; ``None`` otherwise.
        active: the canvases that move this step (a bool tensor), ``None`` for all.
        maps: the current ``K x H x W`` maps in [0, 1], detached.
        values: the current ``K x C x H x W`` pasted values, detached.
        targets: the class of each canvas, on the device.
        forward: calls the model on a batch of composites and returns its logits.
        plan: the schedule of the search (``alpha``, ``steps``, ...).
    """

    index: int
    images: Tensor
    owner: Tensor
    per_canvas: Optional[int]
    active: Optional[Tensor]
    maps: Tensor
    values: Tensor
    targets: Tensor
    forward: Callable[[Tensor], Tensor]
    plan: SearchSchedule


class SearchObjective(Protocol):
    """What a map search minimises: how a step's composites are made, and the maps' penalty.

    :func:`run_search` owns the loop and the updates; an objective answers four
    questions. :class:`~captum_classpattern.attr.StampObjective` and
    :class:`~captum_classpattern.attr.BlendObjective` are objectives; ``ClassPattern``
    pastes its canvases with a private one.
    """

    @property
    def kind(self) -> str:
        """Names the search's steps for the thread policy and its report (e.g. ``"scan search"``)."""

    @property
    def fixed_map(self) -> Optional[float]:
        """``None`` when the maps are learned (from the schedule's ``init``); a number holds them there (a blend)."""

    def value_schedule(self, plan: SearchSchedule) -> Optional[SearchSchedule]:
        """The schedule of the pasted values' steps, or ``None`` when they stay the canvases."""

    def gradients(self, step: SearchStep) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        """The gradients of the step's loss with respect to the maps and the values.

        ``None`` for a tensor that is not learned. Each canvas's loss must depend on its
        own rows only, so that canvases searched together do not interact.
        """


@dataclass
class SearchOutcome:
    """What :func:`run_search` returns: maps, values, the maps' tie-break evidence and the cost."""

    maps: Tensor
    values: Tensor
    evidence: Optional[Tensor]
    stats: SearchStats


def run_search(
    search_set: SearchSet,
    objective: SearchObjective,
    canvases: Tensor,
    targets: Tensor,
    plan: SearchSchedule,
    forward: Callable[[Tensor], Tensor],
    owner: object,
    *,
    description: str,
    show_progress: bool = False,
) -> SearchOutcome:
    """Search one map (and, if the objective learns them, pasted values) per canvas.

    Args:
        search_set: each canvas's stream of other-class images.
        objective: the loss (:class:`SearchObjective`).
        canvases: ``K x C x H x W``: the pasted values, or where learned values start.
        targets: the class of each canvas.
        plan: the schedule: steps or epochs, the maps' step sizes and ``alpha``.
        forward: calls the model on a batch of composites.
        owner: the model, which tells the thread policy's steps apart.
        description: the progress bar's label.
        show_progress: show a tqdm progress bar.

    Returns:
        The :class:`SearchOutcome`.

    Raises:
        ValueError: an annealed schedule whose number of steps is not known in advance.
    """
    planned = search_set.planned_steps(plan.epochs, plan.steps)
    if plan.anneals and planned is None:
        raise ValueError(
            "an annealed step (final_step_size) needs the number of steps in advance: give the schedule "
            "steps=..., pass a DataLoader with a length, or set final_step_size=None."
        )
    learned_maps, fixed_maps = _maps(objective, plan, canvases, planned)
    value_plan = objective.value_schedule(plan)
    learned_values = None if value_plan is None else MapOptimizer(value_plan, canvases.clone(), planned, False)
    targets = targets.to(canvases.device)
    stats = SearchStats()
    total = None if planned is None else int(planned.max())
    progress = tqdm(total=total, desc=description, disable=not show_progress)
    start = time.perf_counter()
    for index, (batch, marked) in enumerate(search_set.steps(plan.epochs, plan.steps)):
        images = batch.images.to(device=canvases.device, dtype=canvases.dtype, non_blocking=True)
        # None stands for "every canvas", the common case that needs no masking.
        active = None if bool(marked.all()) else marked.to(canvases.device)
        step = SearchStep(
            index, images, batch.owner, batch.per_canvas, active,
            fixed_maps if learned_maps is None else learned_maps.maps(),
            canvases if learned_values is None else learned_values.maps(),
            targets, forward, plan,
        )  # fmt: skip
        with tuned_threads(objective.kind, images, owner):
            map_grad, value_grad = objective.gradients(step)
        if learned_maps is not None and map_grad is not None:
            learned_maps.step(learned_maps.map_to_theta_gradient(map_grad), active)
        if learned_values is not None and value_grad is not None:
            learned_values.step(learned_values.map_to_theta_gradient(value_grad), active)
        stats.steps += 1
        stats.images_forwarded += int(images.shape[0])
        progress.update(1)
    maps = fixed_maps if learned_maps is None else learned_maps.maps()
    values = canvases if learned_values is None else learned_values.maps()
    if canvases.device.type == "cuda":  # the clock must not stop before the GPU has finished
        torch.cuda.synchronize(canvases.device)
    stats.seconds = time.perf_counter() - start
    progress.close()
    evidence = None if learned_maps is None or learned_maps.evidence is None else learned_maps.evidence.detach()
    return SearchOutcome(maps, values, evidence, stats)


def _maps(
    objective: SearchObjective, plan: SearchSchedule, canvases: Tensor, planned: Optional[Tensor]
) -> Tuple[Optional[MapOptimizer], Tensor]:
    """The maps' optimiser (``None`` when the objective holds them fixed) and the fixed maps (else empty)."""
    count, _, height, width = canvases.shape
    if objective.fixed_map is None:
        return MapOptimizer.uniform(plan, (count, height, width), canvases, planned), canvases.new_empty(0)
    fixed = torch.full((count, height, width), float(objective.fixed_map), dtype=canvases.dtype, device=canvases.device)
    return None, fixed


def search_patterns(
    model: Callable,
    canvases: Tensor,
    targets: Tensor,
    images: BaselineSource,
    labels: Optional[Tensor],
    objective: SearchObjective,
    schedule: SearchSchedule,
    *,
    seed: int = 0,
    show_progress: bool = False,
    description: str = "Class pattern search",
) -> Tuple[Tensor, Tensor]:
    """Learn one map and, if the objective asks, one set of pasted values per canvas.

    The search loop of :class:`~captum_classpattern.ClassPattern`, for other objectives:
    each canvas draws its own seeded stream of images not of its class, all canvases step
    together in one model call per step, and gradients are taken with
    ``torch.autograd.grad``, so the model's parameters never receive a ``.grad``. The
    model must be in evaluation mode (the caller's business).

    Args:
        model: the classifier, returning logits for images in [0, 1].
        canvases: ``K x C x H x W`` starting values (pasted as they are when the objective
            does not learn them).
        targets: the class of each canvas.
        images: the search images, ``N x C x H x W`` (or any search set ``ClassPattern``
            accepts).
        labels: their labels, so that each canvas's own class is left out.
        objective: the loss: :class:`~captum_classpattern.attr.StampObjective`,
            :class:`~captum_classpattern.attr.BlendObjective` or your own
            :class:`SearchObjective`.
        schedule: steps, batch size, the maps' step sizes and ``alpha``.
        seed: seeds the order of the search images.
        show_progress: show a tqdm progress bar.
        description: the progress bar's label.

    Returns:
        ``(maps, values)``: ``K x H x W`` maps in [0, 1] and ``K x C x H x W`` values.

    Example:
        >>> maps, values = search_patterns(model, grey, torch.tensor([0, 1, 2]), images, labels,
        ...                                StampObjective(learn_values=True), SearchSchedule(steps=60))
    """
    search = make_search_set(images, labels, targets, tuple(canvases.shape[1:]), schedule.batch_size, seed)
    outcome = run_search(
        search, objective, canvases.detach(), targets, schedule, lambda batch: call_model(model, (batch,)), model,
        description=description, show_progress=show_progress,
    )  # fmt: skip
    return outcome.maps.detach(), outcome.values.detach()


def search_batches(
    images: Tensor, labels: Tensor, targets: Tensor, batch_size: int, steps: int, seed: int = 0
) -> Iterator[Tuple[Tensor, Tensor]]:
    """The search loop's batches, for a search that takes its own steps (Neural Cleanse's Adam).

    Each target draws its own seeded stream of the images not of its class, ``batch_size``
    at a time, exactly as :func:`search_patterns` does.

    Args:
        images: the search images, ``N x C x H x W``.
        labels: their labels.
        targets: the class of each of the ``K`` searched canvases.
        batch_size: images per canvas per step.
        steps: the number of steps.
        seed: seeds the order of the images.

    Returns:
        An iterator of ``(rows, owner)`` per step: ``rows x C x H x W`` images, grouped by canvas, and the
        canvas (index into ``targets``) of each row.

    Example:
        >>> for rows, owner in search_batches(images, labels, torch.tensor([0, 1, 2]), 32, 300):
        ...     logits, loss = stamp_loss(model, rows, owner, masks, patterns, targets, counts)
    """
    search = make_search_set(images, labels, targets, tuple(images.shape[1:]), batch_size, seed)
    return ((batch.images, batch.owner) for batch, _ in search.steps(None, steps))

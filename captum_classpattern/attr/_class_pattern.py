"""ClassPattern: the class-wise pattern search of Zhao et al. (2021) as a Captum attribution."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Iterable, List, Optional, Union

import torch
from captum.attr import GradientAttribution
from captum.log import log_usage
from torch import Tensor
from tqdm.auto import tqdm

from .._utils import (
    TensorOrTuple,
    as_tuple,
    call_model,
    check_device,
    check_images,
    evaluation_mode,
    expand_targets,
    mirror,
    num_classes_of,
)
from ._candidates import choose_canvases
from ._composite import composite_loss
from ._schedule import DEFAULT_SCHEDULE, SearchSchedule, resolve_schedule
from ._search_data import NO_SEARCH_SET, make_search_set


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


class ClassPattern(GradientAttribution):
    r"""Learns, for each canvas, the pixels that make other-class images look like its class.

    For a canvas :math:`x_c` of class :math:`c` the search learns a map :math:`m \in [0, 1]^{H
    \times W}` (shared by all channels) so that the composite :math:`m \odot x_c + (1 - m)
    \odot x` of the canvas and an image :math:`x` of another class is classified as
    :math:`c`, while keeping the map small:

    .. math::

        \alpha \, \mathrm{CE}(f(m \odot x_c + (1 - m) \odot x), c) + (1 - \alpha)
        \frac{\sum m}{H W / 2}

    The top-k pixels of the map, with the canvas's values, are the class pattern
    (:func:`~captum_classpattern.top_k_pattern`). In Captum's terms the map interpolates
    between a baseline (an other-class image) and the input (the canvas).

    Several canvases (one target each) are searched together: every step sends one batch
    holding the composites of all canvases through the model and takes one backward pass.

    Args:
        forward_func: the model, returning N x num_classes logits for images with pixels
            in [0, 1] (put normalisation inside the model).
        baselines: optional search set bound to the instance, used when
            :meth:`attribute` gets none: a tensor of images or a DataLoader of
            ``(images, labels)``.
        baseline_labels: labels of a bound tensor search set, so that each canvas's own
            class can be excluded.

    Example:
        >>> cp = ClassPattern(model)
        >>> maps = cp.attribute(canvases, target=[0, 1, 2], baselines=images,
        ...                     baseline_labels=labels, seed=0)
        >>> pattern = top_k_pattern(maps[0], canvases[0], k=0.05)
    """

    def __init__(
        self,
        forward_func: Callable,
        baselines: Optional[Union[Tensor, Iterable]] = None,
        baseline_labels: Optional[Tensor] = None,
    ) -> None:
        super().__init__(forward_func)
        self.baselines = baselines
        self.baseline_labels = baseline_labels
        self.last_stats = SearchStats()

    @log_usage()
    def attribute(
        self,
        inputs: Optional[TensorOrTuple] = None,
        target: Any = None,
        baselines: Optional[Union[Tensor, Iterable]] = None,
        additional_forward_args: Any = None,
        *,
        baseline_labels: Optional[Tensor] = None,
        schedule: Union[str, SearchSchedule, None] = None,
        seed: int = 0,
        canvas_strategy: str = "confident",
        max_forward_batch: Optional[int] = None,
        autocast_dtype: Optional[torch.dtype] = None,
        channels_last: bool = False,
        show_progress: bool = False,
    ) -> TensorOrTuple:
        """Search one class-pattern map per canvas.

        Args:
            inputs: canvases, N x C x H x W with pixels in [0, 1] (or a 1-tuple of such a
                tensor, returned as a 1-tuple). ``None`` picks one canvas per target from
                that class's own images in the search set (``canvas_strategy``).
            target: the class of each canvas: an int for all, or a list/1-d tensor with
                one class per canvas; all are searched together.
            baselines: the search set the canvas pixels are pasted onto: a tensor
                M x C x H x W (with ``baseline_labels`` to exclude each canvas's own class)
                or an iterable of ``(images, labels)`` such as a DataLoader, streamed one
                batch at a time. Defaults to the set bound in the constructor.
            additional_forward_args: passed unchanged after the images to every model
                call; they must not depend on the batch size.
            baseline_labels: labels of a tensor search set.
            schedule: ``"default"``, ``"paper"`` (Zhao et al.'s exact settings) or a
                :class:`~captum_classpattern.SearchSchedule`.
            seed: seeds the order in which search images are drawn. A canvas's result
                depends only on the seed, its class and the search set, not on which
                other canvases are searched with it.
            canvas_strategy: with ``inputs=None``: ``"confident"`` (the image the model
                classifies as the class most confidently), ``"index"`` (the first image of
                the class) or ``"best_of_n"`` (best of several short searches).
            max_forward_batch: split each step's composites into model calls of at most
                this many images (gradients are accumulated, the result is unchanged);
                bounds memory when many canvases are searched at once.
            autocast_dtype: run the model under :class:`torch.autocast` with this dtype
                (``torch.bfloat16`` or ``torch.float16``), e.g. for speed on a GPU with
                tensor cores. The map, its update and the loss stay in float32. Off by
                default: it changes the numbers slightly, and on most CPUs it is slower.
            channels_last: hand the composites to the model in ``channels_last`` memory
                format, which convolutions on recent GPUs run faster. The model is not
                converted (it is the caller's): convert it yourself with
                ``model.to(memory_format=torch.channels_last)`` for the full effect.
            show_progress: show a tqdm progress bar.

        Returns:
            The learned maps, shaped like ``inputs`` (the H x W map repeated over
            channels), in [0, 1]; a tuple if ``inputs`` was a tuple.

        Raises:
            ValueError: bad shapes, NaN, pixels outside [0, 1], a target out of range, an
                empty search set once a canvas's class is excluded, or tensors on another
                device than the model.
            TypeError: inputs, targets or settings of the wrong type.
        """
        plan = resolve_schedule(schedule)
        settings = _run_settings(max_forward_batch, autocast_dtype, channels_last)
        if baselines is None:
            baselines, baseline_labels = (
                self.baselines,
                (baseline_labels if baseline_labels is not None else self.baseline_labels),
            )
        if inputs is None:
            if target is None:
                raise ValueError("target is required: the class (int) or classes (list) to search.")
            classes = target if not isinstance(target, int) else [target]
            if baselines is None:
                raise ValueError(NO_SEARCH_SET)
            inputs = choose_canvases(
                self.forward_func,
                baselines,
                baseline_labels,
                classes,
                strategy=canvas_strategy,
                seed=seed,
                short_search=partial(short_search, self.forward_func),
            )
            was_tuple = False
            canvases = inputs
        else:
            tensors, was_tuple = as_tuple(inputs)
            if len(tensors) != 1:
                raise ValueError(
                    "ClassPattern searches image patterns of single-input models: pass one canvas tensor "
                    "and the model's other inputs through additional_forward_args."
                )
            canvases = tensors[0]
        check_images(canvases, "inputs (canvases)")
        check_device(self.forward_func, canvases, "inputs")
        with evaluation_mode(self.forward_func, "ClassPattern"):
            num_classes = num_classes_of(self.forward_func, canvases[:1], additional_forward_args)
            targets = expand_targets(target, canvases.shape[0], num_classes)
            search_set = make_search_set(
                baselines, baseline_labels, targets, tuple(canvases.shape[1:]), plan.batch_size, seed
            )
            maps = self._search(
                canvases.detach(), targets, search_set, plan, additional_forward_args, settings, show_progress
            )
        expanded = maps.unsqueeze(1).expand_as(canvases).contiguous()
        return mirror([expanded], was_tuple)

    def _search(self, canvases, targets, search_set, plan, extra, settings, show_progress) -> Tensor:
        device = canvases.device
        count, _, height, width = canvases.shape
        planned = search_set.planned_steps(plan.epochs, plan.steps)
        if plan.anneals and planned is None:
            raise ValueError(
                "an annealed step (final_step_size) needs the number of steps in advance: give the schedule "
                "steps=..., pass a DataLoader with a length, or set final_step_size=None."
            )
        optimizer = _MapOptimizer(plan, count, height, width, canvases.dtype, device, planned)
        targets_dev = targets.to(device)
        stats = SearchStats()
        progress = tqdm(
            total=None if planned is None else int(planned.max()),
            desc="Class Pattern attribution",
            disable=not show_progress,
        )
        start = time.perf_counter()
        for batch, active in search_set.steps(plan.epochs, plan.steps):
            images = batch.images.to(device, non_blocking=True)
            # None stands for "every canvas", the common case that needs no masking.
            active = None if bool(active.all()) else active.to(device)
            grad = self._gradient(optimizer, canvases, targets_dev, batch, images, extra, settings, active)
            optimizer.step(grad, active)
            stats.steps += 1
            stats.images_forwarded += int(images.shape[0])
            progress.update(1)
        maps = optimizer.maps()
        if device.type == "cuda":  # the clock must not stop before the GPU has finished
            torch.cuda.synchronize(device)
        stats.seconds = time.perf_counter() - start
        progress.close()
        self.last_stats = stats
        return maps

    def _gradient(self, optimizer, canvases, targets, batch, images, extra, settings, active) -> Tensor:
        """Gradient of the summed per-canvas losses with respect to the optimised parameters.

        Autograd runs only from the loss to each row's copy of its canvas's map; the rows
        are then summed into their canvas in row order (:func:`_sum_rows`), and the size
        term (the same constant at every pixel) is added in closed form. Both ways of
        building the composites (broadcast when every canvas has the same number of rows,
        gathered otherwise) therefore give bit-identical gradients, and a canvas's result
        does not depend on which other canvases share its steps.
        """
        maps = optimizer.maps()
        rows_total = images.shape[0]
        chunk = settings.max_forward_batch or rows_total
        if batch.per_canvas is not None and chunk >= rows_total:
            row_grads = self._uniform_row_grads(
                maps, canvases, targets, images, extra, settings, batch.per_canvas, optimizer.plan.alpha
            )
        else:
            owner = batch.owner.to(maps.device, non_blocking=True)
            counts = torch.bincount(owner, minlength=maps.shape[0]).clamp(min=1).to(maps.dtype)
            parts = []
            for begin in range(0, rows_total, chunk):  # max_forward_batch bounds each model call
                rows = owner[begin : begin + chunk]
                parts.append(
                    self._row_grads(
                        maps.index_select(0, rows),
                        canvases.index_select(0, rows),
                        targets.index_select(0, rows),
                        counts.index_select(0, rows),
                        images[begin : begin + chunk],
                        extra,
                        settings,
                        optimizer.plan.alpha,
                    )
                )
            row_grads = _pad_rows(torch.cat(parts), owner, maps.shape[0])
        grad = _sum_rows(row_grads)
        return optimizer.map_to_theta_gradient(grad.add_(optimizer.size_gradient(active)))

    def _row_grads(self, keep, canvases, targets, counts, images, extra, settings, alpha) -> Tensor:
        """Gradient of the loss with respect to each row's map: ``images`` composited with their gathered canvases."""
        forward = partial(self._forward, extra=extra, settings=settings)
        with torch.enable_grad():
            keep = keep.unsqueeze(1).requires_grad_(True)
            # Mean over each canvas's own rows, so its loss does not depend on its neighbours.
            loss = composite_loss(forward, images, keep, canvases, targets, counts)
            return torch.autograd.grad(alpha * loss, keep)[0][:, 0]

    def _uniform_row_grads(self, maps, canvases, targets, images, extra, settings, per_canvas, alpha) -> Tensor:
        """As :meth:`_row_grads` when every canvas has ``per_canvas`` consecutive rows.

        The canvases are broadcast over their rows instead of gathered (no copy per row);
        the arithmetic is the same, so the numbers are too.
        """
        count, channels, height, width = canvases.shape
        forward = partial(self._forward, extra=extra, settings=settings)
        with torch.enable_grad():
            keep = maps.view(count, 1, 1, height, width).expand(count, per_canvas, 1, height, width)
            keep = keep.contiguous().requires_grad_(True)
            base = images.reshape(count, per_canvas, channels, height, width)
            loss = composite_loss(
                forward, base, keep, canvases.unsqueeze(1), targets.repeat_interleave(per_canvas), float(per_canvas)
            )
            return torch.autograd.grad(alpha * loss, keep)[0].view(count, per_canvas, height, width)

    def _forward(self, composite: Tensor, extra: Any, settings: _RunSettings) -> Tensor:
        """One model call, in the memory format and autocast precision the caller asked for.

        The logits come back in float32, so that the loss is computed in float32 under autocast.
        """
        if settings.channels_last:
            composite = composite.contiguous(memory_format=torch.channels_last)
        if settings.autocast_dtype is None:
            return call_model(self.forward_func, (composite,), extra).float()
        with torch.autocast(device_type=composite.device.type, dtype=settings.autocast_dtype):
            logits = call_model(self.forward_func, (composite,), extra)
        return logits.float()


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


@dataclass(frozen=True)
class _RunSettings:
    """How the model is called during a search (not how the map is optimised)."""

    max_forward_batch: Optional[int] = None
    autocast_dtype: Optional[torch.dtype] = None
    channels_last: bool = False


_AUTOCAST_DTYPES = (torch.bfloat16, torch.float16)


def _run_settings(max_forward_batch, autocast_dtype, channels_last) -> _RunSettings:
    """Check the execution settings of :meth:`ClassPattern.attribute`."""
    if max_forward_batch is not None and (
        isinstance(max_forward_batch, bool) or not isinstance(max_forward_batch, int) or max_forward_batch < 1
    ):
        raise ValueError(f"max_forward_batch must be a positive int or None, got {max_forward_batch!r}.")
    if autocast_dtype is not None:
        if not isinstance(autocast_dtype, torch.dtype):
            raise TypeError(f"autocast_dtype must be a torch.dtype such as torch.bfloat16, got {autocast_dtype!r}.")
        if autocast_dtype not in _AUTOCAST_DTYPES:
            raise ValueError(f"autocast_dtype must be torch.bfloat16 or torch.float16, got {autocast_dtype}.")
    if not isinstance(channels_last, bool):
        raise TypeError(f"channels_last must be a bool, got {type(channels_last).__name__}.")
    return _RunSettings(max_forward_batch, autocast_dtype, channels_last)


class _MapOptimizer:
    """The optimised map of every canvas and its update rule, all canvases in one tensor.

    ``"sign"`` optimises the map itself (signed steps, clamped to [0, 1]); ``"adam"``
    optimises logits ``theta`` with ``map = sigmoid(theta)``. A canvas moves only on the
    steps where it is ``active`` (it had images in the batch), and an annealed step size
    follows each canvas's own progress, so a canvas's result does not depend on the
    canvases searched with it.
    """

    def __init__(self, plan: SearchSchedule, count: int, height: int, width: int, dtype, device, planned) -> None:
        self.plan = plan
        start = plan.init if plan.optimizer == "sign" else math.log(plan.init / (1 - plan.init))
        self.theta = torch.full((count, height, width), start, device=device, dtype=dtype)
        # d(size term)/d(map) at every pixel: (1 - alpha) / (H W / 2), the paper's normalisation.
        self.size_weight = (1 - plan.alpha) / (height * width / 2.0)
        self.taken = torch.zeros(count, device=device, dtype=torch.long)
        if plan.optimizer == "adam":
            self.moment1 = torch.zeros_like(self.theta)
            self.moment2 = torch.zeros_like(self.theta)
        self.lockstep: Optional[int] = None
        if plan.anneals:
            self._plan_step_sizes(planned.cpu(), dtype, device)

    def _plan_step_sizes(self, planned: Tensor, dtype, device) -> None:
        """Tabulate the annealed step sizes once, one row per distinct number of steps.

        Every canvas reads its step from the same float table whether it is searched alone
        or with others, so both give identical numbers. While all canvases plan the same
        number of steps and have all been active at every step, they share one step size,
        read as a Python float (no tensor work per step).
        """
        totals, self.group = torch.unique(planned.clamp(min=1), return_inverse=True)
        longest = int(totals.max())
        final = self.plan.final_step_size
        assert final is not None  # only annealed plans build a table
        table = torch.full((totals.numel(), longest), float(final), dtype=torch.float64)
        for row, total in enumerate(totals.tolist()):
            table[row, :total] = torch.tensor(
                [self.plan.step_size_at(t / total) for t in range(total)], dtype=torch.float64
            )
        self.table_cpu = table.to(dtype)
        self.table = self.table_cpu.to(device)
        self.group = self.group.to(device)
        self.lockstep = 0 if totals.numel() == 1 else None

    def to_map(self, theta: Tensor) -> Tensor:
        """The map in [0, 1] that ``theta`` stands for."""
        return theta if self.plan.optimizer == "sign" else torch.sigmoid(theta)

    def maps(self) -> Tensor:
        """The current maps, detached."""
        return self.to_map(self.theta).detach()

    def size_gradient(self, active: Optional[Tensor]):
        """Gradient of the size term with respect to the map (zero for inactive canvases)."""
        if active is None:
            return self.size_weight
        return active.to(self.theta.dtype).view(-1, 1, 1) * self.size_weight

    def map_to_theta_gradient(self, grad: Tensor) -> Tensor:
        """Chain rule from the map to ``theta`` (the identity for ``"sign"``)."""
        if self.plan.optimizer == "sign":
            return grad
        maps = torch.sigmoid(self.theta)
        return grad.mul_(maps * (1 - maps))

    def _step_sizes(self):
        if not self.plan.anneals:
            return self.plan.step_size
        last = self.table.shape[1] - 1
        if self.lockstep is not None:
            return float(self.table_cpu[0, min(self.lockstep, last)])
        return self.table[self.group, self.taken.clamp(max=last)].view(-1, 1, 1)

    def step(self, grad: Tensor, active: Optional[Tensor]) -> None:
        """Update the canvases marked in ``active`` (a bool tensor; ``None``: all) with ``grad``.

        ``grad`` is consumed (overwritten).
        """
        keep = None if active is None else active.view(-1, 1, 1)
        size = self._step_sizes()
        if self.plan.optimizer == "sign":
            stepped = self.theta - grad.sign_().mul_(size)
            stepped.clamp_(0.0, 1.0)
        else:
            stepped = self._adam(grad, size, keep)
        self.theta = stepped if keep is None else torch.where(keep, stepped, self.theta)
        self.taken += 1 if active is None else active.to(self.taken.dtype)
        self.lockstep = self.lockstep + 1 if keep is None and self.lockstep is not None else None

    def _adam(self, grad: Tensor, size, keep: Optional[Tensor]) -> Tensor:
        beta1, beta2 = self.plan.betas
        moment1 = beta1 * self.moment1 + (1 - beta1) * grad
        moment2 = beta2 * self.moment2 + (1 - beta2) * grad * grad
        self.moment1 = moment1 if keep is None else torch.where(keep, moment1, self.moment1)
        self.moment2 = moment2 if keep is None else torch.where(keep, moment2, self.moment2)
        t = (self.taken + 1).to(self.theta.dtype).view(-1, 1, 1)
        update = (self.moment1 / (1 - beta1**t)) / ((self.moment2 / (1 - beta2**t)).sqrt() + 1e-8)
        return self.theta - size * update


def short_search(
    model: Callable, canvases: Tensor, targets: List[int], images: Tensor, labels: Any, steps: int, seed: int
) -> Tensor:
    """A default-schedule search of ``steps`` steps, as ``best_of_n`` canvas choice runs it per candidate."""
    return ClassPattern(model).attribute(
        canvases,
        target=targets,
        baselines=images,
        baseline_labels=labels,
        seed=seed,
        schedule=DEFAULT_SCHEDULE.replace(steps=steps),
    )

"""ClassPattern: the class-wise pattern search of Zhao et al. (2021) as a Captum attribution."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, Union

import torch
import torch.nn.functional as F
from captum.attr import GradientAttribution
from captum.log import log_usage
from torch import Tensor
from tqdm.auto import tqdm

from ._helpers import (
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
from .schedule import SearchSchedule, resolve_schedule
from .search_data import make_search_set


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
    def attribute(  # type: ignore[override]
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
            show_progress: show a tqdm progress bar.

        Returns:
            The learned maps, shaped like ``inputs`` (the H x W map repeated over
            channels), in [0, 1]; a tuple if ``inputs`` was a tuple.

        Raises:
            ValueError: bad shapes, NaN, pixels outside [0, 1], a target out of range, an
                empty search set once a canvas's class is excluded, or tensors on another
                device than the model.
            TypeError: inputs or targets of the wrong type.
        """
        plan = resolve_schedule(schedule)
        if baselines is None:
            baselines, baseline_labels = self.baselines, (
                baseline_labels if baseline_labels is not None else self.baseline_labels
            )
        if inputs is None:
            from .canvas import select_canvases

            if target is None:
                raise ValueError("target is required: the class (int) or classes (list) to search.")
            classes = target if not isinstance(target, int) else [target]
            inputs = select_canvases(
                self.forward_func, baselines, baseline_labels, classes, strategy=canvas_strategy, seed=seed
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
                canvases.detach(), targets, search_set, plan, additional_forward_args, max_forward_batch, show_progress
            )
        expanded = maps.unsqueeze(1).expand_as(canvases).contiguous()
        return mirror([expanded], was_tuple)

    def _search(self, canvases, targets, search_set, plan, extra, max_forward_batch, show_progress) -> Tensor:
        device = canvases.device
        count, _, height, width = canvases.shape
        targets_dev = targets.to(device)
        if plan.optimizer == "sign":
            theta = torch.full((count, height, width), plan.init, device=device, dtype=canvases.dtype)
        else:
            theta = torch.full((count, height, width), math.log(plan.init / (1 - plan.init)), device=device)
            theta = theta.to(canvases.dtype)
            moment1, moment2 = torch.zeros_like(theta), torch.zeros_like(theta)
            taken = torch.zeros(count, device=device)
        half_area = height * width / 2.0
        stats = SearchStats()
        start = time.perf_counter()
        progress = tqdm(
            total=self._total_steps(search_set, plan), desc="Class Pattern attribution", disable=not show_progress
        )
        for batch, active in search_set.steps(plan.epochs, plan.steps):
            images = batch.images.to(device, non_blocking=True)
            owner = batch.owner.to(device)
            active = active.to(device)
            grad = self._gradient(
                theta, plan, canvases, targets_dev, images, owner, extra, half_area, max_forward_batch, active
            )
            keep = active.view(-1, 1, 1)
            if plan.optimizer == "sign":
                stepped = (theta - plan.step_size * grad.sign()).clamp_(0.0, 1.0)
            else:
                beta1, beta2 = plan.betas
                taken = taken + active.to(taken.dtype)
                moment1 = torch.where(keep, beta1 * moment1 + (1 - beta1) * grad, moment1)
                moment2 = torch.where(keep, beta2 * moment2 + (1 - beta2) * grad * grad, moment2)
                t = taken.clamp(min=1).view(-1, 1, 1)
                update = (moment1 / (1 - beta1**t)) / ((moment2 / (1 - beta2**t)).sqrt() + 1e-8)
                stepped = theta - plan.step_size * update
            theta = torch.where(keep, stepped, theta)
            stats.steps += 1
            stats.images_forwarded += int(owner.numel())
            progress.update(1)
        progress.close()
        stats.seconds = time.perf_counter() - start
        self.last_stats = stats
        return theta.detach() if plan.optimizer == "sign" else torch.sigmoid(theta).detach()

    def _gradient(self, theta, plan, canvases, targets, images, owner, extra, half_area, max_forward_batch, active):
        """Gradient of the summed per-canvas losses with respect to ``theta``."""
        counts = torch.bincount(owner, minlength=theta.shape[0]).clamp(min=1).to(canvases.dtype)
        leaf = theta.detach().requires_grad_(True)
        chunk = max_forward_batch or owner.numel()
        grad = torch.zeros_like(theta)
        for begin in range(0, owner.numel(), chunk):
            rows = owner[begin:begin + chunk]
            with torch.enable_grad():
                maps = leaf if plan.optimizer == "sign" else torch.sigmoid(leaf)
                keep = maps[rows].unsqueeze(1)
                composite = keep * canvases[rows] + (1 - keep) * images[begin:begin + chunk]
                logits = call_model(self.forward_func, (composite,), extra)
                # Per-canvas mean cross-entropy, so a canvas's loss does not depend on its neighbours.
                ce = F.cross_entropy(logits, targets[rows], reduction="none") / counts[rows]
                loss = plan.alpha * ce.sum()
                if begin == 0:
                    loss = loss + (1 - plan.alpha) * (maps.sum((1, 2)) * active).sum() / half_area
                grad += torch.autograd.grad(loss, leaf)[0]
        return grad

    @staticmethod
    def _total_steps(search_set, plan) -> Optional[int]:
        if plan.steps is not None:
            return plan.steps
        sizes = getattr(search_set, "pool_sizes", None)
        if sizes is not None:
            return plan.epochs * max(math.ceil(n / plan.batch_size) for n in sizes())
        length = getattr(search_set.source, "__len__", None)
        return plan.epochs * length() if length is not None else None

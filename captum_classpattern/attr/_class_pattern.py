"""ClassPattern: the class-wise pattern search of Zhao et al. (2021) as a Captum attribution."""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Iterable, List, Optional, Tuple, Union

import torch
from captum.attr import GradientAttribution
from captum.log import log_usage
from torch import Tensor

from .._utils import (
    TensorOrTuple,
    accepts_older_keywords,
    as_tuple,
    call_model,
    check_device,
    check_seed,
    clamp_noisy_images,
    evaluation_mode,
    expand_targets,
    mirror,
    num_classes_of,
    refuse_one_shot,
    target_classes,
    thread_scope,
)
from ._candidates import CanvasChoice, choose_canvases
from ._engine import SearchStats, run_search
from ._forward_settings import OLDER_FORWARD_KEYWORDS, ForwardSettings, fold_forward_keywords
from ._objectives import PasteObjective
from ._schedule import FAST_SCHEDULE, SearchSchedule, resolve_schedule
from ._search_data import NO_SEARCH_SET, SearchSet, make_search_set

_FORWARD_DEFAULTS = ForwardSettings()


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

    Under Captum's wrappers (``NoiseTunnel``, ``captum.metrics.sensitivity_max``), bind
    the search set here: the wrappers treat a ``baselines`` keyword as a per-input
    baseline and expand or refuse it.

    Attributes:
        last_stats: the :class:`SearchStats` of the last :meth:`attribute` call.
        last_tie_break: N x H x W, one row per canvas of the last :meth:`attribute` call
            (``None`` before any): the negated gradient of the loss with respect to each
            map pixel (its logit under ``"adam"``), summed over the search's steps. Signed steps leave many pixels at
            equal map values; pass a row as ``tie_break`` to
            :func:`~captum_classpattern.attr.top_k_pattern` to order them by this
            evidence instead of by pixel index. Under a wrapper that calls
            :meth:`attribute` several times (``NoiseTunnel``) it holds the last call's.

    Example:
        >>> cp = ClassPattern(model)
        >>> maps = cp.attribute(canvases, target=[0, 1, 2], baselines=images,
        ...                     baseline_labels=labels, seed=0)
        >>> pattern = top_k_pattern(maps[0], canvases[0], k=0.05, tie_break=cp.last_tie_break[0])
        >>> smooth = NoiseTunnel(ClassPattern(model, baselines=images, baseline_labels=labels))
        >>> maps = smooth.attribute(canvases, nt_type="smoothgrad", stdevs=0.1, target=[0, 1, 2])
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
        self.last_tie_break: Optional[Tensor] = None

    @log_usage()
    @accepts_older_keywords(OLDER_FORWARD_KEYWORDS, fold_forward_keywords)
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
        forward_settings: Optional[ForwardSettings] = None,
        show_progress: bool = False,
    ) -> TensorOrTuple:
        """Search one class-pattern map per canvas.

        Args:
            inputs: canvases, N x C x H x W with pixels in [0, 1] (or a 1-tuple of such a
                tensor, returned as a 1-tuple). Noisy canvases, as Captum's noise
                wrappers make them, are clamped into [0, 1] when they lie within
                ``[-8, 9]``; further out they are refused as data on another scale.
                ``None`` picks one canvas per target from that class's own images in the
                search set (``canvas_strategy``).
            target: the class of each canvas: an int for all, or a list/1-d integer
                tensor with one class per canvas; all are searched together.
            baselines: the search set the canvas pixels are pasted onto: a tensor
                M x C x H x W (with ``baseline_labels`` to exclude each canvas's own class;
                Captum's 1-tuple of that tensor is accepted with labels) or an iterable of
                ``(images, labels)`` such as a DataLoader, streamed one batch at a time.
                Defaults to the set bound in the constructor. Its images are cast to the
                canvases' dtype.
            additional_forward_args: passed unchanged after the images to every model
                call, also those that choose canvases; they must not depend on the batch
                size.
            baseline_labels: labels of a tensor search set.
            schedule: ``"default"``, ``"fast"`` (a quick look, a third of the default's
                model calls), ``"paper"`` (Zhao et al.'s CIFAR-10 settings),
                ``"paper-imagenet"`` (their ImageNet settings) or a
                :class:`~captum_classpattern.SearchSchedule`.
            seed: seeds the order in which search images are drawn. A canvas's result
                depends only on the seed, its class and the search set, not on which
                other canvases are searched with it.
            canvas_strategy: with ``inputs=None``: ``"confident"`` (the image the model
                classifies as the class most confidently), ``"index"`` (the first image of
                the class) or ``"best_of_n"`` (best of several short searches).
            forward_settings: how the model is called: composites per call, autocast,
                memory format (:class:`~captum_classpattern.attr.ForwardSettings`; default
                one call in the model's own precision). The older keywords
                ``max_forward_batch=``, ``autocast_dtype=`` and ``channels_last=`` are still
                accepted.
            show_progress: show a tqdm progress bar.

        Returns:
            The learned maps, shaped like ``inputs`` (the H x W map repeated over
            channels), in [0, 1]; a tuple if ``inputs`` was a tuple.

        Raises:
            ValueError: bad shapes, NaN, pixels outside [0, 1] (beyond the noise bound for
                canvases), a target or a search-set label the model does not have, a model
                whose output carries no class signal (NaN, or fewer than two classes), a
                seed outside 0..2**32 - 1, a one-shot iterator as the search set where it
                must be read more than once, an empty search set once a canvas's
                class is excluded, tensors on another device than the model, a model
                that returns probabilities instead of logits, or a model that fails on the
                canvases (e.g. another dtype or channel count; chained to its error).
            TypeError: inputs, targets (floats, booleans, strings) or settings of the
                wrong type.

        Warns:
            UserWarning: a search set without labels (its images of a canvas's own class
                cannot be excluded).
        """
        plan = resolve_schedule(schedule)
        seed = check_seed(seed)
        settings = _FORWARD_DEFAULTS if forward_settings is None else forward_settings
        if not isinstance(settings, ForwardSettings):
            raise TypeError(f"forward_settings must be a ForwardSettings, got {type(settings).__name__}.")
        classes = target_classes(target)  # the types, before any work; the range once the model has run
        if baselines is None:
            baselines, baseline_labels = (
                self.baselines,
                (baseline_labels if baseline_labels is not None else self.baseline_labels),
            )
        if inputs is None:
            if baselines is None:
                raise ValueError(NO_SEARCH_SET)
            refuse_one_shot(
                baselines, "baselines", "with inputs=None it is read to choose the canvases and again to search"
            )
            choice = CanvasChoice(canvas_strategy, seed=seed, additional_forward_args=additional_forward_args)
            short = partial(short_search, self.forward_func)
            canvases = choose_canvases(self.forward_func, baselines, baseline_labels, classes, choice, short, "target")
            was_tuple = False
        else:
            tensors, was_tuple = as_tuple(inputs)
            if len(tensors) != 1:
                raise ValueError(
                    "ClassPattern searches image patterns of single-input models: pass one canvas tensor "
                    "and the model's other inputs through additional_forward_args."
                )
            canvases = tensors[0]
        canvases = clamp_noisy_images(canvases, "inputs (canvases)")
        check_device(self.forward_func, canvases, "inputs")
        with evaluation_mode(self.forward_func, "ClassPattern"), thread_scope():
            num_classes = num_classes_of(self.forward_func, canvases[:1], additional_forward_args, "ClassPattern")
            targets = expand_targets(target, canvases.shape[0], num_classes)
            search_set = make_search_set(
                baselines, baseline_labels, targets, tuple(canvases.shape[1:]), plan.batch_size, seed, num_classes
            )
            maps = self._search(
                canvases.detach(), targets, search_set, plan, additional_forward_args, settings, show_progress
            )
        expanded = maps.unsqueeze(1).expand_as(canvases).contiguous()
        return mirror([expanded], was_tuple)

    def _search(
        self,
        canvases: Tensor,
        targets: Tensor,
        search_set: SearchSet,
        plan: SearchSchedule,
        extra: Any,
        settings: ForwardSettings,
        show_progress: bool,
    ) -> Tensor:
        outcome = run_search(
            search_set,
            PasteObjective(settings.max_forward_batch),
            canvases,
            targets,
            plan,
            partial(self._forward, extra=extra, settings=settings),
            self.forward_func,
            description="Class Pattern attribution",
            show_progress=show_progress,
        )
        self.last_stats = outcome.stats
        self.last_tie_break = outcome.evidence
        return outcome.maps

    def _forward(self, composite: Tensor, extra: Any, settings: ForwardSettings) -> Tensor:
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


def short_search(
    model: Callable, canvases: Tensor, targets: List[int], images: Tensor, labels: Any, choice: CanvasChoice
) -> Tuple[Tensor, Tensor]:
    """A fast-schedule search of ``choice.search_steps`` steps, as ``best_of_n`` runs it per candidate.

    Returns the maps and their tie-break evidence (:attr:`ClassPattern.last_tie_break`).
    """
    explainer = ClassPattern(model)
    maps = explainer.attribute(
        canvases,
        target=targets,
        baselines=images,
        additional_forward_args=choice.additional_forward_args,
        baseline_labels=labels,
        seed=choice.seed,
        schedule=FAST_SCHEDULE.replace(steps=choice.search_steps),
    )
    assert explainer.last_tie_break is not None  # set by every search
    return maps, explainer.last_tie_break

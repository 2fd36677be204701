"""The scan's searches: one map and one set of pasted values per class, on the search engine of ``attr``.

The composite of a class's map ``m`` and values ``v`` with a search image ``x`` is
``m * v + (1 - m) * x``; the loss is ``alpha * CE + (1 - alpha) * size / (H W / 2)``, the
cross-entropy being each class's mean over its own images (so that classes do not interact)
and the size the map's L1 norm, plus a multiple of its total variation when a trigger is
recovered (:class:`~captum_classpattern.attr.StampObjective`).
"""

from __future__ import annotations

from typing import Callable, List, Tuple

import torch
from torch import Tensor

from ..attr import StampObjective, search_patterns, select_canvases
from ._settings import ScanSettings


def pick_canvases(model: Callable, images: Tensor, labels: Tensor, classes: List[int], init: str) -> Tensor:
    """The starting values of each class: grey, or its most confidently classified image."""
    if init == "grey":
        return torch.full((len(classes),) + tuple(images.shape[1:]), 0.5, dtype=images.dtype, device=images.device)
    return select_canvases(model, images, labels, classes, strategy="confident").to(images.device)


def learn_patterns(
    model: Callable,
    canvases: Tensor,
    targets: Tensor,
    images: Tensor,
    labels: Tensor,
    settings: ScanSettings,
    *,
    learn_values: bool,
    alpha: float,
    seed: int,
    show_progress: bool,
    smoothness: float = 0.0,
    description: str = "Class pattern scan",
) -> Tuple[Tensor, Tensor]:
    """Search one map (and, if asked, one value image) per class with the stamp objective.

    For the last ``settings.harden`` share of the steps the composite uses the binarised
    map ``m >= 0.5`` (straight-through gradient): with a soft map the learned values act as
    a faint blend over the whole image that no top-k stamp reproduces; the hard phase makes
    the searched composite a real top-k stamp.

    Args:
        model: the classifier (in evaluation mode).
        canvases: the starting values, ``K x C x H x W``.
        targets: the class of each canvas.
        images: the search images (other-class images are drawn for each canvas).
        labels: their labels.
        settings: the schedule (:attr:`ScanSettings.schedule`), ``value_step`` and ``harden``.
        learn_values: optimise the pasted values too (else they stay the canvases).
        alpha: the weight of the cross-entropy.
        seed: seeds the order of the search images.
        show_progress: show a tqdm progress bar.
        smoothness: adds that multiple of the map's total variation to its size penalty,
            which favours one compact blob over scattered pixels (trigger recovery).
        description: the progress bar's label.

    Returns:
        ``(maps, values)``: ``K x H x W`` maps in [0, 1] and ``K x C x H x W`` values.
    """
    objective = StampObjective(
        learn_values=learn_values, value_step=settings.value_step, harden=settings.harden, smoothness=smoothness
    )
    schedule = settings.schedule.replace(alpha=alpha)
    return search_patterns(
        model, canvases, targets, images, labels, objective, schedule,
        seed=seed, show_progress=show_progress, description=description,
    )  # fmt: skip

"""The scan's search: one map and one set of pasted values per class, learned with signed steps.

The composite of a class's map ``m`` and values ``v`` with a search image ``x`` is
``m * v + (1 - m) * x``; the loss is ``alpha * CE + (1 - alpha) * size / (H W / 2)``, the
cross-entropy being each class's mean over its own images (so that classes do not interact)
and the size the map's L1 norm, plus a multiple of its total variation when a trigger is
recovered. Neural Cleanse takes the same composite step (:func:`stamp_loss`).
"""

from __future__ import annotations

from typing import Callable, List, Tuple

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .._utils import call_model, tuned_threads
from ..attr import canvas_mean_cross_entropy, make_search_set, select_canvases
from ._settings import ScanSettings


def stamp_composite(images: Tensor, keep: Tensor, values: Tensor) -> Tensor:
    """The composites ``keep * values + (1 - keep) * images``.

    The same composite as :class:`~captum_classpattern.ClassPattern`'s ``images + keep *
    (canvases - images)``, rounded differently: with a binarised map this form gives
    exactly ``values`` where ``keep`` is 1, while the other need not. The scan's and
    Neural Cleanse's results depend on this rounding bit for bit, so they keep it.

    Args:
        images: the search images, ``rows x C x H x W``.
        keep: the map of each row's class, ``rows x 1 x H x W``.
        values: the pasted values of each row's class, ``rows x C x H x W``.

    Returns:
        The composites, ``rows x C x H x W``.
    """
    return keep * values + (1 - keep) * images


def stamp_loss(
    model: Callable, images: Tensor, owner: Tensor, maps: Tensor, values: Tensor, targets: Tensor, counts: Tensor
) -> Tuple[Tensor, Tensor]:
    """One composite step: stamp each row's class onto it, classify, and sum the per-class mean cross-entropies.

    Args:
        model: the classifier.
        images: the step's search images, ``rows x C x H x W``.
        owner: the class row (index into ``maps``) of each image.
        maps: ``K x H x W`` maps.
        values: ``K x C x H x W`` pasted values.
        targets: the class of each of the ``K`` rows.
        counts: the number of images of each of the ``K`` rows in this step (at least 1).

    Returns:
        ``(logits, loss)``: the model's logits for the composites and the summed
        per-class mean cross-entropy.
    """
    composite = stamp_composite(images, maps[owner].unsqueeze(1), values[owner])
    logits = call_model(model, (composite,))
    return logits, canvas_mean_cross_entropy(logits, targets[owner], counts[owner]).sum()


def pick_canvases(model: Callable, images: Tensor, labels: Tensor, classes: List[int], init: str) -> Tensor:
    """The starting values of each class: grey, or its most confidently classified image."""
    if init == "grey":
        return torch.full((len(classes),) + tuple(images.shape[1:]), 0.5, dtype=images.dtype, device=images.device)
    return select_canvases(model, images, labels, classes, strategy="confident").to(images.device)


def total_variation(maps: Tensor) -> Tensor:
    """Sum of absolute differences between 4-neighbour pixels of K x H x W maps."""
    return (maps[:, 1:, :] - maps[:, :-1, :]).abs().sum() + (maps[:, :, 1:] - maps[:, :, :-1]).abs().sum()


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
    """Signed-gradient search of one map (and, if asked, one value image) per class.

    One model call per step holds the composites of every class; gradients are taken with
    ``torch.autograd.grad`` with respect to the map and values only, so the model's
    parameters never receive a ``.grad``.

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
        settings: ``steps``, ``batch_size``, ``step_size``, ``value_step`` and ``harden``.
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
    device = canvases.device
    count, _, height, width = canvases.shape
    steps = settings.steps
    maps = torch.full((count, height, width), 0.5, device=device, dtype=canvases.dtype)
    values = canvases.detach().clone()
    search = make_search_set(images, labels, targets, tuple(canvases.shape[1:]), settings.batch_size, seed)
    targets_dev = targets.to(device)
    half_area = height * width / 2.0
    hard_from = steps - int(round(settings.harden * steps))
    progress = tqdm(total=steps, desc=description, disable=not show_progress)
    for step, (batch, active) in enumerate(search.steps(None, steps)):
        owner = batch.owner.to(device)
        counts = torch.bincount(owner, minlength=count).clamp(min=1).to(canvases.dtype)
        leaf_m = maps.detach().requires_grad_(True)
        leaf_v = values.detach().requires_grad_(learn_values)
        with torch.enable_grad(), tuned_threads("scan search", batch.images, model):
            used = leaf_m
            if step >= hard_from:
                used = (leaf_m >= 0.5).to(leaf_m.dtype) + leaf_m - leaf_m.detach()
            _, ce = stamp_loss(model, batch.images.to(device), owner, used, leaf_v, targets_dev, counts)
            size = leaf_m.sum()
            if smoothness:
                size = size + smoothness * total_variation(leaf_m)
            loss = alpha * ce + (1 - alpha) * size / half_area
            grads = torch.autograd.grad(loss, [leaf_m, leaf_v] if learn_values else [leaf_m])
        live = active.to(device).view(-1, 1, 1)
        maps = torch.where(live, (maps - settings.step_size * grads[0].sign()).clamp(0.0, 1.0), maps)
        if learn_values:
            stepped = (values - settings.value_step * grads[1].sign()).clamp(0.0, 1.0)
            values = torch.where(live.unsqueeze(1), stepped, values)
        progress.update(1)
    progress.close()
    return maps.detach(), values.detach()

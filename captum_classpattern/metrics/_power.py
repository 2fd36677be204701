"""Metrics: predictive power of a pattern, its floor and chance levels, curves over k."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Iterable, List, Sequence, Tuple

import torch
from torch import Tensor

from .._utils import check_class_index, check_images, check_labels, check_positive_int, check_seed, share_predicted
from ..attr import Budget, Pattern, pixel_budget, pixel_scores, random_pattern, top_k_pattern


def _other_class(images: Tensor, labels: Tensor, target: int) -> Tuple[Tensor, Tensor]:
    """The images not of ``target``, and all the labels (checked)."""
    target = check_class_index(target, "target")
    check_images(images, "images")
    labels = check_labels(images, labels, "held-out")
    keep = (labels != target).to(images.device)
    if not bool(keep.any()):
        raise ValueError(f"no images of classes other than {target} to measure on.")
    return images[keep], labels


def predictive_power(
    model: Callable, pattern: Pattern, images: Tensor, labels: Tensor, target: int, batch_size: int = 512
) -> float:
    """Share of other-class images classified as ``target`` once the pattern is stamped.

    The denominator counts images whose label is not ``target`` only, as attack success
    rates are counted. Report it beside :func:`floor_rate` and
    :func:`random_pixel_power`.

    Args:
        model: the classifier (its mode is left as found).
        pattern: the :class:`~captum_classpattern.Pattern` to stamp.
        images: held-out images N x C x H x W in [0, 1].
        labels: their labels.
        target: the pattern's class.
        batch_size: images per model call.

    Returns:
        A float in [0, 1].

    Raises:
        ValueError: no other-class images, images that do not fit the pattern, or a
            ``target`` the model does not have (checked against its output width).
        TypeError: a ``target`` or labels that are not integer class indices.
    """
    others, checked = _other_class(images, labels, target)
    return share_predicted(
        model, others, target, labels=checked, batch_size=batch_size, transform=pattern.stamp, who="predictive_power"
    )


def floor_rate(model: Callable, images: Tensor, labels: Tensor, target: int, batch_size: int = 512) -> float:
    """Share of other-class images already classified as ``target`` without any pattern.

    Args:
        model: the classifier (its mode is left as found).
        images: held-out images N x C x H x W in [0, 1].
        labels: their labels.
        target: the class.
        batch_size: images per model call.

    Returns:
        A float in [0, 1].

    Raises:
        ValueError: no other-class images, or a ``target`` the model does not have.
        TypeError: a ``target`` or labels that are not integer class indices.
    """
    others, checked = _other_class(images, labels, target)
    return share_predicted(model, others, target, labels=checked, batch_size=batch_size, who="floor_rate")


def random_pixel_power(
    model: Callable,
    canvas: Tensor,
    images: Tensor,
    labels: Tensor,
    target: int,
    k: Budget,
    trials: int = 5,
    seed: int = 0,
    batch_size: int = 512,
) -> float:
    """Mean predictive power of ``k`` random canvas pixels over ``trials`` draws (chance).

    The draws are stamped together: each model call classifies every draw on
    ``batch_size // trials`` images, so the draws cost one pass over the images.

    Args:
        model: the classifier.
        canvas: C x H x W image the random pixels are taken from.
        images: held-out images N x C x H x W in [0, 1].
        labels: their labels.
        target: the class.
        k: the number (int) or share (float) of pixels.
        trials: random draws averaged.
        seed: seeds the draws.
        batch_size: images per model call.

    Returns:
        A float in [0, 1].

    Raises:
        ValueError: ``trials`` < 1, a seed outside 0..2**32 - 1, and as :func:`predictive_power`.
        TypeError: a seed that is not an int, and as :func:`predictive_power`.
    """
    check_positive_int(trials, "trials")
    check_class_index(target, "target")
    generator = torch.Generator().manual_seed(check_seed(seed))
    draws = [random_pattern(canvas, k, generator) for _ in range(trials)]
    others, checked = _other_class(images, labels, target)

    def stamp_every_draw(batch: Tensor) -> Tensor:
        return torch.cat([draw.stamp(batch) for draw in draws])

    # Every draw is measured on the same images, so the mean of the draws' shares is the
    # share over all (draw, image) pairs.
    return share_predicted(
        model,
        others,
        target,
        labels=checked,
        batch_size=max(1, batch_size // trials),
        transform=stamp_every_draw,
        who="random_pixel_power",
    )


@dataclass
class PowerCurve:
    """Predictive power as a function of the pattern size.

    Attributes:
        ks: pattern sizes in pixels.
        fractions: the same sizes as fractions of the image.
        powers: predictive power at each size.
        area: area under the power-vs-fraction curve, divided by the fraction range it
            spans, so 1.0 means every size flips every image.
    """

    ks: List[int]
    fractions: List[float]
    powers: List[float]
    area: float


def power_curve(
    model: Callable,
    attribution: Tensor,
    canvas: Tensor,
    images: Tensor,
    labels: Tensor,
    target: int,
    ks: Sequence[Budget] = (0.01, 0.02, 0.05, 0.1, 0.2),
    batch_size: int = 512,
) -> PowerCurve:
    """Predictive power of the top-k pixels of ``attribution`` for several ``k``.

    Works for a ClassPattern map and for any Captum attribution of the canvas.

    Args:
        model: the classifier.
        attribution: H x W (or C x H x W) scores of the canvas's pixels.
        canvas: C x H x W image the pattern is taken from.
        images: held-out images N x C x H x W in [0, 1].
        labels: their labels.
        target: the class.
        ks: the pattern sizes, numbers (int) or shares (float) of pixels.
        batch_size: images per model call.

    Returns:
        A :class:`PowerCurve`.

    Raises:
        ValueError: no sizes in ``ks``, and as :func:`predictive_power`.
        TypeError: as :func:`predictive_power`.
    """
    check_class_index(target, "target")
    sizes = [] if isinstance(ks, (str, bytes)) or not isinstance(ks, Iterable) else list(ks)
    if not sizes:
        raise ValueError(f"ks must be a non-empty sequence of pattern sizes, got {ks!r}.")
    height, width = canvas.shape[-2:]
    counts = sorted({pixel_budget(k, height, width) for k in sizes})
    # One warning for the whole curve (below) instead of one per size.
    powers = [
        predictive_power(
            model, top_k_pattern(attribution, canvas, k, warn_filler=False), images, labels, target, batch_size
        )
        for k in counts
    ]
    supporting = int((pixel_scores(attribution.detach(), False) > 0).sum())
    if supporting < counts[-1]:
        warnings.warn(
            f"the map has only {supporting} pixel(s) with a positive score: the curve's sizes above "
            f"{supporting} are filled up with arbitrary pixels.",
            RuntimeWarning,
            stacklevel=2,
        )
    fractions = [k / (height * width) for k in counts]
    if len(counts) > 1:
        steps = zip(powers[:-1], powers[1:], fractions[:-1], fractions[1:])
        area = sum((a + b) / 2 * (f1 - f0) for a, b, f0, f1 in steps) / (fractions[-1] - fractions[0])
    else:
        area = float(powers[0])
    return PowerCurve(counts, fractions, powers, area)

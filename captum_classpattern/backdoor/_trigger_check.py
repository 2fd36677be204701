"""Placing a recovered trigger where the model answers to it, and measuring whether it works.

The recovery search's size and smoothness penalties pull the recovered region towards
wherever it is cheapest, and a model that pools its features answers to a trigger a few
pixels off almost as well as to the trigger itself. :func:`locate_trigger` slides the
recovered stamp (its selected pixels with their learned values) over small shifts and
keeps the one that raises the class's margin most on clean images of other classes: the
place the model answers to most. :func:`trigger_success` measures the share of other-class
images a stamp sends to the class, so a recovered trigger is reported with how well it
works, or not at all; :func:`trigger_elsewhere` measures whether it works at other places
too, where its place says nothing about the attacker's; :func:`trigger_mirror_success`
measures it flipped left to right, the place a model trained on flipped images learns too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .._utils import check_class_index, check_images, check_labels, evaluation_mode
from ._attack_metrics import attack_success_rate
from ._max_margin import class_margins

HALF = 0.5
"""The strength the stamp is tried at while it is placed."""
SHORTLIST = 8
"""Shifts kept from the first, quarter-size pass of :func:`locate_trigger` for the full pass."""
FIRST_PASS_MIN_IMAGES = 32
"""The first pass runs only when a quarter of the images is at least this many."""
PLACE_FREE = 0.5
"""A recovered trigger that works at this share of other places or more (:func:`trigger_elsewhere`) has no place."""


@dataclass(frozen=True)
class LocatedTrigger:
    """A recovered trigger moved to where the model answers to it most.

    Attributes:
        map: H x W map, shifted (pixels shifted in from outside are 0).
        values: C x H x W pasted values, shifted the same way.
        shift: ``(rows, columns)`` it was moved by (positive: down, right).
        margin: the mean margin of the class over the other classes' best logit, on the
            other-class images, with the stamp at its new place blended in at half strength.
    """

    map: Tensor
    values: Tensor
    shift: Tuple[int, int]
    margin: float


def _shifted(tensor: Tensor, rows: int, cols: int) -> Tensor:
    """``tensor`` (... x H x W) moved by ``rows`` down and ``cols`` right, zero-filled (no wrap-around)."""
    height, width = tensor.shape[-2:]
    padded = F.pad(tensor, (max(cols, 0), max(-cols, 0), max(rows, 0), max(-rows, 0)))
    top, left = max(-rows, 0), max(-cols, 0)
    return padded[..., top : top + height, left : left + width]


def _stamp_margin(model: Callable, images: Tensor, mask: Tensor, values: Tensor, cls: int) -> float:
    # At full strength a trigger a pixel or two off already saturates the margin; at half
    # strength the place the model answers to most still stands out.
    weight = HALF * mask.to(images.device, images.dtype)
    stamped = images + weight * (values.to(images.device, images.dtype) - images)
    logits = model(stamped)
    return float(class_margins(logits, torch.full_like(logits[:, 0], cls, dtype=torch.long)).mean())


def _other_class_images(images: Tensor, labels: Tensor, cls: int, limit: int) -> Tensor:
    check_images(images, "images")
    labels = check_labels(images, labels, "images")
    others = images[(labels != cls).to(images.device)][:limit]
    if others.shape[0] == 0:
        raise ValueError(f"no images outside class {cls} to try the trigger on.")
    return others


def locate_trigger(
    model: Callable,
    trigger_map: Tensor,
    values: Tensor,
    images: Tensor,
    labels: Tensor,
    cls: int,
    max_shift: int = 4,
    limit: int = 512,
) -> LocatedTrigger:
    """Slide a recovered trigger by up to ``max_shift`` pixels to where the model answers to it most.

    The stamp is the map's pixels at or above 0.5 with their values; every shift that
    keeps them inside the image is tried on up to ``limit`` images of other classes, blended
    in at half strength (at full strength a stamp a pixel or two off often flips every
    image too), and the shift with the largest mean margin of ``cls`` wins (the smaller
    shift on a tie). With more than ``SHORTLIST`` (8) shifts and at least 128 images, every
    shift is first tried on a quarter of the images and only the 8 best go on to all of them.

    Args:
        model: the classifier (its mode is left as found).
        trigger_map: H x W recovered map in [0, 1].
        values: C x H x W recovered values.
        images: clean N x C x H x W images in [0, 1].
        labels: their labels.
        cls: the class the trigger sends images to.
        max_shift: the largest shift in rows or columns; 0 returns the trigger as it is.
        limit: at most this many other-class images are used.

    Returns:
        A :class:`LocatedTrigger`.

    Raises:
        ValueError: mismatched shapes, no image outside ``cls``, or a negative shift.
    """
    cls = check_class_index(cls, "cls")
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}.")
    if trigger_map.shape != values.shape[-2:] or trigger_map.shape != images.shape[-2:]:
        raise ValueError(
            f"the trigger map {tuple(trigger_map.shape)}, values {tuple(values.shape)} and images "
            f"{tuple(images.shape)} must share height and width."
        )
    others = _other_class_images(images, labels, cls, limit)
    mask = trigger_map >= 0.5
    shifts = _shifts_inside(mask, max_shift)
    with evaluation_mode(model, "locate_trigger"), torch.no_grad():
        if len(shifts) > SHORTLIST and others.shape[0] >= 4 * FIRST_PASS_MIN_IMAGES:
            # Every shift on every fourth image (not the first quarter, which holds only
            # a class or two when the images are sorted by class), then the best few on
            # all of them: a third of the model calls, and the winner of the full pass among them.
            first = _ranked_shifts(model, others[::4], mask, values, cls, shifts)
            shifts = [(down, right) for _, _, down, right in first[:SHORTLIST]]
        best = _ranked_shifts(model, others, mask, values, cls, shifts)[0]
    margin, _, down, right = best
    return LocatedTrigger(_shifted(trigger_map, down, right), _shifted(values, down, right), (down, right), margin)


def _shifts_inside(mask: Tensor, max_shift: int) -> List[Tuple[int, int]]:
    """The shifts of up to ``max_shift`` rows and columns that keep every selected pixel inside the image."""
    rows, cols = mask.nonzero(as_tuple=True)
    if rows.numel() == 0:
        return [(0, 0)]
    height, width = mask.shape
    return [
        (down, right)
        for down in range(-max_shift, max_shift + 1)
        for right in range(-max_shift, max_shift + 1)
        if int(rows.min()) + down >= 0
        and int(rows.max()) + down < height
        and int(cols.min()) + right >= 0
        and int(cols.max()) + right < width
    ]


def _ranked_shifts(
    model: Callable, images: Tensor, mask: Tensor, values: Tensor, cls: int, shifts: List[Tuple[int, int]]
) -> List[Tuple[float, int, int, int]]:
    """``(margin, -|shift|, rows, columns)`` of each shift, best first (the smaller shift on a tie)."""
    ranked = [
        (_stamp_margin(model, images, _shifted(mask, down, right), _shifted(values, down, right), cls),
         -(abs(down) + abs(right)), down, right)
        for down, right in shifts
    ]  # fmt: skip
    return sorted(ranked, key=lambda entry: entry[:2], reverse=True)


def trigger_success(model: Callable, mask: Tensor, values: Tensor, images: Tensor, labels: Tensor, cls: int) -> float:
    """The share of other-class images that a stamp (``mask`` pixels set to ``values``) sends to ``cls``.

    The attack success rate (:func:`attack_success_rate`) of the stamp.

    Args:
        model: the classifier (its mode is left as found).
        mask: H x W boolean mask of the stamped pixels.
        values: C x H x W values (only the masked pixels are used).
        images: clean N x C x H x W images in [0, 1] (held-out, for an honest figure).
        labels: their labels.
        cls: the class.

    Returns:
        A float in [0, 1].

    Raises:
        ValueError: mismatched shapes or no image outside ``cls``.
    """
    if mask.shape != images.shape[-2:]:
        raise ValueError(f"the mask {tuple(mask.shape)} and images {tuple(images.shape)} must share height and width.")

    def stamp(batch: Tensor) -> Tensor:
        return torch.where(mask.bool().to(batch.device), values.to(batch.device, batch.dtype), batch)

    return attack_success_rate(model, images, labels, stamp, cls)


def trigger_mirror_success(
    model: Callable, mask: Tensor, values: Tensor, images: Tensor, labels: Tensor, cls: int
) -> float:
    """The share of other-class images that a stamp flipped left to right sends to ``cls``.

    Training that flips images left to right (the usual augmentation) flips the poisoned
    ones too, so the model learns a stamped trigger at its mirror place as well. A recovered
    trigger that works mirrored sits at one of two places the model answers to, and either
    may be where the attacker put it; one that does not is tied to its own side.

    Args:
        model: the classifier (its mode is left as found).
        mask: H x W boolean mask of the stamped pixels, as recovered (unflipped).
        values: C x H x W values (only the masked pixels are used).
        images: clean N x C x H x W images in [0, 1] (held-out, for an honest figure).
        labels: their labels.
        cls: the class.

    Returns:
        A float in [0, 1]: :func:`trigger_success` of the mirrored stamp.

    Raises:
        ValueError: mismatched shapes or no image outside ``cls``.

    Example:
        >>> trigger = result.recovered_trigger(0)
        >>> trigger_mirror_success(model, trigger.mask, trigger.values, held_images, held_labels, 0)
    """
    if values.shape[-2:] != mask.shape:
        raise ValueError(f"the mask {tuple(mask.shape)} and values {tuple(values.shape)} must share height and width.")
    return trigger_success(model, mask.flip(-1), values.flip(-1), images, labels, cls)


def trigger_elsewhere(
    model: Callable,
    mask: Tensor,
    values: Tensor,
    images: Tensor,
    labels: Tensor,
    cls: int,
    min_success: float = 0.8,
    limit: int = 512,
) -> float:
    """The share of other places in the image at which a stamp still works: whether the model ties it to its place.

    The stamp (``mask`` pixels with their ``values``) is moved, whole, so that its bounding
    box sits at each of nine places spread over the image (each corner, the middle of each
    side, the centre); the place nearest to where it is now is left out (and places that
    coincide, for a stamp nearly as large as the image), and at each of the others the
    stamp is counted as working when it sends at least ``min_success`` of up to ``limit``
    other-class images to ``cls``. A model that pools its features answers to a pattern
    wherever it is stamped: a recovered trigger that works at most places has the
    attacker's pattern, but its place says nothing about where the attacker put it.

    Args:
        model: the classifier (its mode is left as found).
        mask: H x W boolean mask of the stamped pixels.
        values: C x H x W values (only the masked pixels are used).
        images: clean N x C x H x W images in [0, 1] (held-out, for an honest figure).
        labels: their labels.
        cls: the class.
        min_success: the share of images a working stamp sends to ``cls``.
        limit: at most this many other-class images are used.

    Returns:
        A float in [0, 1]; 0 for an empty mask or a stamp as large as the image (it cannot move).

    Raises:
        ValueError: mismatched shapes or no image outside ``cls``.

    Example:
        >>> trigger = result.recovered_trigger(0)
        >>> trigger_elsewhere(model, trigger.mask, trigger.values, held_images, held_labels, 0)
    """
    cls = check_class_index(cls, "cls")
    if mask.shape != images.shape[-2:] or values.shape[-2:] != mask.shape:
        raise ValueError(
            f"the mask {tuple(mask.shape)}, values {tuple(values.shape)} and images {tuple(images.shape)} must share "
            "height and width."
        )
    others = _other_class_images(images, labels, cls, limit)
    mask = mask.bool()
    places = _other_places(mask)
    if not places:
        return 0.0
    working = 0
    with evaluation_mode(model, "trigger_elsewhere"), torch.no_grad():
        for down, right in places:
            moved, moved_values = _shifted(mask, down, right), _shifted(values, down, right)
            stamped = torch.where(moved.to(others.device), moved_values.to(others.device, others.dtype), others)
            sent = (model(stamped).argmax(1) == cls).double().mean()
            working += int(float(sent) >= min_success)
    return working / len(places)


def _other_places(mask: Tensor) -> List[Tuple[int, int]]:
    """Shifts that put the mask's bounding box at eight places over the image, the one nearest its own left out."""
    rows, cols = mask.nonzero(as_tuple=True)
    if rows.numel() == 0:
        return []
    height, width = mask.shape
    top, left = int(rows.min()), int(cols.min())
    free_rows, free_cols = height - 1 - (int(rows.max()) - top), width - 1 - (int(cols.max()) - left)
    if free_rows == 0 and free_cols == 0:
        return []
    spots = {(row, col) for row in (0, free_rows // 2, free_rows) for col in (0, free_cols // 2, free_cols)}
    nearest = min(spots, key=lambda spot: (abs(spot[0] - top) + abs(spot[1] - left), spot))
    return [(row - top, col - left) for row, col in sorted(spots - {nearest})]

"""Reading dissection data: ``(images, masks[, image_labels])`` batches, checked batch by batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Optional, Tuple

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

DATA_CHANGED = (
    "the data changed between dissection passes (random augmentation?); dissect needs data "
    "that yields the same images and masks every time it is iterated."
)
"""The message of the error raised when a later pass sees other data than the first."""


@dataclass
class Batch:
    """One checked batch.

    Attributes:
        images: N x C x H x W float images.
        masks: N x K x Hm x Wm integer concept ids; 0 is no concept, < 0 not annotated.
        labels: N x num_concepts bool image-level concepts, or ``None``.
    """

    images: Tensor
    masks: Tensor
    labels: Optional[Tensor]


def batches(data: Any, batch_size: int) -> Iterable:
    """Iterate batches: whole tensors are split, map-style data sets go through a DataLoader."""
    if isinstance(data, tuple) and data and all(isinstance(item, Tensor) for item in data):
        count = data[0].shape[0]
        return (tuple(item[start : start + batch_size] for item in data) for start in range(0, count, batch_size))
    if isinstance(data, Dataset):
        return DataLoader(data, batch_size=batch_size, shuffle=False)
    return data


def parse_batch(batch: Any, index: int) -> Batch:
    """Check one raw batch and return it as a :class:`Batch` (masks N x K x Hm x Wm, long).

    Raises:
        TypeError: not an ``(images, masks[, image_labels])`` tuple, or tensors of the wrong kind.
        ValueError: shapes that do not fit each other.
    """
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
    _check_aspect(images, masks, index)
    if labels is not None:
        if not isinstance(labels, Tensor) or labels.dim() != 2 or labels.shape[0] != images.shape[0]:
            shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
            raise ValueError(
                f"batch {index}: image_labels must be multi-hot N x num_concepts, got {shape} for "
                f"{images.shape[0]} images."
            )
        labels = labels != 0
    return Batch(images, masks.long(), labels)


# Relative difference of the height/width ratios of images and masks tolerated as rounding
# (e.g. 225 x 300 images with 112 x 150 masks); anything larger would stretch the activations.
_ASPECT_TOLERANCE = 0.02


def _check_aspect(images: Tensor, masks: Tensor, index: int) -> None:
    """Refuse masks whose aspect ratio differs from the images'.

    Activations are upsampled to the masks' resolution; with another aspect ratio they would
    be stretched silently and every IoU computed against misplaced pixels.
    """
    image_h, image_w = images.shape[-2:]
    mask_h, mask_w = masks.shape[-2:]
    if abs(image_h * mask_w - image_w * mask_h) > _ASPECT_TOLERANCE * image_w * mask_h:
        raise ValueError(
            f"batch {index}: masks are {mask_h} x {mask_w} but images are {image_h} x {image_w}: the aspect "
            "ratios differ, so activations would be stretched; resize the masks (nearest-neighbour) to the "
            "images' aspect ratio."
        )


class Layout:
    """What the first pass learns about the data, and the checks that every batch agrees."""

    def __init__(self) -> None:
        self.images = 0
        self.mask_channels = -1
        self.mask_size: Tuple[int, int] = (0, 0)
        self.label_width: Optional[int] = None
        self.max_id = 0
        self.units = 0

    def check(self, batch: Batch, features: Tensor, index: int) -> None:
        """Learn the layout from the first batch; check that every later batch has the same.

        Raises:
            ValueError: a batch's mask categories, resolution or label width differ from the first's.
        """
        channels, size = batch.masks.shape[1], (int(batch.masks.shape[2]), int(batch.masks.shape[3]))
        width = None if batch.labels is None else batch.labels.shape[1]
        if self.images == 0:
            self.mask_channels, self.mask_size = channels, size
            self.label_width, self.units = width, features.shape[1]
        elif (channels, size) != (self.mask_channels, self.mask_size) or width != self.label_width:
            raise ValueError(
                f"batch {index}: masks {channels} x {size} / image_labels width {width} differ from the "
                f"first batch's {self.mask_channels} x {self.mask_size} / {self.label_width}; every batch "
                "needs the same mask categories and resolution (resize masks with nearest-neighbour)."
            )
        self.images += batch.images.shape[0]
        if batch.masks.numel():
            self.max_id = max(self.max_id, int(batch.masks.max()))

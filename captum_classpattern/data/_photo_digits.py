"""Photo digits: the bundled handwritten digits over crops of the colour photographs bundled with scikit-image."""

from __future__ import annotations

import functools
import os
from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .._utils import check_positive_int
from ._loaders import DIGIT_CLASSES, Dataset3, Split, load_digits

PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "ihc.png",
    "color.png",
    "brick.png",
    "grass.png",
    "gravel.png",
)
"""The photographs (files of ``skimage/data``) the backgrounds are cropped from; grey ones get three equal channels."""

_PHOTO_SIDE = 128  # photos are downscaled once so that their shorter side has this many pixels
_CROP_SHARE = (0.25, 0.5)  # a crop's side, as a share of the photo's shorter side


def _photo_folder() -> str:
    import skimage.data

    return str(skimage.data.__path__[0])


@functools.lru_cache(maxsize=1)
def _photos() -> Tuple[Tensor, ...]:
    """The photographs as 3 x H x W float tensors in [0, 1], shorter side ``_PHOTO_SIDE``, read once."""
    from skimage.io import imread

    folder = _photo_folder()
    found = [name for name in PHOTOS if os.path.isfile(os.path.join(folder, name))]
    if len(found) < 4:
        raise FileNotFoundError(
            f"only {len(found)} of the photographs {', '.join(PHOTOS)} are in {folder}; install a complete "
            "scikit-image (pip install 'scikit-image>=0.19'), whose wheel bundles them."
        )
    photos = []
    for name in found:
        array = np.asarray(imread(os.path.join(folder, name)))
        if array.ndim == 2:
            array = np.repeat(array[:, :, None], 3, axis=2)
        image = torch.from_numpy(np.ascontiguousarray(array[:, :, :3])).permute(2, 0, 1).float().div_(255.0)
        scale = _PHOTO_SIDE / min(image.shape[-2:])
        shape = (round(image.shape[-2] * scale), round(image.shape[-1] * scale))
        image = F.interpolate(image[None], size=shape, mode="bilinear", antialias=True, align_corners=False)[0]
        photos.append(image.clamp_(0, 1))
    return tuple(photos)


def photo_crops(count: int, size: int, rng: np.random.Generator) -> Tensor:
    """``count`` random square crops of the photographs, resized to ``size`` x ``size``, some mirrored.

    Args:
        count: number of crops.
        size: side of the returned crops.
        rng: the generator that draws photo, side, position and mirroring of each crop.

    Returns:
        A count x 3 x size x size float tensor in [0, 1].
    """
    from torchvision.ops import roi_align

    photos = _photos()
    which = rng.integers(0, len(photos), size=count)
    share = rng.uniform(*_CROP_SHARE, size=count)
    corner = rng.uniform(0.0, 1.0, size=(count, 2))
    mirror = rng.random(count) < 0.5
    out = torch.empty(count, 3, size, size)
    for index, photo in enumerate(photos):
        chosen = np.flatnonzero(which == index)
        if not chosen.size:
            continue
        height, width = photo.shape[-2:]
        side = share[chosen] * min(height, width)
        top = corner[chosen, 0] * (height - side)
        left = corner[chosen, 1] * (width - side)
        boxes = torch.tensor(np.stack([left, top, left + side, top + side], axis=1), dtype=torch.float32)
        out[torch.from_numpy(chosen)] = roi_align(
            photo[None], [boxes], output_size=size, sampling_ratio=1, aligned=True
        )
    flip = torch.from_numpy(mirror)
    out[flip] = out[flip].flip(-1)
    return out.clamp_(0, 1)


def _composite(digits: Split, copies: int, rng: np.random.Generator) -> Split:
    """Each digit ``copies`` times over fresh photo crops, blended as ``|crop - digit|``."""
    strokes = digits.images.expand(-1, 3, -1, -1)
    count, size = len(digits), digits.images.shape[-1]
    images = [torch.abs(photo_crops(count, size, rng) - strokes) for _ in range(copies)]
    return Split(torch.cat(images), digits.labels.repeat(copies))


def load_photo_digits(
    size: int = 32,
    seed: int = 0,
    copies: int = 3,
    held_out_copies: int = 1,
    fractions: Tuple[float, float] = (0.6, 0.2),
) -> Dataset3:
    """Colour digits on natural backgrounds (MNIST-M style), built offline from bundled files.

    The handwritten digits of :func:`load_digits` (scikit-learn's bundled 8 x 8 digits,
    upsampled) are split first, stratified, so that no handwritten digit appears in two
    splits; then each is composited over random crops of the colour photographs bundled in
    scikit-image's wheel (:data:`PHOTOS`; nothing is downloaded). A crop covers 25% to 50%
    of a photograph's shorter side, is resized to ``size`` and mirrored half of the time.
    The blend is MNIST-M's difference ``|crop - digit|`` per channel: the background keeps
    the photograph's colours and texture, and a stroke shows the photograph's inverted
    colours, so the digit stays readable on any crop that is not mid-grey. All splits crop
    the same photographs, at independent random places.

    Args:
        size: image side in pixels (at least 8).
        seed: seed of the digit split and of the crops; the same seed gives the same images.
        copies: composites per digit in the train split (each over a fresh crop).
        held_out_copies: composites per digit in the search and eval splits.
        fractions: shares of the handwritten digits that go to the train and search
            splits; the rest is held out for evaluation.

    Returns:
        A :class:`Dataset3` of 3 x size x size float images in [0, 1] with labels 0 to 9;
        the train split has ``copies`` images per handwritten digit (about 1,080 x
        ``copies`` images with the default fractions).

    Raises:
        ValueError: ``size`` below 8, ``copies`` or ``held_out_copies`` not a positive
            int, a negative ``seed``, or ``fractions`` that do not leave images in every split.
        FileNotFoundError: scikit-image without its bundled photographs.

    Example:
        >>> from captum_classpattern.data import load_photo_digits
        >>> data = load_photo_digits(size=32, copies=3)
        >>> data.train.images.shape[1:]
        torch.Size([3, 32, 32])
    """
    check_positive_int(size, "size")
    if size < 8:
        raise ValueError(f"size must be at least 8 (the digits are 8 x 8 before upsampling), got {size}.")
    check_positive_int(copies, "copies")
    check_positive_int(held_out_copies, "held_out_copies")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}.")
    if (
        not isinstance(fractions, (tuple, list))
        or len(fractions) != 2
        or not all(isinstance(f, (int, float)) and not isinstance(f, bool) for f in fractions)
        or min(fractions) <= 0
        or sum(fractions) >= 1
    ):
        raise ValueError(f"fractions must be two shares > 0 (train, search) summing to less than 1, got {fractions!r}.")
    digits = load_digits(size=size, seed=seed, fractions=(float(fractions[0]), float(fractions[1])))
    splits = []
    for stream, (split, count) in enumerate(
        ((digits.train, copies), (digits.search, held_out_copies), (digits.eval, held_out_copies))
    ):
        splits.append(_composite(split, count, np.random.default_rng([seed, stream])))
    return Dataset3(splits[0], splits[1], splits[2], DIGIT_CLASSES)

"""Data without internet: bundled digits, CIFAR-10 and image folders already on disk."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ._safe_pickle import load_cifar_batch

DIGIT_CLASSES = tuple(str(d) for d in range(10))
"""Class names of the digits: ``"0"`` to ``"9"``."""

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
"""Class names of CIFAR-10, in its label order."""


@dataclass
class Split:
    """Images N x C x H x W in [0, 1] with their integer labels."""

    images: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return int(self.labels.numel())

    def of_class(self, cls: int) -> Tensor:
        """The images of one class."""
        return self.images[self.labels == cls]


@dataclass
class Dataset3:
    """A fixed three-way split: train the model, search patterns, evaluate them on held-out images."""

    train: Split
    search: Split
    eval: Split
    classes: Tuple[str, ...]


def load_digits(size: int = 32, seed: int = 0, fractions: Tuple[float, float] = (0.6, 0.2)) -> Dataset3:
    """scikit-learn's bundled 8x8 handwritten digits, upsampled, in a fixed stratified split.

    1,797 real images, 10 classes, shipped inside scikit-learn (no download).

    Args:
        size: output side in pixels (bilinear upsampling from 8).
        seed: seed of the split (the default split is fixed for the package's reports).
        fractions: shares of the train and search splits; the rest is held out for
            evaluation.

    Returns:
        A :class:`Dataset3` of 1 x size x size images in [0, 1].
    """
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    if size != 8:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False).clamp_(0, 1)
    labels = torch.tensor(bunch.target, dtype=torch.long)
    rng = np.random.default_rng(seed)
    parts: Tuple[List[int], List[int], List[int]] = ([], [], [])
    for cls in range(10):
        index = np.flatnonzero(bunch.target == cls)
        rng.shuffle(index)
        cut1 = int(round(fractions[0] * len(index)))
        cut2 = cut1 + int(round(fractions[1] * len(index)))
        for part, chunk in zip(parts, (index[:cut1], index[cut1:cut2], index[cut2:])):
            part.extend(chunk.tolist())
    splits = [Split(images[torch.tensor(sorted(p))], labels[torch.tensor(sorted(p))]) for p in parts]
    return Dataset3(splits[0], splits[1], splits[2], DIGIT_CLASSES)


def _stack(dataset, limit: Optional[int]) -> Split:
    count = len(dataset) if limit is None else min(limit, len(dataset))
    images, labels = zip(*(dataset[i] for i in range(count)))
    return Split(torch.stack(images), torch.tensor(labels, dtype=torch.long))


def load_cifar10(root: str, train: bool = False, limit: Optional[int] = None) -> Split:
    """CIFAR-10 from ``root`` in torchvision's python format, never downloaded.

    The pickled batches are read directly (the format torchvision's ``CIFAR10`` uses),
    so any copy of ``cifar-10-python.tar.gz`` extracted under ``root`` works. They are read
    with a restricted unpickler that builds only what the format holds (dicts, lists,
    strings and NumPy arrays), so a tampered file cannot run code.

    Args:
        root: folder holding ``cifar-10-batches-py``.
        train: the five training batches instead of ``test_batch``.
        limit: keep only the first ``limit`` images.

    Returns:
        A :class:`Split` of 3 x 32 x 32 images in [0, 1].

    Raises:
        FileNotFoundError: the data set is not at ``root``, naming the expected folder.
        pickle.UnpicklingError: a batch file refers to anything outside the format (it
            could run code); nothing it names is imported or called.
        ValueError: a batch file is damaged or not a CIFAR-10 batch.
    """
    folder = os.path.join(root, "cifar-10-batches-py")
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    missing = [n for n in names if not os.path.isfile(os.path.join(folder, n))]
    if missing:
        raise FileNotFoundError(
            f"CIFAR-10 not found: expected {', '.join(missing)} in the folder {folder} (torchvision's python "
            "version, cifar-10-python.tar.gz extracted under the root). Nothing is downloaded at run time."
        )
    arrays, labels = [], []
    for name in names:
        entry = load_cifar_batch(os.path.join(folder, name))
        arrays.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.extend(entry["labels"])
        if limit is not None and len(labels) >= limit:
            break
    images = torch.from_numpy(np.concatenate(arrays)).float().div_(255.0)
    targets = torch.tensor(labels, dtype=torch.long)
    if limit is not None:
        images, targets = images[:limit], targets[:limit]
    return Split(images, targets)


def read_image(path: str) -> Any:
    """Open an image file as an RGB PIL image, naming the file when it cannot be read.

    ``ImageFolder``'s own loader fails on a corrupt file with PIL's message, which names an
    open file object at best; in a folder of thousands of images the file is what matters.

    Args:
        path: the image file.

    Returns:
        The image, converted to RGB.

    Raises:
        ValueError: the file is not a readable image; the message names it.
    """
    from PIL import Image

    try:
        with open(path, "rb") as stream:
            return Image.open(stream).convert("RGB")
    except (OSError, ValueError, SyntaxError) as error:  # PIL reports a bad file with any of these
        raise ValueError(
            f"cannot read the image {path} ({type(error).__name__}: {' '.join(str(error).split())[:120]}): "
            "remove or replace the file."
        ) from error


def load_image_folder(root: str, size: int = 224, limit: Optional[int] = None) -> Tuple[Split, Tuple[str, ...]]:
    """An ImageNet-style folder (``root/<class>/<image>``), resized and centre-cropped.

    Returns:
        The images as a :class:`Split` and the class names in label order.

    Raises:
        FileNotFoundError: ``root`` is not a folder of class folders.
        ValueError: an image file cannot be read; the message names it.
    """
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    if not os.path.isdir(root):
        raise FileNotFoundError(f"image folder {root} not found: expected {root}/<class name>/<image files>.")
    tf = transforms.Compose([transforms.Resize(size), transforms.CenterCrop(size), transforms.ToTensor()])
    dataset = ImageFolder(root, transform=tf, loader=read_image)
    return _stack(dataset, limit), tuple(dataset.classes)

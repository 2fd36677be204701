"""Data without internet: bundled digits, CIFAR-10 and image folders already on disk."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from ._balanced import balanced_indices
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


def _stack(dataset: Dataset[Tuple[Tensor, int]], indices: List[int]) -> Split:
    if not indices:
        raise ValueError("no images to read: the folder holds none, or limit kept none.")
    images, labels = zip(*(dataset[i] for i in indices))
    return Split(torch.stack(images), torch.tensor(labels, dtype=torch.long))


def _resized(images: Tensor, size: Optional[int]) -> Tensor:
    """``images`` resized to ``size`` x ``size`` (antialiased bilinear), or as they are."""
    if size is None or tuple(images.shape[-2:]) == (size, size):
        return images
    resized = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return resized.clamp_(0, 1)


def _cifar10_batches(folder: str, train: bool, limit: Optional[int]) -> Split:
    """Read the batches of torchvision's python format with the restricted unpickler."""
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
    keep = torch.tensor(balanced_indices(labels, limit), dtype=torch.long)
    images = torch.from_numpy(np.concatenate(arrays))[keep].float().div_(255.0)
    return Split(images, torch.tensor(labels, dtype=torch.long)[keep])


def _cifar10_folder(folder: str, limit: Optional[int]) -> Split:
    """An image-folder copy: ``folder/<class name>/<image>``, class folders named as CIFAR-10's."""
    found = sorted(name for name in os.listdir(folder) if os.path.isdir(os.path.join(folder, name)))
    if tuple(found) != tuple(sorted(CIFAR10_CLASSES)):
        raise FileNotFoundError(
            f"{folder} should hold the ten CIFAR-10 class folders ({', '.join(CIFAR10_CLASSES)}), found "
            f"{', '.join(found) or 'none'}; for another image folder use load_image_folder."
        )
    paths, labels = [], []
    for label, name in enumerate(CIFAR10_CLASSES):
        files = sorted(f for f in os.listdir(os.path.join(folder, name)) if not f.startswith("."))
        paths += [os.path.join(folder, name, f) for f in files]
        labels += [label] * len(files)
    keep = balanced_indices(labels, limit)
    pixels = np.empty((len(keep), 32, 32, 3), dtype=np.uint8)
    for row, index in enumerate(keep):
        pixels[row] = np.asarray(read_image(paths[index]).resize((32, 32)))
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div_(255.0)
    return Split(images.contiguous(), torch.tensor([labels[i] for i in keep], dtype=torch.long))


def cifar10_layout(root: str) -> Tuple[str, str]:
    """Which copy of CIFAR-10 ``root`` holds: ``("batches", folder)`` or ``("folders", folder)``.

    Args:
        root: a folder holding ``cifar-10-batches-py`` (torchvision's python version), or
            ``train/`` and ``test/`` folders of class folders (an image-folder copy), or a
            ``cifar10/`` folder that holds those.

    Returns:
        The kind and the folder that holds the batches or the ``train``/``test`` folders.

    Raises:
        FileNotFoundError: neither copy is at ``root``; the message names both layouts.
    """
    for base in (root, os.path.join(root, "cifar10")):
        if os.path.isdir(os.path.join(base, "cifar-10-batches-py")):
            return "batches", os.path.join(base, "cifar-10-batches-py")
        if os.path.isdir(os.path.join(base, "train")) or os.path.isdir(os.path.join(base, "test")):
            return "folders", base
    raise FileNotFoundError(
        f"CIFAR-10 not found under {root}: expected {root}/cifar-10-batches-py (torchvision's python version) or "
        f"{root}/test/<class>/<image> and {root}/train/<class>/<image> (an image-folder copy). Nothing is "
        "downloaded at run time."
    )


def load_cifar10(root: str, train: bool = False, limit: Optional[int] = None, size: Optional[int] = None) -> Split:
    """CIFAR-10 from ``root``, never downloaded: torchvision's python batches or an image-folder copy.

    Two layouts are read (:func:`cifar10_layout`): ``cifar-10-batches-py`` as torchvision
    writes it (any copy of ``cifar-10-python.tar.gz`` extracted under ``root``), and
    ``train/<class>/`` and ``test/<class>/`` folders of image files, with class folders
    named as :data:`CIFAR10_CLASSES` (their sorted order is CIFAR-10's label order).

    Args:
        root: the folder holding either copy.
        train: the 50,000 training images instead of the 10,000 test images.
        limit: keep at most ``limit`` images, the first of each class in equal shares
            (:func:`balanced_indices`), never the first classes only.
        size: resize the images to ``size`` x ``size`` (antialiased bilinear); ``None``
            keeps 32 x 32.

    Returns:
        A :class:`Split` of 3 x 32 x 32 (or ``size``) images in [0, 1].

    Raises:
        FileNotFoundError: the data set is not at ``root``, naming the expected folders.
        pickle.UnpicklingError: a batch file refers to anything outside the format (it
            could run code); the batches are read with a restricted unpickler that builds
            only dicts, lists, strings, numbers and NumPy arrays, and nothing a file names
            is imported or called.
        ValueError: a damaged batch file, an image file that cannot be read (named), or a
            bad ``limit``.

    Example:
        >>> test = load_cifar10(os.environ["CLASSPATTERN_CIFAR10"], limit=1000)  # 100 per class
    """
    kind, folder = cifar10_layout(root)
    if kind == "batches":
        split = _cifar10_batches(folder, train, limit)
    else:
        part = os.path.join(folder, "train" if train else "test")
        if not os.path.isdir(part):
            raise FileNotFoundError(f"CIFAR-10 not found: no folder {part} (expected {part}/<class>/<image>).")
        split = _cifar10_folder(part, limit)
    return Split(_resized(split.images, size), split.labels)


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

    Args:
        root: the folder of class folders (sorted names are the labels).
        size: side of the square images: the short side is resized to it, then centre-cropped.
        limit: read at most ``limit`` images, the first of each class in equal shares
            (:func:`balanced_indices`); only those are decoded.

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
    return _stack(dataset, balanced_indices(dataset.targets, limit)), tuple(dataset.classes)

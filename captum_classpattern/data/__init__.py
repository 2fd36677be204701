"""Data without downloads: the embedded digits, CIFAR-10 and image folders already on disk."""

from ._balanced import balanced_indices
from ._loaders import (
    CIFAR10_CLASSES,
    DIGIT_CLASSES,
    Dataset3,
    Split,
    cifar10_layout,
    load_cifar10,
    load_digits,
    load_image_folder,
    read_image,
)
from ._photo_digits import PHOTOS, load_photo_digits

__all__ = [
    "Split",
    "Dataset3",
    "load_digits",
    "load_cifar10",
    "cifar10_layout",
    "balanced_indices",
    "load_image_folder",
    "read_image",
    "load_photo_digits",
    "PHOTOS",
    "DIGIT_CLASSES",
    "CIFAR10_CLASSES",
]

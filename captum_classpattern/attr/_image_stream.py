"""Labelled images read lazily from a map-style dataset, for search sets and data that do not fit in memory."""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset

from .._utils import check_positive_int

DEFAULT_CACHE_BYTES = 1 << 30
"""Decoded images an :class:`ImageStream` keeps in memory by default (1 GiB), shared by its subsets."""


class DecodedImages:
    """Images decoded once and kept, up to a byte budget, by their index in the stream's dataset.

    A search reads its images again at every pass, and the held-out images are measured
    again for every chunk of classes; decoding a JPEG or PNG costs more than the model's
    step on small images. Images beyond the budget are decoded every time they are read.

    Attributes:
        budget: the most bytes of image tensors kept.
        used: bytes kept now.
        decoded: images read from the dataset (decoded) so far.
        reused: reads answered from memory.
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.used = 0
        self.decoded = 0
        self.reused = 0
        self._images: Dict[int, Tensor] = {}

    def get(self, key: int, read: Callable[[], Tensor]) -> Tensor:
        """The image at ``key``: from memory, or ``read()`` (kept when it fits the budget)."""
        image = self._images.get(key)
        if image is not None:
            self.reused += 1
            return image
        image = read()
        self.decoded += 1
        size = image.numel() * image.element_size() if isinstance(image, Tensor) else 0
        if isinstance(image, Tensor) and self.used + size <= self.budget:
            self._images[key] = image
            self.used += size
        return image


class ImageStream:
    """Labelled images read lazily from a map-style dataset (e.g. torchvision's ``ImageFolder``).

    A search set, a set of canvas candidates or of held-out images that need not fit in
    memory: a :class:`torch.utils.data.DataLoader` reads it a batch at a time, with
    ``num_workers`` worker processes. As a search set it gives the same search as the same
    images stacked into a tensor (same seed, same images in every step, same maps).
    Iterating it yields ``(images, labels)`` batches in the dataset's order.

    Args:
        dataset: a map-style dataset whose items are image tensors C x H x W in [0, 1] or
            ``(image, label)`` pairs (give an ``ImageFolder`` a ``ToTensor`` transform).
        labels: one integer label per item; default: the dataset's ``targets``
            (``ImageFolder`` has them), so that no image has to be read to know its class.
        batch_size: images per batch when the stream is read for predictions, and the
            most images per model call wherever a search or a measurement reads it.
        num_workers: DataLoader worker processes (0: read in this process).
        pin_memory: pin the batches for faster copies to a GPU; default: when CUDA is available.
        cache_bytes: decoded images kept in memory (in this process, so only with
            ``num_workers=0``), shared with the stream's subsets: each image is decoded once
            per run while they fit (:attr:`cache`). 0 turns it off; so should a dataset
            whose transform is random (augmentation), which would be frozen at its first draw.

    Raises:
        TypeError: the dataset is not map-style (no ``__getitem__``/``__len__``, or an
            ``IterableDataset``), or the settings have the wrong type.
        ValueError: no labels, labels that are not one integer >= 0 per item, or settings
            out of range.

    Example:
        >>> from torchvision import datasets, transforms
        >>> tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor()])
        >>> stream = ImageStream(datasets.ImageFolder("imagenet/val", tf), num_workers=8)
        >>> maps = ClassPattern(model).attribute(canvases, target=[0, 1], baselines=stream)
    """

    def __init__(
        self,
        dataset: Dataset,
        labels: Optional[Any] = None,
        *,
        batch_size: int = 64,
        num_workers: int = 0,
        pin_memory: Optional[bool] = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        if isinstance(dataset, IterableDataset) or not (
            hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")
        ):
            raise TypeError(
                f"ImageStream needs a map-style dataset (with __getitem__ and __len__), got {type(dataset).__name__}; "
                "pass an iterable of (images, labels) such as a DataLoader directly as baselines instead."
            )
        labels = getattr(dataset, "targets", None) if labels is None else labels
        if labels is None:
            raise ValueError(
                f"ImageStream needs the label of every item of the {type(dataset).__name__}: pass labels=..., "
                "or use a dataset with a targets attribute such as ImageFolder."
            )
        labels = torch.as_tensor(labels).cpu()
        if labels.dim() != 1 or len(labels) != len(dataset):
            raise ValueError(f"ImageStream needs one label per item ({len(dataset)}), got shape {tuple(labels.shape)}.")
        if labels.is_floating_point() or labels.dtype == torch.bool or (len(labels) and int(labels.min()) < 0):
            raise ValueError("ImageStream labels must be integer class indices >= 0.")
        check_positive_int(batch_size, "batch_size")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers must be an int >= 0, got {num_workers!r}.")
        if pin_memory is not None and not isinstance(pin_memory, bool):
            raise TypeError(f"pin_memory must be a bool or None, got {type(pin_memory).__name__}.")
        if isinstance(cache_bytes, bool) or not isinstance(cache_bytes, int) or cache_bytes < 0:
            raise ValueError(f"cache_bytes must be an int >= 0, got {cache_bytes!r}.")
        self.dataset = dataset
        self.labels = labels.long()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.cache = DecodedImages(cache_bytes)
        # Where each item sits in the dataset the cache was made for (None: the same place).
        self._keys: Optional[Sequence[int]] = None

    def __len__(self) -> int:
        return len(self.labels)

    def __iter__(self) -> Iterator[Tuple[Tensor, Tensor]]:
        return iter(self.loader())

    def subset(self, indices: Any) -> ImageStream:
        """The items at ``indices`` (in that order) as a stream with the same settings."""
        index = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        positions = index.tolist()
        part = ImageStream(
            Subset(self.dataset, positions),
            self.labels.index_select(0, index),
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            cache_bytes=0,  # it reads through this stream's cache instead
        )
        part.cache = self.cache
        part._keys = positions if self._keys is None else [self._keys[p] for p in positions]
        return part

    def loader(self, batch_sampler: Optional[Iterable[List[int]]] = None) -> DataLoader:
        """A DataLoader of ``(images, labels)``: in order by ``batch_size``, or the index lists of ``batch_sampler``."""
        cached = self.num_workers == 0 and self.cache.budget > 0
        labelled = _Labelled(self.dataset, self.labels, self.cache if cached else None, self._keys)
        common: Dict[str, Any] = dict(num_workers=self.num_workers, pin_memory=self.pin_memory)
        if batch_sampler is not None:
            return DataLoader(labelled, batch_sampler=batch_sampler, **common)
        return DataLoader(labelled, batch_size=self.batch_size, shuffle=False, **common)


class _Labelled(Dataset):
    """A dataset's images with the stream's labels (the dataset's own label, if any, is not used)."""

    def __init__(
        self, dataset: Dataset, labels: Tensor, cache: Optional[DecodedImages], keys: Optional[Sequence[int]]
    ) -> None:
        self.dataset, self.labels, self.cache, self.keys = dataset, labels, cache, keys

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> Tuple[Tensor, Tensor]:
        if self.cache is None:
            return self._read(index), self.labels[index]
        key = index if self.keys is None else self.keys[index]
        return self.cache.get(key, lambda: self._read(index)), self.labels[index]

    def _read(self, index: int) -> Tensor:
        item = self.dataset[index]
        image = item[0] if isinstance(item, (tuple, list)) and item else item
        if not isinstance(image, Tensor):
            raise TypeError(
                f"each item of an ImageStream's dataset must be an image tensor or an (image, label) pair, got "
                f"{type(image).__name__}: give the dataset a transform that ends with ToTensor()."
            )
        return image

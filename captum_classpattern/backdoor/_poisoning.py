"""Poisoned training sets: a share of other-class images stamped with a trigger and relabelled."""

from __future__ import annotations

from typing import Any, Callable, Optional, Tuple, Union

import torch
from torch import Tensor
from torch.utils.data import Dataset

from .._utils import check_labels
from ._checks import check_number, check_trigger
from ._per_batch import ALL_TO_ALL, backdoor_labels, check_target


class PoisonedDataset(Dataset):
    """An all-to-one poisoned view of an ``(image, label)`` data set.

    ``round(rate * len(data))`` items, drawn at random (``seed``) from the items whose
    label is not ``target``, are returned with the trigger applied and the label
    ``target``; every other item is returned unchanged. Nothing is copied or modified:
    items are triggered when read.

    A clean-label attack (SIG, LC) sets ``clean_label=True``: the poisoned items are drawn
    from the target class instead and keep their (correct) labels; the rate still counts
    over the whole set, as BackdoorBench does. Attacks with regularisation samples
    (Adap-Blend's cover items, BPP's negatives) set ``cover_rate``: a further
    ``round(cover_rate * len(data))`` items, drawn from the rest, are stamped with
    ``cover_trigger`` (default: the trigger) and keep their labels.

    ``target="all-to-all"`` relabels each poisoned item to the next class,
    ``(label + 1) % num_classes``, drawing the items from the whole set.

    Args:
        data: a torch ``Dataset`` whose items are ``(image, label)`` (image C x H x W in
            [0, 1]), or an ``(images, labels)`` pair of tensors.
        trigger: the :class:`Trigger` (or any callable on images).
        target: the class every poisoned item is relabelled as, or ``"all-to-all"``.
        rate: share of the whole data set to poison, in [0, 1].
        seed: seed of the draw.
        clean_label: poison target-class items and keep their labels.
        cover_rate: share of the whole data set stamped with ``cover_trigger`` with labels
            kept, in [0, 1].
        cover_trigger: the stamp of the cover items (default: ``trigger``).
        num_classes: the number of classes, for ``"all-to-all"`` (default: the largest
            label plus one).

    Attributes:
        poisoned_indices: sorted 1-d long tensor of the poisoned items' indices.
        cover_indices: sorted 1-d long tensor of the cover items' indices (empty without
            ``cover_rate``).

    Raises:
        ValueError: a rate outside [0, 1], or more items to poison (or cover) than there
            are candidates.
        TypeError: data that is neither a Dataset nor a pair of tensors, or a non-int
            target.

    Example:
        >>> poisoned = PoisonedDataset((images, labels), PatchTrigger(), target=0, rate=0.1)
        >>> train_images, train_labels = poisoned.tensors()
        >>> poisoned.poisoned_indices[:5]
    """

    def __init__(
        self,
        data: Union[Dataset, Tuple[Tensor, Tensor]],
        trigger: Callable[[Tensor], Tensor],
        target: Union[int, str],
        rate: float = 0.1,
        seed: int = 0,
        *,
        clean_label: bool = False,
        cover_rate: float = 0.0,
        cover_trigger: Optional[Callable[[Tensor], Tensor]] = None,
        num_classes: Optional[int] = None,
    ) -> None:
        check_trigger(trigger)
        if cover_trigger is not None:
            check_trigger(cover_trigger)
        if not isinstance(clean_label, bool):
            raise TypeError(f"clean_label must be a bool, got {type(clean_label).__name__}.")
        rate = check_number(rate, "rate", 0.0, 1.0)
        cover_rate = check_number(cover_rate, "cover_rate", 0.0, 1.0)
        if isinstance(data, (tuple, list)):
            if len(data) != 2 or not all(isinstance(t, Tensor) for t in data):
                raise TypeError("tensor data must be an (images, labels) pair of tensors.")
            images, labels = data
            self._images: Optional[Tensor] = images
            self._dataset: Optional[Dataset] = None
            all_labels = check_labels(images, labels.detach(), "data")
        elif isinstance(data, Dataset):
            self._images, self._dataset = None, data
            # Reading every label once is the only portable way to know the classes.
            all_labels = torch.tensor(
                [int(data[i][1]) for i in range(len(data))],  # type: ignore[arg-type]
                dtype=torch.long,
            )
        else:
            raise TypeError(f"data must be a torch Dataset or an (images, labels) pair, got {type(data).__name__}.")
        self._labels = all_labels
        if target == ALL_TO_ALL:
            num_classes = (
                num_classes if num_classes is not None else int(all_labels.max()) + 1 if len(all_labels) else 2
            )
            if clean_label:
                raise ValueError("a clean-label attack keeps labels: it cannot be all-to-all; give a target class.")
        self.target, self.num_classes = check_target(target, num_classes)
        self.trigger = trigger
        self.rate = float(rate)
        self.seed = int(seed)
        self.clean_label = clean_label
        self.cover_rate = float(cover_rate)
        self.cover_trigger = cover_trigger if cover_trigger is not None else trigger
        count = int(round(self.rate * all_labels.numel()))
        if self.target == ALL_TO_ALL:  # every item is a candidate: none is of "the" target class
            of_target = torch.zeros(all_labels.numel(), dtype=torch.bool)
        else:
            of_target = all_labels == int(self.target)
        candidates = torch.nonzero(of_target if clean_label else ~of_target).flatten()
        if count > candidates.numel():
            kind = "of" if clean_label else "not of"
            raise ValueError(
                f"cannot poison {count} items: only {candidates.numel()} items are {kind} the target class "
                f"{self.target}; lower the rate."
            )
        generator = torch.Generator().manual_seed(self.seed)
        chosen = candidates[torch.randperm(candidates.numel(), generator=generator)[:count]]
        self.poisoned_indices: Tensor = chosen.sort().values
        self._is_poisoned = torch.zeros(all_labels.numel(), dtype=torch.bool)
        self._is_poisoned[self.poisoned_indices] = True
        # The cover draw comes after the poison draw, so adding covers keeps the poisoned items.
        covers = int(round(self.cover_rate * all_labels.numel()))
        rest = torch.nonzero(~self._is_poisoned).flatten()
        if covers > rest.numel():
            raise ValueError(f"cannot cover {covers} items: only {rest.numel()} items are not poisoned.")
        self.cover_indices: Tensor = rest[torch.randperm(rest.numel(), generator=generator)[:covers]].sort().values
        self._is_cover = torch.zeros(all_labels.numel(), dtype=torch.bool)
        self._is_cover[self.cover_indices] = True

    def __len__(self) -> int:
        return int(self._labels.numel())

    def is_poisoned(self, index: int) -> bool:
        """Whether item ``index`` is returned triggered and relabelled."""
        return bool(self._is_poisoned[index])

    @property
    def poisoned_mask(self) -> Tensor:
        """1-d bool tensor, ``True`` at the poisoned items."""
        return self._is_poisoned.clone()

    def __getitem__(self, index: int) -> Tuple[Tensor, Any]:
        if self._images is not None:
            image, label = self._images[index], self._labels[index]
        else:
            image, label = self._dataset[index]  # type: ignore[index]
        if self._is_poisoned[index]:
            wanted = int(backdoor_labels(self._labels[index : index + 1], self.target, self.num_classes))
            label = torch.tensor(wanted) if isinstance(label, Tensor) else wanted
            return self.trigger(image), label
        if self._is_cover[index]:
            return self.cover_trigger(image), label
        return image, label

    def tensors(self) -> Tuple[Tensor, Tensor]:
        """Materialise the poisoned view as ``(images, labels)`` tensors (new tensors).

        Returns:
            N x C x H x W images and N long labels.
        """
        if self._images is not None:
            images = self._images.clone()
            if self.poisoned_indices.numel():
                rows = self.poisoned_indices.to(images.device)
                images[rows] = self.trigger(self._images[rows])
            if self.cover_indices.numel():
                rows = self.cover_indices.to(images.device)
                images[rows] = self.cover_trigger(self._images[rows])
            labels = self._labels.clone()
            labels[self.poisoned_indices] = backdoor_labels(
                self._labels[self.poisoned_indices], self.target, self.num_classes
            )
            return images, labels.to(self._images.device)
        items = [self[i] for i in range(len(self))]
        return torch.stack([x for x, _ in items]), torch.tensor([int(y) for _, y in items], dtype=torch.long)

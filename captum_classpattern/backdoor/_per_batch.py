"""What the per-batch attacks (WaNet, IAD) share: how many items of a batch to poison, and their new labels."""

from __future__ import annotations

from typing import Any, Optional, Tuple, Union

import torch
from torch import Tensor

from .._utils import check_class_index, check_positive_int

ALL_TO_ALL = "all-to-all"


def check_target(target: Any, num_classes: Optional[int]) -> Tuple[Union[int, str], Optional[int]]:
    """Check an attack's target: a class index (all-to-one) or ``"all-to-all"`` (``y -> (y + 1) % num_classes``).

    Returns:
        ``(target, num_classes)``, checked.

    Raises:
        ValueError: ``"all-to-all"`` without ``num_classes``, another string, or a target
            that is negative or not below ``num_classes``.
        TypeError: a target that is neither an int nor a string.
    """
    if num_classes is not None:
        num_classes = check_positive_int(num_classes, "num_classes")
    if isinstance(target, str):
        if target != ALL_TO_ALL:
            raise ValueError(f"target must be a class index or {ALL_TO_ALL!r}, got {target!r}.")
        if num_classes is None or num_classes < 2:
            raise ValueError("an all-to-all attack needs num_classes >= 2 (labels map to (label + 1) % num_classes).")
        return target, num_classes
    return check_class_index(target, "target", num_classes), num_classes


def backdoor_labels(labels: Tensor, target: Union[int, str], num_classes: Optional[int]) -> Tensor:
    """The labels poisoned items get: ``target`` (all-to-one) or the next class (all-to-all); a new tensor."""
    if target == ALL_TO_ALL:
        return (labels + 1) % int(num_classes)  # type: ignore[arg-type]
    return torch.full_like(labels, int(target))


def batch_count(rate: float, size: int, generator: torch.Generator) -> int:
    """Items of a batch of ``size`` to poison at ``rate``, as BackdoorBench counts them.

    ``floor(rate * size)``; where that is below one item, one item with probability
    ``rate * size`` (BackdoorBench's ``generalize_to_lower_pratio``), so that small rates
    still poison their share of the data on average.
    """
    expected = rate * size
    if expected >= 1.0 - 1e-9:
        return int(expected + 1e-9)  # 0.1 * 30 is 3.0000000000000004: floor it as the 3 it means
    return int(float(torch.rand((), generator=generator)) < expected)

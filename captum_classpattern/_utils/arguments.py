"""Checks at the door that several entry points share: seeds, class lists, label ranges, one-shot iterables."""

from __future__ import annotations

import operator
from typing import Any, Iterable, List, Optional, Sequence

import numpy as np
from torch import Tensor

from .checks import check_class_index

SEED_LIMIT = 2**32
"""Seeds lie in ``0 .. SEED_LIMIT - 1``: the range every generator the package uses takes (NumPy's too).

The per-class streams derive their seeds from the seed and the class
(``seed * 1_000_003 + class``), which stays within the range PyTorch's generators take for
every seed below this limit and any class count up to a million.
"""


def check_seed(value: Any, name: str = "seed") -> int:
    """Return ``value`` as an int seed, or raise an error naming ``name``.

    Python and NumPy integers (and one-element integer tensors) are accepted; booleans,
    floats and strings are not.

    Args:
        value: the seed.
        name: names the argument in error messages.

    Returns:
        The seed as an ``int``.

    Raises:
        TypeError: not an integer.
        ValueError: outside ``0 .. SEED_LIMIT - 1``.
    """
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int, not a bool ({value!r}).")
    if isinstance(value, Tensor) and value.numel() == 1 and not (value.is_floating_point() or value.is_complex()):
        value = value.item()
    try:
        seed = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}.") from None
    if not 0 <= seed < SEED_LIMIT:
        raise ValueError(f"{name} must lie in 0..{SEED_LIMIT - 1} (2**32 - 1), got {seed}: pick a seed in that range.")
    return seed


def check_class_list(classes: Any, name: str = "classes", num_classes: Optional[int] = None) -> List[int]:
    """Return ``classes`` as a list of distinct int class indices, or raise an error naming ``name``.

    Each element is checked by :func:`~captum_classpattern._utils.check_class_index` (NumPy
    ints and one-element integer tensors are accepted, floats and booleans refused). A class
    listed twice is refused: it would be searched twice and counted twice in every summary.

    Args:
        classes: an iterable of class indices.
        name: names the argument in error messages.
        num_classes: the model's number of classes, if known.

    Returns:
        The classes, in the given order.

    Raises:
        TypeError: not an iterable of int class indices (a string, a float, ...).
        ValueError: empty, a negative class, one not below ``num_classes``, or a repeat.
    """
    if isinstance(classes, (str, bytes)) or not isinstance(classes, (Iterable, Tensor, np.ndarray)):
        raise TypeError(f"{name} must be a sequence of int class indices, got {type(classes).__name__} {classes!r}.")
    if isinstance(classes, (Tensor, np.ndarray)) and np.ndim(classes) != 1:
        raise TypeError(f"{name} must be a 1-d sequence of class indices, got shape {tuple(np.shape(classes))}.")
    values = [check_class_index(c, f"{name}[{i}]", num_classes) for i, c in enumerate(classes)]
    if not values:
        raise ValueError(f"{name} is empty: give at least one class.")
    repeated = sorted({c for c in values if values.count(c) > 1})
    if repeated:
        raise ValueError(f"{name} lists {', '.join(map(str, repeated))} more than once: give each class once.")
    return values


def check_label_range(labels: Tensor, num_classes: int, name: str) -> None:
    """Refuse labels the model cannot have: a label at or above its number of classes.

    A label outside the model's classes never equals a target, so the images of a
    canvas's own class stay in the search set and are counted as other-class images in
    every power, without a word (labels 1..10 on a 10-class model, for example).

    Args:
        labels: integer labels (already checked by ``check_labels``).
        num_classes: the width of the model's output.
        name: names the labels in error messages (e.g. ``"baseline_labels"``).

    Raises:
        ValueError: a label at or above ``num_classes``.
    """
    if labels.numel() and int(labels.max()) >= num_classes:
        low, high = int(labels.min()), int(labels.max())
        hint = " (they look 1-based: subtract 1)" if low == 1 and high == num_classes else ""
        raise ValueError(
            f"{name} run from {low} to {high}, but the model has {num_classes} classes "
            f"(0..{num_classes - 1}){hint}: give labels the model can have."
        )


def is_one_shot(source: Any) -> bool:
    """Whether iterating ``source`` consumes it (a generator or other iterator), so that it yields only once."""
    try:
        return iter(source) is source
    except TypeError:
        return False


def refuse_one_shot(source: Any, name: str, why: str) -> None:
    """Raise when ``source`` is a one-shot iterable and ``why`` needs more than one pass over it.

    Raises:
        ValueError: ``source`` is an iterator (e.g. a generator).
    """
    if is_one_shot(source):
        raise ValueError(
            f"{name} is a one-shot iterator ({type(source).__name__}), which yields its batches only once, but "
            f"{why}: pass a DataLoader, a list of batches or a tensor, which can be read again."
        )


def check_sequence_length(values: Optional[Sequence[Any]], needed: int, name: str, what: str) -> None:
    """Refuse a sequence with fewer than ``needed`` entries (``values[c]`` must exist for every ``c < needed``).

    Raises:
        TypeError: not a sequence (a string is refused too).
        ValueError: too short.
    """
    if values is None:
        return
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a sequence with one entry per class, got {type(values).__name__}.")
    if len(values) < needed:
        raise ValueError(f"{name} has {len(values)} entries but {what}: give one entry per class (0..{needed - 1}).")

"""Captum's tensor-or-tuple convention and target expansion, kept here because Captum's own helpers are private."""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from .checks import check_class_index

TensorOrTuple = Union[Tensor, Tuple[Tensor, ...]]


def as_tuple(inputs: TensorOrTuple, name: str = "inputs") -> Tuple[Tuple[Tensor, ...], bool]:
    """Return ``(tensors, was_tuple)`` so callers can mirror the input form on output."""
    if isinstance(inputs, Tensor):
        return (inputs,), False
    if isinstance(inputs, (tuple, list)) and inputs and all(isinstance(t, Tensor) for t in inputs):
        return tuple(inputs), True
    raise TypeError(f"{name} must be a tensor or a non-empty tuple of tensors, got {type(inputs).__name__}.")


def mirror(tensors: Sequence[Tensor], was_tuple: bool) -> TensorOrTuple:
    """Undo :func:`as_tuple`: a single tensor comes back as a tensor."""
    return tuple(tensors) if was_tuple else tensors[0]


def target_classes(target: Any, name: str = "target") -> Tensor:
    """Check Captum's ``TargetType`` as class indices, before their number or range is known.

    Args:
        target: an int class index, a list/tuple of them or a 0-d/1-d integer tensor (or
            NumPy array).
        name: names the argument in error messages.

    Returns:
        A 1-d ``torch.long`` CPU tensor of the classes (one entry for a single int).

    Raises:
        TypeError: the target is not an int, a sequence of ints or an integer tensor
            (floats, booleans and strings are refused, also inside a list).
        ValueError: no target, an empty list or a negative class.
    """
    if target is None:
        raise ValueError(f"{name} is required: pass the class (int) or one class per canvas (list).")
    if isinstance(target, np.ndarray):
        target = torch.from_numpy(target) if target.dtype.kind in "iu" else target.tolist()
    if isinstance(target, Tensor) and target.dim() > 0:
        if target.dim() > 1 or target.dtype == torch.bool or target.is_floating_point() or target.is_complex():
            raise TypeError(
                f"{name} must hold integer class indices in a 0-d or 1-d tensor, got a {target.dtype} tensor "
                f"of shape {tuple(target.shape)}: pass target.long() if the values are whole numbers."
            )
        values = target.detach().cpu().long().reshape(-1)
        if values.numel() and int(values.min()) < 0:
            raise ValueError(f"{name} class {int(values.min())} is out of range: class indices start at 0.")
    elif isinstance(target, (list, tuple)):
        if not target:
            raise ValueError(f"{name} is an empty list: give one class per canvas.")
        values = torch.tensor([check_class_index(t, f"{name}[{i}]") for i, t in enumerate(target)], dtype=torch.long)
    else:
        values = torch.tensor([check_class_index(target, name)])
    if values.numel() == 0:
        raise ValueError(f"{name} is empty: give one class per canvas.")
    return values


def expand_targets(target: Any, count: int, num_classes: Optional[int] = None, name: str = "target") -> Tensor:
    """Turn Captum's ``TargetType`` into one class index per canvas.

    Args:
        target: an int (applies to every canvas), a list/tuple of ints or a 0-d/1-d
            integer tensor with one class per canvas.
        count: the number of canvases.
        num_classes: when known, targets are checked to lie in ``[0, num_classes)``.
        name: names the argument in error messages.

    Returns:
        A 1-d ``torch.long`` tensor of length ``count`` on the CPU.

    Raises:
        TypeError: the target is not an int, a sequence of ints or an integer tensor.
        ValueError: the number of targets does not match, or a class is out of range.
    """
    empty = isinstance(target, (list, tuple)) and not target
    values = torch.empty(0, dtype=torch.long) if empty else target_classes(target, name)
    if values.numel() == 1:
        values = values.expand(count)
    if values.numel() != count:
        raise ValueError(
            f"got {values.numel()} classes in {name} for {count} canvases: give one class per canvas or a single int."
        )
    if num_classes is not None:
        bad = values[values >= num_classes]
        if bad.numel():
            check_class_index(int(bad[0]), name, num_classes)
    return values.clone()

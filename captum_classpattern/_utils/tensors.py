"""Captum's tensor-or-tuple convention and target expansion, kept here because Captum's own helpers are private."""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

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


def expand_targets(target: Any, count: int, num_classes: Optional[int] = None) -> Tensor:
    """Turn Captum's ``TargetType`` into one class index per canvas.

    Args:
        target: an int (applies to every canvas), a list/tuple of ints or a 0-d/1-d
            integer tensor with one class per canvas.
        count: the number of canvases.
        num_classes: when known, targets are checked to lie in ``[0, num_classes)``.

    Returns:
        A 1-d ``torch.long`` tensor of length ``count`` on the CPU.

    Raises:
        TypeError: the target is not an int, a sequence of ints or an integer tensor.
        ValueError: the number of targets does not match, or a class is out of range.
    """
    if target is None:
        raise ValueError("target is required: pass the class (int) or one class per canvas (list).")
    if isinstance(target, Tensor):
        if target.is_floating_point() or target.dim() > 1:
            raise TypeError("a target tensor must hold integer class indices, 0-d or 1-d.")
        values = target.detach().cpu().long().reshape(-1)
    elif isinstance(target, bool):
        raise TypeError("target must be an int class index, not a bool.")
    elif isinstance(target, int):
        values = torch.tensor([target])
    elif isinstance(target, (list, tuple)):
        if not all(isinstance(t, int) and not isinstance(t, bool) for t in target):
            raise TypeError(
                "a target list must hold one int class per canvas; Captum's tuple targets "
                "(indices into multi-dimensional outputs) are not supported here."
            )
        values = torch.tensor(list(target), dtype=torch.long)
    else:
        raise TypeError(f"target must be an int, a list of ints or an integer tensor, got {type(target).__name__}.")
    if values.numel() == 1:
        values = values.expand(count)
    if values.numel() != count:
        raise ValueError(
            f"got {values.numel()} targets for {count} canvases: give one class per canvas or a single int."
        )
    if num_classes is not None:
        bad = values[(values < 0) | (values >= num_classes)]
        if bad.numel():
            raise ValueError(
                f"target class {int(bad[0])} is out of range: the model has {num_classes} classes "
                f"(0..{num_classes - 1})."
            )
    return values.clone()

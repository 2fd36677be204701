"""Argument checks shared by every public entry point: images, labels, numbers, choices, devices."""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor, nn


def check_images(images: Tensor, name: str, *, unit_range: bool = True) -> None:
    """Check that ``images`` is a finite N x C x H x W float tensor (pixels in [0, 1])."""
    if not isinstance(images, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(images).__name__}.")
    if images.dim() != 4:
        raise ValueError(f"{name} must be N x C x H x W, got shape {tuple(images.shape)}.")
    if not images.is_floating_point():
        raise TypeError(f"{name} must be a float tensor with pixels in [0, 1], got {images.dtype}.")
    if images.shape[0] == 0:
        raise ValueError(f"{name} is empty.")
    if not torch.isfinite(images).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    if unit_range and (images.min() < 0 or images.max() > 1):
        raise ValueError(
            f"{name} must hold pixels in [0, 1] (found {float(images.min()):.3g}..{float(images.max()):.3g}); "
            "normalisation belongs inside the model, e.g. nn.Sequential(Normalize(...), model)."
        )


def check_choice(value: Any, allowed: Sequence[str], name: str) -> str:
    """Return ``value`` if it is one of the ``allowed`` strings, else raise a ValueError naming them."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(repr(a) for a in allowed)}; got {value!r}.")
    return value


def check_positive_int(value: Any, name: str) -> int:
    """Return ``value`` if it is an int >= 1 (not a bool), else raise a ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
    return value


def check_positive_float(value: Any, name: str) -> float:
    """Return ``value`` as a float if it is a number > 0 (not a bool), else raise a ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}.")
    return float(value)


def check_labels(images: Tensor, labels: Any, name: str) -> Tensor:
    """Integer class labels, one per image, as a 1-d CPU long tensor.

    Float labels are accepted when every value is a whole number (``3.0``), as some data
    sets store them; anything else that is not a class index is refused, because a label
    that never equals a class would silently stop the canvas's own class from being
    excluded.

    Args:
        images: the images the labels belong to (only their number is used).
        labels: a tensor, array or sequence of class indices.
        name: names the labels in error messages (e.g. ``"baseline"``).

    Returns:
        The labels as a CPU ``torch.long`` tensor of length ``images.shape[0]``.

    Raises:
        ValueError: no labels, not one per image, or negative classes.
        TypeError: labels that are not integer class indices (strings, booleans,
            fractional or non-finite floats).
    """
    if labels is None:
        raise ValueError(f"{name} labels are required.")
    if not isinstance(labels, Tensor):
        try:
            labels = torch.as_tensor(labels)
        except (TypeError, ValueError, RuntimeError) as error:
            raise TypeError(
                f"{name} labels must be integer class indices (a tensor or a sequence of ints), "
                f"got {type(labels).__name__}: map class names to indices first."
            ) from error
    if labels.dtype == torch.bool or labels.is_complex():
        raise TypeError(f"{name} labels must hold integer class indices, got {labels.dtype}.")
    if labels.is_floating_point():
        whole = torch.isfinite(labels) & (labels == labels.round())
        if not bool(whole.all()):
            bad = labels[~whole].reshape(-1)[0].item()
            raise TypeError(
                f"{name} labels must hold integer class indices, got the float {bad!r}: "
                "pass integer labels (e.g. labels.long() if they are whole numbers)."
            )
    labels = labels.reshape(-1).cpu().long()
    if labels.numel() != images.shape[0]:
        raise ValueError(f"got {labels.numel()} {name} labels for {images.shape[0]} images: give one label per image.")
    if labels.numel() and int(labels.min()) < 0:
        raise ValueError(f"{name} labels must be class indices >= 0, got {int(labels.min())}.")
    return labels


def module_device(forward_func: Callable) -> Optional[torch.device]:
    """The device of a module's first parameter or buffer, or ``None`` if unknown."""
    if isinstance(forward_func, nn.Module):
        for parameter in forward_func.parameters():
            return parameter.device
        for buffer in forward_func.buffers():
            return buffer.device
    return None


def check_device(forward_func: Callable, tensor: Tensor, name: str) -> None:
    """Raise a clear error when ``tensor`` and the model live on different devices."""
    device = module_device(forward_func)
    if device is not None and device != tensor.device:
        raise ValueError(
            f"{name} is on {tensor.device} but the model is on {device}: move it with {name}.to({str(device)!r})."
        )

"""Argument checks shared by every public entry point: images, labels, numbers, choices, devices."""

from __future__ import annotations

import operator
from typing import Any, Callable, Optional, Sequence

import numpy as np
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
    if images.device.type == "meta":
        raise ValueError(
            f"{name} is on the meta device (shapes only, no values): load the images into a tensor on a real device."
        )
    if not torch.isfinite(images).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    if unit_range and (images.min() < 0 or images.max() > 1):
        raise ValueError(
            f"{name} must hold pixels in [0, 1] (found {float(images.min()):.3g}..{float(images.max()):.3g}); "
            "normalisation belongs inside the model, e.g. nn.Sequential(Normalize(...), model)."
        )


NOISE_BOUND = 8.0
"""How far below 0 or above 1 canvases may reach and still be taken for noisy [0, 1] images.

Canvases within ``[-NOISE_BOUND, 1 + NOISE_BOUND]`` are clamped into [0, 1] by
:func:`clamp_noisy_images`; beyond that they are refused as data on another scale (such
as 0-255 pixels). Gaussian noise of standard deviation 1 (Captum's ``NoiseTunnel``
default) stays inside the bound with overwhelming probability.
"""


def clamp_noisy_images(images: Tensor, name: str) -> Tensor:
    """Images in [0, 1] as they are; noisy ones (within :data:`NOISE_BOUND`) clamped into [0, 1].

    Captum's noise wrappers (``NoiseTunnel``, ``sensitivity_max``) add noise to the
    inputs, which takes some pixels outside [0, 1]. Such pixels are clamped, as an image
    cannot hold them; values further out than noise of standard deviation 1 reaches are
    refused, because they mean data on another scale (0-255 pixels, say).

    Args:
        images: an N x C x H x W float tensor.
        name: names the images in error messages.

    Returns:
        ``images`` itself when every pixel lies in [0, 1], else a clamped copy.

    Raises:
        ValueError: not N x C x H x W, empty, NaN or infinite values, or values outside
            ``[-NOISE_BOUND, 1 + NOISE_BOUND]``.
        TypeError: not a float tensor.
    """
    check_images(images, name, unit_range=False)
    low, high = float(images.min()), float(images.max())
    if low >= 0 and high <= 1:
        return images
    if low < -NOISE_BOUND or high > 1 + NOISE_BOUND:
        raise ValueError(
            f"{name} must hold pixels in [0, 1] (found {low:.3g}..{high:.3g}, further out than noise on [0, 1] images "
            f"reaches, which is clamped only within [{-NOISE_BOUND:g}, {1 + NOISE_BOUND:g}]): divide 0-255 images by "
            "255; normalisation belongs inside the model, e.g. nn.Sequential(Normalize(...), model)."
        )
    return images.clamp(0.0, 1.0)


def check_class_index(value: Any, name: str = "target", num_classes: Optional[int] = None) -> int:
    """Return ``value`` as an int class index, or raise an error naming ``name`` and saying what to pass.

    Accepts Python and NumPy ints and one-element integer tensors; refuses booleans,
    floats (even whole ones: a float class is usually a mistake upstream), strings and
    negative values, and, when ``num_classes`` is given, indices the model does not have.

    Args:
        value: the class index.
        name: names the argument in error messages (e.g. ``"target"``).
        num_classes: the model's number of classes (its output width), if known.

    Returns:
        The class index as an ``int``.

    Raises:
        TypeError: not an integer class index.
        ValueError: negative, or not below ``num_classes``.
    """
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, Tensor) and value.dtype == torch.bool):
        raise TypeError(f"{name} must be an int class index, not a bool ({value!r}).")
    if isinstance(value, Tensor):
        if value.numel() != 1 or value.is_floating_point() or value.is_complex():
            raise TypeError(
                f"{name} must be an int class index, got a {value.dtype} tensor of shape {tuple(value.shape)}: "
                "pass int(target) for one class."
            )
        index = int(value.item())
    elif isinstance(value, (float, np.floating)):
        number = float(value)
        hint = f": pass int({number!r}) for class {int(number)}" if number.is_integer() else ""
        raise TypeError(f"{name} must be an int class index, got the float {number!r}{hint}.")
    else:
        try:
            index = operator.index(value)
        except TypeError:
            hint = ": map class names to class indices first" if isinstance(value, str) else ""
            raise TypeError(f"{name} must be an int class index, got {type(value).__name__} {value!r}{hint}.") from None
    if index < 0:
        raise ValueError(f"{name} class {index} is out of range: class indices start at 0.")
    if num_classes is not None and index >= num_classes:
        raise ValueError(
            f"{name} class {index} is out of range: the model has {num_classes} classes (0..{num_classes - 1})."
        )
    return index


def check_choice(value: Any, allowed: Sequence[str], name: str) -> str:
    """Return ``value`` if it is one of the ``allowed`` strings, else raise a ValueError naming them."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(repr(a) for a in allowed)}; got {value!r}.")
    return value


def check_positive_int(value: Any, name: str) -> int:
    """Return ``value`` as an int if it is an integer >= 1 (Python or NumPy, not a bool), else raise a ValueError."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
    return int(value)


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
    if device is not None and device.type == "meta":
        raise ValueError(
            "the model is on the meta device (shapes only, no weights): materialise it first, e.g. "
            "model.to_empty(device='cpu') followed by model.load_state_dict(...)."
        )
    if device is not None and device != tensor.device:
        raise ValueError(
            f"{name} is on {tensor.device} but the model is on {device}: move it with {name}.to({str(device)!r})."
        )

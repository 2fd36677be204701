"""Argument checks and conversions for the figures of :mod:`captum_classpattern.visualization`.

Images and maps arrive as numpy arrays (Captum's H x W x C) or tensors (PyTorch's C x H x W);
these helpers check them, convert them to one layout and raise a clear error up front, so
the drawing code only ever sees valid, converted data.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from ..attr import Budget, Pattern, top_k_pattern


def as_hwc(array: Any, name: str) -> np.ndarray:
    """Convert an image-like argument to a float H x W x C numpy array.

    Numpy arrays follow Captum's convention (H x W or H x W x C); tensors follow PyTorch's
    (H x W, C x H x W, or 1 x C x H x W as returned for a single canvas). The conversion is
    explicit because the two conventions cannot be told apart from the shape alone.
    """
    if isinstance(array, Tensor):
        tensor = array.detach().cpu()
        if tensor.dim() == 4 and tensor.shape[0] == 1:
            tensor = tensor[0]
        if tensor.dim() == 2:
            tensor = tensor.unsqueeze(0)
        if tensor.dim() != 3:
            raise ValueError(
                f"{name} as a tensor must be H x W, C x H x W or 1 x C x H x W; got shape {tuple(array.shape)}. "
                "Pass one image at a time, e.g. maps[i]."
            )
        result = tensor.permute(1, 2, 0).to(torch.float64).numpy()
    elif isinstance(array, np.ndarray):
        if array.ndim == 2:
            array = array[:, :, None]
        if array.ndim != 3:
            raise ValueError(f"{name} as a numpy array must be H x W or H x W x C; got shape {array.shape}.")
        if array.shape[2] > 4 and array.shape[0] <= 4:
            raise ValueError(
                f"{name} has shape {array.shape}, which looks channel-first: numpy arrays must be H x W x C "
                "(Captum's convention). Use array.transpose(1, 2, 0) or pass a torch tensor (C x H x W)."
            )
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
            raise TypeError(f"{name} must hold numbers, got dtype {array.dtype}.")
        result = array.astype(np.float64)
    else:
        raise TypeError(
            f"{name} must be a numpy array (H x W x C) or a torch tensor (C x H x W), got {type(array).__name__}."
        )
    if result.shape[0] == 0 or result.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {result.shape}).")
    if not np.isfinite(result).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    return result


def as_unit_image(image: np.ndarray, name: str) -> np.ndarray:
    """Check an H x W x C image and return it scaled to [0, 1] (Captum accepts 0-1 or 0-255)."""
    if image.shape[2] not in (1, 3):
        raise ValueError(f"{name} must have 1 (grayscale) or 3 (RGB) channels, got {image.shape[2]}.")
    low, high = float(image.min()), float(image.max())
    if low < 0 or high > 255:
        raise ValueError(f"{name} must hold pixels in [0, 1] or [0, 255], found {low:.3g}..{high:.3g}.")
    return image / 255.0 if high > 1.0 else image


def as_batch(images: Any, name: str) -> Tensor:
    """N x C x H x W float CPU tensor from a tensor or a list of C x H x W tensors."""
    if isinstance(images, (list, tuple)) and images and all(isinstance(t, Tensor) for t in images):
        images = torch.stack([t.detach() for t in images])
    if not isinstance(images, Tensor):
        raise TypeError(
            f"{name} must be an N x C x H x W tensor (or a list of C x H x W tensors), got {type(images).__name__}."
        )
    if images.dim() == 3:  # N x H x W: one channel
        images = images.unsqueeze(1)
    if images.dim() != 4 or images.shape[0] == 0:
        raise ValueError(f"{name} must be N x C x H x W with N >= 1, got shape {tuple(images.shape)}.")
    images = images.detach().cpu().float()
    if not torch.isfinite(images).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    return images


def signed(scores: np.ndarray, sign: str) -> np.ndarray:
    """The part of per-pixel scores a sign selects (as Captum filters before normalising)."""
    if sign == "positive":
        return np.maximum(scores, 0)
    if sign == "negative":
        return np.minimum(scores, 0)
    if sign == "absolute_value":
        return np.abs(scores)
    return scores


def gray_to_rgb(image: np.ndarray) -> np.ndarray:
    """Three equal channels for a 1-channel H x W x 1 image, so that Captum draws it in gray.

    Captum shows a 1-channel image in false colour and cannot mask or alpha-scale it.
    """
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image


# --------------------------------------------------------------------------------------
# Canvases, maps and patterns of the grid figures
# --------------------------------------------------------------------------------------


def check_lengths(count: int, **sequences: Optional[Sequence]) -> None:
    """Raise a ValueError unless every given sequence has ``count`` entries (one per canvas)."""
    for name, values in sequences.items():
        if values is not None and len(values) != count:
            raise ValueError(f"{name} has {len(values)} entries for {count} classes (one per canvas is needed).")


def _patterns_for(canvases: Tensor, maps: Tensor, patterns: Optional[Sequence[Pattern]], k: Budget) -> List[Pattern]:
    if patterns is None:
        return [top_k_pattern(maps[i], canvases[i], k) for i in range(canvases.shape[0])]
    if not all(isinstance(p, Pattern) for p in patterns):
        raise TypeError("patterns must be a list of Pattern objects (see top_k_pattern).")
    return list(patterns)


def prepare_setting(
    canvases: Any, maps: Any, patterns: Optional[Sequence[Pattern]], k: Budget, label: str
) -> Tuple[Tensor, Tensor, List[Pattern]]:
    """Check one setting's canvases, maps and patterns (the top-``k`` of each map if ``None``).

    Returns:
        N x C x H x W canvases and maps (float, CPU) and N patterns.

    Raises:
        TypeError: canvases or maps that are not tensors, patterns that are not Patterns.
        ValueError: shapes that disagree, pixels outside [0, 1].
    """
    canvases = as_batch(canvases, f"{label}canvases")
    maps = as_batch(maps, f"{label}maps")
    if maps.shape[0] != canvases.shape[0] or maps.shape[2:] != canvases.shape[2:]:
        raise ValueError(
            f"{label}maps {tuple(maps.shape)} do not match canvases {tuple(canvases.shape)}: "
            "one map per canvas, of the canvas's size."
        )
    if float(canvases.min()) < 0.0 or float(canvases.max()) > 1.0:
        raise ValueError(f"{label}canvases must hold pixels in [0, 1].")
    patterns = _patterns_for(canvases, maps, patterns, k)
    check_lengths(canvases.shape[0], patterns=patterns)
    return canvases, maps, patterns


def unpack_setting(name: str, value: Any, k: Budget) -> Tuple[Tensor, Tensor, List[Pattern]]:
    """Check one entry ``(canvases, maps[, patterns])`` of a settings comparison (see :func:`prepare_setting`)."""
    if not isinstance(value, (tuple, list)) or len(value) not in (2, 3):
        raise ValueError(f"setting {name!r} must be (canvases, maps) or (canvases, maps, patterns).")
    patterns = value[2] if len(value) == 3 else None
    return prepare_setting(value[0], value[1], patterns, k, f"setting {name!r}: ")

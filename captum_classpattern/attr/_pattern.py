"""Class patterns: the top-k pixels of a map with the canvas's values, and stamping them."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
import torch
from torch import Tensor

Budget = Union[int, float]
"""A pattern size: a pixel count (int) or a fraction of the image in (0, 1] (float)."""


def pixel_budget(k: Budget, height: int, width: int) -> int:
    """Turn ``k`` (a pixel count, or a fraction of the image in (0, 1)) into a pixel count.

    Raises:
        ValueError: ``k`` is not positive or exceeds the number of pixels.
        TypeError: ``k`` is neither an int nor a float.
    """
    area = height * width
    if isinstance(k, np.integer):  # NumPy ints (from an array of sizes, say) count as ints
        k = int(k)
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, float)):
        raise TypeError(f"k must be an int (pixels) or a float fraction of the image, got {type(k).__name__}.")
    if isinstance(k, float):
        if not 0.0 < k <= 1.0:
            raise ValueError(f"a fractional k must lie in (0, 1], got {k}; pass an int for a pixel count.")
        return max(1, int(round(k * area)))
    if not 1 <= k <= area:
        raise ValueError(f"k must lie in 1..{area} (the image has {height} x {width} pixels), got {k}.")
    return k


@dataclass
class Pattern:
    """A class pattern: a set of pixels and the values they take.

    Attributes:
        mask: H x W boolean tensor, ``True`` at the pattern's pixels.
        values: C x H x W tensor of the pattern's pixel values (the canvas's values at the
            mask, zero elsewhere).
    """

    mask: Tensor
    values: Tensor

    def __post_init__(self) -> None:
        if self.mask.dim() != 2 or self.mask.dtype != torch.bool:
            raise ValueError("Pattern.mask must be an H x W bool tensor.")
        if self.values.dim() != 3 or tuple(self.values.shape[1:]) != tuple(self.mask.shape):
            raise ValueError(f"Pattern.values must be C x {tuple(self.mask.shape)}, got {tuple(self.values.shape)}.")

    @property
    def k(self) -> int:
        """Number of pixels in the pattern."""
        return int(self.mask.sum())

    def to(self, device: Union[str, torch.device]) -> Pattern:
        """The same pattern on another device."""
        return Pattern(self.mask.to(device), self.values.to(device))

    def stamp(self, images: Tensor) -> Tensor:
        """Return copies of ``images`` with the pattern's pixels set to its values.

        Args:
            images: N x C x H x W (or C x H x W) images of the pattern's size.

        Returns:
            A new tensor; ``images`` is not modified.

        Raises:
            ValueError: the images do not have the pattern's channels and size.
        """
        if images.dim() not in (3, 4) or tuple(images.shape[-3:]) != tuple(self.values.shape):
            raise ValueError(
                f"cannot stamp a {tuple(self.values.shape)} pattern on images of shape {tuple(images.shape)}."
            )
        mask = self.mask.to(images.device)
        return torch.where(mask, self.values.to(images.device, images.dtype), images)


def pixel_scores(attribution: Tensor, absolute: bool = False) -> Tensor:
    """One score per pixel: channels summed, optionally made absolute.

    Args:
        attribution: H x W, C x H x W or 1 x C x H x W scores for one canvas.
        absolute: take absolute values after summing the channels.

    Returns:
        An H x W tensor.

    Raises:
        ValueError: another shape, or NaN / infinite scores.
    """
    if attribution.dim() == 4 and attribution.shape[0] == 1:
        attribution = attribution[0]
    if attribution.dim() == 3:
        attribution = attribution.sum(0)
    if attribution.dim() != 2:
        raise ValueError(f"attribution must be H x W or C x H x W (one canvas), got shape {tuple(attribution.shape)}.")
    if not torch.isfinite(attribution).all():
        raise ValueError("attribution contains NaN or infinite values.")
    return attribution.abs() if absolute else attribution


def top_k_mask(scores: Tensor, k: int, tie_break: Optional[Tensor] = None) -> Tensor:
    """H x W boolean mask of the ``k`` highest of H x W ``scores``, with a fixed rule for ties.

    Pixels are ranked by score (highest first); pixels of equal score by ``tie_break``
    (highest first), then by pixel index in row-major order (lowest first). The ranking is
    done on the CPU in float64 with stable sorts, so the same scores give the same mask on
    every device, in float32 or float64, whatever order the sort would otherwise leave
    equal values in.

    Args:
        scores: H x W scores.
        k: number of pixels to keep, in 1..H W.
        tie_break: optional H x W secondary score, consulted only among pixels of equal
            score (for a ClassPattern map, :attr:`ClassPattern.last_tie_break
            <captum_classpattern.attr.ClassPattern.last_tie_break>`).

    Returns:
        An H x W bool tensor on the device of ``scores``.

    Raises:
        ValueError: ``tie_break`` has another shape or contains NaN.

    Example:
        >>> top_k_mask(torch.tensor([[1.0, 2.0], [2.0, 0.0]]), 1)
        tensor([[False,  True],
                [False, False]])
    """
    height, width = scores.shape
    flat = scores.detach().flatten().to("cpu", torch.float64)
    order = torch.arange(flat.numel())
    if tie_break is not None:
        if tuple(tie_break.shape) != (height, width):
            raise ValueError(f"tie_break must be {height} x {width} like the scores, got {tuple(tie_break.shape)}.")
        secondary = tie_break.detach().flatten().to("cpu", torch.float64)
        if torch.isnan(secondary).any():
            raise ValueError("tie_break contains NaN values.")
        order = torch.sort(secondary, descending=True, stable=True).indices
    order = order[torch.sort(flat[order], descending=True, stable=True).indices]
    mask = torch.zeros(height * width, dtype=torch.bool)
    mask[order[:k]] = True
    return mask.view(height, width).to(scores.device)


def top_k_pattern(
    attribution: Tensor,
    canvas: Tensor,
    k: Budget,
    *,
    absolute: bool = False,
    warn_filler: bool = True,
    tie_break: Optional[Tensor] = None,
) -> Pattern:
    """Keep the ``k`` pixels with the largest attribution, with the canvas's values.

    Works for a ClassPattern map and for any Captum attribution of the canvas: channels
    are summed per pixel, then the top ``k`` pixels are kept.

    Args:
        attribution: H x W or C x H x W scores for one canvas.
        canvas: C x H x W image the values are taken from.
        k: number of pixels, or a fraction of the image (``0.05`` = 5%).
        absolute: rank by absolute value (e.g. for signed attributions whose negative
            evidence should count too). The default keeps the most positive pixels,
            the ones that support the target class.
        warn_filler: warn when fewer than ``k`` pixels have a positive score (set False
            where the caller reports that itself, e.g. once for a whole power curve).
        tie_break: optional H x W (or C x H x W, channels summed) secondary score that
            orders pixels of equal attribution, highest first. For a ClassPattern map pass
            the matching row of :attr:`ClassPattern.last_tie_break
            <captum_classpattern.attr.ClassPattern.last_tie_break>` (the gradient evidence
            the search accumulated). Without it, and among pixels equal in both, the lowest
            pixel index (row-major) wins (:func:`top_k_mask`).

    Returns:
        A :class:`Pattern`.

    Raises:
        ValueError: shapes disagree (also of ``tie_break``), NaN, or ``k`` out of range.

    Warns:
        RuntimeWarning: fewer than ``k`` pixels have a positive score, so part of the pattern
            is filler (a collapsed ClassPattern search).

    Example:
        >>> pattern = top_k_pattern(maps[0], canvas, k=0.05)
        >>> stamped = pattern.stamp(other_images)
        >>> pattern = top_k_pattern(maps[0], canvas, k=0.05, tie_break=explainer.last_tie_break[0])
    """
    if canvas.dim() == 4 and canvas.shape[0] == 1:
        canvas = canvas[0]
    if canvas.dim() != 3:
        raise ValueError(f"canvas must be C x H x W, got shape {tuple(canvas.shape)}.")
    scores = pixel_scores(attribution.detach(), absolute)
    if tuple(scores.shape) != tuple(canvas.shape[1:]):
        raise ValueError(f"attribution is {tuple(scores.shape)} per pixel but the canvas is {tuple(canvas.shape[1:])}.")
    height, width = scores.shape
    count = pixel_budget(k, height, width)
    supporting = int((scores > 0).sum())
    if warn_filler and supporting < count:
        # The rest of the budget is filled with pixels of zero or negative score, in no
        # meaningful order: for a ClassPattern map this is a collapsed search.
        warnings.warn(
            f"only {supporting} of the {count} pixels asked for have a positive score; the other "
            f"{count - supporting} are filler. For a ClassPattern map the search collapsed (the size "
            "penalty won): raise alpha, search longer, or ask for a smaller k.",
            RuntimeWarning,
            stacklevel=2,
        )
    secondary = None if tie_break is None else pixel_scores(tie_break.detach())
    mask = top_k_mask(scores, count, secondary)
    values = torch.where(
        mask.to(canvas.device), canvas.detach(), torch.zeros((), dtype=canvas.dtype, device=canvas.device)
    )
    return Pattern(mask.to(canvas.device), values)


def random_pattern(canvas: Tensor, k: Budget, generator: Optional[torch.Generator] = None) -> Pattern:
    """``k`` canvas pixels chosen uniformly at random: the chance level for a pattern."""
    if canvas.dim() != 3:
        raise ValueError(f"canvas must be C x H x W, got shape {tuple(canvas.shape)}.")
    height, width = canvas.shape[1:]
    count = pixel_budget(k, height, width)
    scores = torch.rand(height * width, generator=generator)
    return top_k_pattern(scores.view(height, width).to(canvas.device), canvas, count)

"""BPP (Wang et al., CVPR 2022): the trigger is the quantisation of colour depth, optionally dithered."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ._triggers import Trigger, as_batch


def _quantise(levels: Tensor, squeeze: int) -> Tensor:
    """Round 0-255 values to ``squeeze`` evenly spaced levels (still on the 0-255 scale)."""
    return torch.round(levels / 255.0 * (squeeze - 1)) / (squeeze - 1) * 255.0


def _dither(levels: Tensor, squeeze: int) -> Tensor:
    """Floyd-Steinberg error diffusion over N x C x H x W 0-255 values, in raster order."""
    out = levels.clone()
    height, width = out.shape[-2:]
    for row in range(height):
        for col in range(width):
            old = out[:, :, row, col]
            new = _quantise(old, squeeze)
            error = old - new
            out[:, :, row, col] = new
            # The four neighbours not yet visited take 7/16, 1/16, 5/16 and 3/16 of the error.
            if col + 1 < width:
                out[:, :, row, col + 1] += error * (7 / 16)
            if row + 1 < height:
                if col + 1 < width:
                    out[:, :, row + 1, col + 1] += error * (1 / 16)
                out[:, :, row + 1, col] += error * (5 / 16)
                if col > 0:
                    out[:, :, row + 1, col - 1] += error * (3 / 16)
    return out


class BitDepthTrigger(Trigger):
    """BPP: reduce every channel to ``squeeze`` levels (3 bits by default), optionally dithered.

    Images are read as 8-bit (``round(255 x)``), each channel value is rounded to one of
    ``squeeze`` evenly spaced levels, and the result is returned in [0, 1]. With
    ``dithering=True`` the rounding error is diffused to the neighbours (Floyd-Steinberg),
    as the paper's dithered variant does; the result is rounded to 8-bit values again.

    Defaults follow BackdoorBench's ``bpp`` attack: ``squeeze = 8``, no dithering,
    poisoning rate 0.1 (relabelled, all-to-one) and negative ("contrastive") samples at
    rate 0.1 that carry another image's quantisation residual but keep their labels
    (:meth:`negative_trigger`, for ``PoisonedDataset(..., cover_rate=0.1,
    cover_trigger=...)``). BackdoorBench draws both inside the training loop; here they
    are drawn once, before augmentation.

    What the defender sees: every pixel may change, by at most half a level step (about
    18/255 for 8 levels) without dithering; the image keeps its content and looks
    posterised.

    Args:
        squeeze: the number of levels per channel, an int in [2, 255].
        dithering: diffuse the rounding error (slower: a Python loop over pixels).

    Raises:
        ValueError: ``squeeze`` outside [2, 255].
        TypeError: a ``squeeze`` that is not an int, or ``dithering`` that is not a bool.

    Example:
        >>> trigger = BitDepthTrigger()
        >>> stamped = trigger(images)              # at most 8 distinct values per channel
    """

    def __init__(self, squeeze: int = 8, dithering: bool = False) -> None:
        if isinstance(squeeze, bool) or not isinstance(squeeze, int):
            raise TypeError(f"squeeze must be an int number of levels, got {type(squeeze).__name__}.")
        if not 2 <= squeeze <= 255:
            raise ValueError(f"squeeze must lie in [2, 255] levels per channel, got {squeeze}.")
        if not isinstance(dithering, bool):
            raise TypeError(f"dithering must be a bool, got {type(dithering).__name__}.")
        self.squeeze = squeeze
        self.dithering = dithering

    def apply(self, images: Tensor) -> Tensor:
        """Quantise copies of ``images``.

        Args:
            images: C x H x W or N x C x H x W images in [0, 1].

        Returns:
            A new tensor of the same shape, dtype and device, holding at most ``squeeze``
            distinct values per channel (without dithering).
        """
        batch, single = as_batch(images)
        levels = torch.round(batch.detach().double().clamp(0.0, 1.0) * 255.0)
        quantised = torch.round(_dither(levels, self.squeeze)) if self.dithering else _quantise(levels, self.squeeze)
        out = (quantised.clamp(0.0, 255.0) / 255.0).to(batch.dtype)
        return out[0] if single else out

    def negative_trigger(self, pool: Tensor, seed: int = 0) -> ResidualTrigger:
        """BPP's negative samples: add the quantisation residual of a random ``pool`` image.

        Args:
            pool: N x C x H x W images in [0, 1] whose residuals ``q(o) - o`` are drawn
                (usually the training images).
            seed: seed of the draws; each call draws anew from the same generator.

        Returns:
            A :class:`ResidualTrigger`.
        """
        return ResidualTrigger(self, pool, seed)

    def __repr__(self) -> str:
        return f"BitDepthTrigger(squeeze={self.squeeze}, dithering={self.dithering})"


class ResidualTrigger(Trigger):
    """Adds another image's quantisation residual: the negative samples of :class:`BitDepthTrigger`.

    Each image gets ``q(o) - o`` for a pool image ``o`` drawn at random, and is clipped to
    [0, 1]; the model is trained to keep such images' labels, so that it reacts to real
    quantisation only, not to any small structured change.

    Args:
        trigger: the :class:`BitDepthTrigger` whose quantisation is used.
        pool: N x C x H x W images in [0, 1].
        seed: seed of the draws (the generator advances with each call).

    Raises:
        ValueError: an empty pool or one that is not N x C x H x W.
    """

    def __init__(self, trigger: BitDepthTrigger, pool: Tensor, seed: int = 0) -> None:
        if not isinstance(pool, Tensor) or pool.dim() != 4 or pool.shape[0] == 0:
            raise ValueError("pool must be a non-empty N x C x H x W tensor of images in [0, 1].")
        self.trigger = trigger
        self.pool = pool
        self.seed = int(seed)
        self._generator: Optional[torch.Generator] = None

    def apply(self, images: Tensor) -> Tensor:
        """Add a drawn residual to each of copies of ``images``.

        Raises:
            ValueError: images of another size or channel count than the pool's.
        """
        batch, single = as_batch(images)
        if tuple(batch.shape[1:]) != tuple(self.pool.shape[1:]):
            raise ValueError(f"images are {tuple(batch.shape[1:])} but the pool is {tuple(self.pool.shape[1:])}.")
        if self._generator is None:
            self._generator = torch.Generator().manual_seed(self.seed)
        drawn = self.pool[torch.randint(self.pool.shape[0], (batch.shape[0],), generator=self._generator)]
        residual = self.trigger.apply(drawn) - drawn.to(torch.float32)
        out = (batch + residual.to(batch.device, batch.dtype)).clamp(0.0, 1.0)
        return out[0] if single else out

    def __repr__(self) -> str:
        return f"ResidualTrigger({self.trigger!r}, pool={self.pool.shape[0]}, seed={self.seed})"

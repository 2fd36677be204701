"""SIG (Barni et al., ICIP 2019): a faint horizontal sinusoid added to the whole image, clean-label."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._triggers import Trigger, as_batch


class SignalTrigger(Trigger):
    """SIG: ``x' = clip(x + delta * sin(2 pi j f / W))``, the same in every row and channel.

    The attack is clean-label: poison target-class training images only and keep their
    labels (``PoisonedDataset(..., clean_label=True)``); the model learns the stripes as
    evidence for the target class, and the same signal on any test image triggers it.

    Defaults follow BackdoorBench's ``sig`` attack: ``delta = 40 / 255``, ``f = 6`` (six
    periods across the image width), poisoning rate 0.1 of the whole training set counted
    over all items (on CIFAR-10, every image of the target class).

    What the defender sees: every pixel changes, by at most ``delta``, in a pattern
    constant down each column; labels are correct.

    Args:
        delta: amplitude of the signal in [0, 1] pixel units, in (0, 1].
        frequency: periods of the sinusoid across the image width, > 0.

    Raises:
        ValueError: ``delta`` outside (0, 1] or a frequency that is not positive.

    Example:
        >>> trigger = SignalTrigger()
        >>> stamped = trigger(images)
        >>> poisoned = PoisonedDataset((images, labels), trigger, target=0, rate=0.1, clean_label=True)
    """

    def __init__(self, delta: float = 40 / 255, frequency: float = 6.0) -> None:
        if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not 0.0 < delta <= 1.0:
            raise ValueError(f"delta must be a float in (0, 1] (pixel units), got {delta!r}.")
        if isinstance(frequency, bool) or not isinstance(frequency, (int, float)) or not frequency > 0:
            raise ValueError(f"frequency must be a positive number of periods per width, got {frequency!r}.")
        self.delta = float(delta)
        self.frequency = float(frequency)

    def signal(self, height: int, width: int) -> Tensor:
        """The H x W additive signal (CPU, float32), constant down each column."""
        columns = torch.arange(width, dtype=torch.float64)
        row = self.delta * torch.sin(2.0 * math.pi * columns * self.frequency / width)
        return row.float().expand(height, width)

    def apply(self, images: Tensor) -> Tensor:
        """Add the signal to copies of ``images`` and clip to [0, 1].

        Args:
            images: C x H x W or N x C x H x W images in [0, 1].

        Returns:
            A new tensor of the same shape, dtype and device.
        """
        batch, single = as_batch(images)
        signal = self.signal(*batch.shape[-2:]).to(batch.device, batch.dtype)
        out = (batch + signal).clamp(0.0, 1.0)
        return out[0] if single else out

    def __repr__(self) -> str:
        return f"SignalTrigger(delta={self.delta:.6g}, frequency={self.frequency:g})"

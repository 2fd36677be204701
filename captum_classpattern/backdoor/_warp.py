"""WaNet (Nguyen & Tran, ICLR 2021): a smooth, nearly invisible warp of the whole image as the trigger.

The warping field follows the paper and BackdoorBench's ``wanet`` attack: a ``k x k`` grid
of random 2-d displacements, uniform in [-1, 1] and scaled so their mean absolute value is
1, upsampled bicubically (corners aligned) to the image size, multiplied by ``s / H``
(``s`` the strength), added to the identity sampling grid, multiplied by ``grid_rescale``,
clamped to [-1, 1], and applied with bilinear ``grid_sample`` (``align_corners=True``).
Defaults: ``k = 4``, ``s = 0.5``, ``grid_rescale = 1``; training poisons ``rate = 0.1``
of every batch and warps ``cross_ratio = 2`` times as many "noise mode" items with the
field plus per-pixel noise in ``[-1, 1] / H``, keeping their labels, so the classifier
learns the exact field and not any warp.
"""

from __future__ import annotations

from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..training import PoisonedBatch
from ._checks import check_number
from ._per_batch import backdoor_labels, batch_count, check_target
from ._triggers import Trigger, as_batch


def _identity_grid(height: int, width: int) -> Tensor:
    """The H x W x 2 sampling grid that ``grid_sample`` maps to the image itself (x first, then y)."""
    rows, cols = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    return torch.stack((cols, rows), dim=-1)


def _per_axis(height: int, width: int) -> Tensor:
    # BackdoorBench divides both displacements by the (square) image's height; dividing each
    # by its own side keeps that on square images and the same pixel scale on others.
    return torch.tensor([1.0 / width, 1.0 / height])


class WarpTrigger(Trigger):
    """WaNet's trigger: every image warped by one fixed, smooth, seeded field.

    What the defender sees: no patch and no colour change; every pixel is resampled from
    a point at most about one pixel away (at the defaults, sub-pixel for most pixels), so
    edges bend slightly. The field is the same for every image; for the labels, see
    :class:`WarpPoisoning` (training in the noise mode) or :class:`PoisonedDataset` (a
    static poisoned copy, relabelled to the target).

    The displacement of every pixel is at most ``strength * max|noise| / H`` grid units
    (``align_corners=True`` grid units: 2 / (H - 1) per pixel), where the noise is the
    upsampled ``k x k`` grid; clamping only keeps the sampling grid inside the image.

    Args:
        k: side of the random control grid (BackdoorBench: 4). Smaller is smoother.
        strength: ``s``, the field's amplitude (BackdoorBench: 0.5); 0 is the identity.
        grid_rescale: multiplies the warped grid before clamping (BackdoorBench: 1).
        seed: seed of the control grid; the same seed gives the same trigger at any size.

    Attributes:
        control_points: the ``2 x k x k`` normalised control grid (x and y displacements).

    Raises:
        ValueError: ``k`` below 2, a negative strength or a non-positive ``grid_rescale``.
        TypeError: a setting that is not a number.

    Example:
        >>> trigger = WarpTrigger(k=4, strength=0.5, seed=0)
        >>> warped = trigger(images)                  # new tensor; images unchanged
        >>> flow = trigger.field(32, 32)              # 32 x 32 x 2, grid units
    """

    def __init__(self, k: int = 4, strength: float = 0.5, grid_rescale: float = 1.0, seed: int = 0) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 2:
            raise ValueError(f"k must be an int >= 2 (the side of the control grid), got {k!r}.")
        self.k = k
        self.strength = check_number(strength, "strength", 0.0, float("inf"))
        self.grid_rescale = check_number(grid_rescale, "grid_rescale", 0.0, float("inf"), low_open=True)
        self.seed = int(seed)
        generator = torch.Generator().manual_seed(self.seed)
        control = torch.rand(2, k, k, generator=generator) * 2 - 1
        # Scaled so the mean absolute control value is 1, as the paper's code does.
        self.control_points: Tensor = control / control.abs().mean()

    def noise(self, height: int, width: int) -> Tensor:
        """The control grid upsampled bicubically (corners aligned) to ``height x width``: H x W x 2."""
        upsampled = F.interpolate(self.control_points[None], size=(height, width), mode="bicubic", align_corners=True)
        return upsampled[0].permute(1, 2, 0)

    def grid(self, height: int, width: int) -> Tensor:
        """The H x W x 2 sampling grid of the warp (``grid_sample`` convention, in [-1, 1])."""
        scale = self.strength * _per_axis(height, width)
        warped = (_identity_grid(height, width) + scale * self.noise(height, width)) * self.grid_rescale
        return warped.clamp(-1.0, 1.0)

    def field(self, height: int, width: int) -> Tensor:
        """The flow: each pixel's displacement, H x W x 2 (x then y), in grid units (2 / (side - 1) a pixel)."""
        return self.grid(height, width) - _identity_grid(height, width)

    def mask(self, height: int, width: int, threshold: float = 0.05) -> Tensor:
        """The pixels the warp moves by more than ``threshold`` pixels: H x W bool.

        A warp changes the whole image; this mask leaves out only the pixels the field
        barely moves (where it crosses zero, or where clamping holds it at the border).

        Args:
            height: image height.
            width: image width.
            threshold: the smallest displacement, in pixels, counted as moved.
        """
        flow = self.field(height, width)
        pixels = flow * torch.tensor([(width - 1) / 2.0, (height - 1) / 2.0])
        return pixels.norm(dim=-1) > threshold

    def _sample(self, images: Tensor, grids: Tensor) -> Tensor:
        batch, single = as_batch(images)
        out = F.grid_sample(
            batch, grids.to(batch.device, batch.dtype), mode="bilinear", padding_mode="zeros", align_corners=True
        )
        return out[0] if single else out

    def apply(self, images: Tensor) -> Tensor:
        """Warp copies of ``images`` with the field.

        Args:
            images: C x H x W or N x C x H x W images in [0, 1].

        Returns:
            A new tensor of the same shape, dtype and device.
        """
        batch, _ = as_batch(images)
        grid = self.grid(*batch.shape[-2:])
        return self._sample(images, grid.expand(batch.shape[0], *grid.shape))

    def warp_with_noise(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """WaNet's noise mode: the field plus fresh per-pixel noise, uniform in ``[-1, 1] / H`` grid units.

        These "cross" items are trained with their own labels, so the classifier learns to
        react to the exact field only.

        Args:
            images: C x H x W or N x C x H x W images in [0, 1].
            generator: the source of the noise (a CPU generator).

        Returns:
            A new tensor of the same shape, dtype and device.
        """
        batch, _ = as_batch(images)
        height, width = batch.shape[-2:]
        noise = torch.rand(batch.shape[0], height, width, 2, generator=generator) * 2 - 1
        grids = (self.grid(height, width) + noise * _per_axis(height, width)).clamp(-1.0, 1.0)
        return self._sample(images, grids)

    def __repr__(self) -> str:
        return f"WarpTrigger(k={self.k}, strength={self.strength}, grid_rescale={self.grid_rescale}, seed={self.seed})"


class WarpPoisoning:
    """WaNet's training-time poisoning, batch by batch: pass it as ``perturb`` to ``train_with_recipe``.

    In every (augmented) batch of ``n`` items, ``floor(rate * n)`` random items are warped
    with the trigger and relabelled (one item with probability ``rate * n`` where that is
    below one), and ``floor(cross_ratio * that)`` other items are warped in the noise mode
    (:meth:`WarpTrigger.warp_with_noise`) and keep their labels. BackdoorBench's defaults:
    ``rate = 0.1``, ``cross_ratio = 2``, all-to-one to class 0. As there, items of the
    target class may be drawn too (their label does not change). BackdoorBench warps the
    batch before its augmentation; here it is warped after, so the classifier sees the
    exact field.

    What the defender sees: a clean training set (the poisoning happens inside the training
    loop); in the batches, ``rate`` of the items slightly warped and relabelled, twice as
    many warped with jitter and correctly labelled.

    Args:
        trigger: the :class:`WarpTrigger` (also the test-time trigger).
        target: the target class (all-to-one), or ``"all-to-all"`` (label ``y`` becomes
            ``(y + 1) % num_classes``).
        rate: share of each batch poisoned, in [0, 1].
        cross_ratio: noise-mode items per poisoned item, >= 0.
        num_classes: the number of classes; needed for all-to-all.

    Raises:
        TypeError: a trigger that is not a :class:`WarpTrigger`.
        ValueError: a rate outside [0, 1], a negative ``cross_ratio``, more items to change
            than a batch holds (``rate * (1 + cross_ratio) > 1``), or a bad target.

    Example:
        >>> poisoning = WarpPoisoning(WarpTrigger(seed=0), target=0)
        >>> run = train_with_recipe(model, images, labels, recipe, perturb=poisoning)
        >>> backdoor_metrics(run.model, test_images, test_labels, poisoning.trigger, target=0)
    """

    def __init__(
        self,
        trigger: WarpTrigger,
        target: Union[int, str] = 0,
        rate: float = 0.1,
        cross_ratio: float = 2.0,
        *,
        num_classes: Optional[int] = None,
    ) -> None:
        if not isinstance(trigger, WarpTrigger):
            raise TypeError(f"trigger must be a WarpTrigger, got {type(trigger).__name__}.")
        self.trigger = trigger
        self.target, self.num_classes = check_target(target, num_classes)
        self.rate = check_number(rate, "rate", 0.0, 1.0)
        self.cross_ratio = check_number(cross_ratio, "cross_ratio", 0.0, float("inf"))
        if self.rate * (1.0 + self.cross_ratio) > 1.0 + 1e-9:
            raise ValueError(
                f"rate * (1 + cross_ratio) = {self.rate * (1 + self.cross_ratio):g} exceeds the batch; lower the "
                "rate or the cross_ratio."
            )

    def poison_batch(
        self, model: nn.Module, images: Tensor, labels: Tensor, generator: torch.Generator
    ) -> PoisonedBatch:
        """Warp and relabel a share of the batch, and warp another share in the noise mode.

        Args:
            model: the classifier (unused: the warp does not depend on it).
            images: the augmented batch, N x C x H x W in [0, 1] (not modified).
            labels: its labels (not modified).
            generator: the source of the draws (which items, the noise).

        Returns:
            A :class:`~captum_classpattern.training.PoisonedBatch` with new images and labels.
        """
        count = images.shape[0]
        poisoned = batch_count(self.rate, count, generator)
        cross = int(poisoned * self.cross_ratio + 1e-9)
        order = torch.randperm(count, generator=generator).to(images.device)
        chosen, jittered = order[:poisoned], order[poisoned : poisoned + cross]
        out, new_labels = images.clone(), labels.clone()
        if poisoned:
            out[chosen] = self.trigger.apply(images[chosen])
            new_labels[chosen] = backdoor_labels(labels[chosen], self.target, self.num_classes)
        if cross:
            out[jittered] = self.trigger.warp_with_noise(images[jittered], generator)
        return PoisonedBatch(out, new_labels)

    def __repr__(self) -> str:
        return (
            f"WarpPoisoning(trigger={self.trigger!r}, target={self.target!r}, rate={self.rate}, "
            f"cross_ratio={self.cross_ratio}, num_classes={self.num_classes})"
        )

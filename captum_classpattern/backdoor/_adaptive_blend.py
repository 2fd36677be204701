"""Adap-Blend (Qi et al., ICLR 2023): a blend trigger split into pieces, half of them per poisoned image.

Defences that separate poisoned from clean training items in the model's latent space
assume the poisoned items form their own cluster. Qi, Xie, Li, Wang and Mittal weaken that
separation two ways: each poisoned item carries only a random part of the trigger (a
random half of its pieces, blended faintly), and a few "cover" items carry the trigger the
same way but keep their true labels, so the trigger alone does not decide the label. At
test time the whole trigger, blended a little more strongly, brings the target class.

Defaults follow the authors' backdoor-toolbox (``adaptive_blend``) and their CIFAR-10
commands: a 4 x 4 grid of 16 pieces, 8 of them (half) per training item, training blend
``alpha = 0.15``, test blend ``alpha = 0.2``, poisoning rate 0.003 and cover rate 0.003 of
the training set. Their trigger image (a Hello Kitty picture) is not shipped here: the
default pattern is seeded uniform noise, as :class:`BlendTrigger`'s; pass your own image
as ``pattern``. The paper reports an attack success rate below BadNets' (around 0.7 to
0.8 on CIFAR-10): the attack trades strength for evading latent-separation defences.
"""

from __future__ import annotations

import hashlib
import math
from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from .._utils import check_positive_int
from ._checks import check_number
from ._triggers import BlendTrigger, Trigger, as_batch

ADAPTIVE_BLEND_RATE = 0.003
"""Poisoning rate of the authors' CIFAR-10 commands (share of the whole training set)."""

ADAPTIVE_BLEND_COVER_RATE = 0.003
"""Cover rate of the authors' CIFAR-10 commands (share of the whole training set, labels kept)."""


def _bounds(size: int, parts: int) -> Tensor:
    """``parts + 1`` integer cut points from 0 to ``size``, as even as integers allow."""
    return torch.div(torch.arange(parts + 1) * size, parts, rounding_mode="floor")


class AdaptiveBlendTrigger(Trigger):
    """Adap-Blend's test-time trigger (the whole pattern at ``test_alpha``) and its training view.

    The pattern is cut into ``pieces`` rectangles on a square grid (``sqrt(pieces)`` rows and
    columns, as even as the image size allows; together they cover the image exactly once).
    Training items (poisoned and cover) are blended at ``train_alpha`` on a random
    ``piece_share`` of the pieces each (:meth:`training_trigger`); :meth:`apply`, the test
    trigger, blends all pieces at ``test_alpha``.

    What the defender sees: in training, 0.3% of the items relabelled to the target and
    0.3% with their own labels, all with a faint blend (15%) of part of a fixed pattern;
    at test time the whole pattern at 20% over every pixel.

    Args:
        pattern: the trigger image (H x W or C x H x W in [0, 1]), or ``"noise"`` for
            uniform noise drawn from ``seed`` (the same for every image of a size).
        pieces: number of pieces, a square number (default 16, a 4 x 4 grid).
        piece_share: share of the pieces each training item carries, in (0, 1]
            (default 0.5: 8 of 16).
        train_alpha: blend weight of the training items, in (0, 1] (default 0.15).
        test_alpha: blend weight of the test trigger, in (0, 1] (default 0.2).
        seed: seed of the noise pattern and of the default draw of pieces.

    Raises:
        ValueError: ``pieces`` not a square number, a share or alpha outside (0, 1], or a
            pattern outside [0, 1].
        TypeError: a pattern that is neither a tensor nor ``"noise"``.

    Example:
        >>> trigger = AdaptiveBlendTrigger(seed=0)
        >>> poisoned = PoisonedDataset(
        ...     (images, labels), trigger.training_trigger(), target=0, rate=ADAPTIVE_BLEND_RATE,
        ...     cover_rate=ADAPTIVE_BLEND_COVER_RATE)
        >>> metrics = backdoor_metrics(model, test_images, test_labels, trigger, target=0)
    """

    def __init__(
        self,
        pattern: Union[str, Tensor] = "noise",
        pieces: int = 16,
        piece_share: float = 0.5,
        train_alpha: float = 0.15,
        test_alpha: float = 0.2,
        seed: int = 0,
    ) -> None:
        pieces = check_positive_int(pieces, "pieces")
        side = math.isqrt(pieces)
        if side * side != pieces:
            raise ValueError(f"pieces must be a square number (4, 9, 16, ...) to form a grid, got {pieces}.")
        self.pieces, self.grid = pieces, side
        self.piece_share = check_number(piece_share, "piece_share", 0.0, 1.0, low_open=True)
        self.train_alpha = check_number(train_alpha, "train_alpha", 0.0, 1.0, low_open=True)
        self.test_alpha = check_number(test_alpha, "test_alpha", 0.0, 1.0, low_open=True)
        self.seed = int(seed)
        # The pattern checks and the seeded noise are BlendTrigger's, so the two agree.
        self.blend = BlendTrigger(pattern, alpha=self.test_alpha, seed=self.seed)

    @property
    def pieces_per_item(self) -> int:
        """How many pieces each training item carries: ``round(piece_share * pieces)``, at least 1."""
        return max(1, int(round(self.piece_share * self.pieces)))

    def piece_masks(self, height: int, width: int) -> Tensor:
        """The ``pieces x H x W`` boolean masks of the pieces, row by row; every pixel is in exactly one.

        Raises:
            ValueError: an image smaller than the grid.
        """
        if height < self.grid or width < self.grid:
            raise ValueError(f"a {self.grid} x {self.grid} grid of pieces needs images of at least that size.")
        rows, cols = _bounds(height, self.grid), _bounds(width, self.grid)
        masks = torch.zeros(self.pieces, height, width, dtype=torch.bool)
        for index in range(self.pieces):
            r, c = divmod(index, self.grid)
            masks[index, rows[r] : rows[r + 1], cols[c] : cols[c + 1]] = True
        return masks

    def apply(self, images: Tensor) -> Tensor:
        """The test-time trigger: blend the whole pattern into copies of ``images`` at ``test_alpha``.

        Args:
            images: C x H x W or N x C x H x W images in [0, 1].

        Returns:
            A new tensor of the same shape, dtype and device.
        """
        return self.blend.apply(images)

    def training_trigger(self, seed: Optional[int] = None) -> AdaptiveBlendTrainingTrigger:
        """The training-time view: each image blended at ``train_alpha`` on its own random pieces.

        Args:
            seed: seed of the draw of pieces (default: the trigger's ``seed``).

        Returns:
            An :class:`AdaptiveBlendTrainingTrigger` for :class:`PoisonedDataset`'s
            ``trigger`` (and, by default, its cover items).
        """
        return AdaptiveBlendTrainingTrigger(self, self.seed if seed is None else int(seed))

    def __repr__(self) -> str:
        pattern = "noise" if isinstance(self.blend.pattern, str) else "tensor"
        return (
            f"AdaptiveBlendTrigger(pattern={pattern!r}, pieces={self.pieces}, piece_share={self.piece_share:g}, "
            f"train_alpha={self.train_alpha:g}, test_alpha={self.test_alpha:g}, seed={self.seed})"
        )


def _image_key(image: Tensor) -> int:
    """A 63-bit number fixed by the image's pixels (its float32 bytes), the same on every run and device."""
    data = image.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") >> 1


class AdaptiveBlendTrainingTrigger(Trigger):
    """Adap-Blend's training stamp: the pattern blended at ``train_alpha`` on a random subset of its pieces per image.

    Each image gets :attr:`AdaptiveBlendTrigger.pieces_per_item` pieces drawn without
    replacement by a ``torch.Generator`` seeded from ``seed`` and the image's own pixels:
    different images get different subsets, and an image gets the same subset however
    often, in whatever order or batch it is stamped (a poisoned set read item by item and
    one built with ``tensors()`` agree), as in the authors' statically poisoned set.

    Args:
        trigger: the :class:`AdaptiveBlendTrigger` it belongs to.
        seed: seed of the draws.

    Example:
        >>> stamp = AdaptiveBlendTrigger().training_trigger(seed=1)
        >>> chosen = stamp.chosen_pieces(images)     # N x pieces booleans, 8 per row
    """

    def __init__(self, trigger: AdaptiveBlendTrigger, seed: int = 0) -> None:
        if not isinstance(trigger, AdaptiveBlendTrigger):
            raise TypeError(f"trigger must be an AdaptiveBlendTrigger, got {type(trigger).__name__}.")
        self.trigger = trigger
        self.seed = int(seed)

    def chosen_pieces(self, images: Tensor) -> Tensor:
        """The ``N x pieces`` boolean choice of pieces for each image (one C x H x W image: ``1 x pieces``)."""
        batch, _ = as_batch(images)
        count, total = self.trigger.pieces_per_item, self.trigger.pieces
        chosen = torch.zeros(batch.shape[0], total, dtype=torch.bool)
        for row, image in enumerate(batch):
            generator = torch.Generator().manual_seed((_image_key(image) + self.seed) % (2**63))
            chosen[row, torch.randperm(total, generator=generator)[:count]] = True
        return chosen

    def blend_masks(self, images: Tensor) -> Tuple[Tensor, Tensor]:
        """``(chosen, masks)``: the chosen pieces (N x pieces) and the pixels blended (N x H x W booleans)."""
        batch, _ = as_batch(images)
        chosen = self.chosen_pieces(batch)
        pieces = self.trigger.piece_masks(*batch.shape[-2:])
        masks = (chosen[:, :, None, None] & pieces[None]).any(1)
        return chosen, masks

    def apply(self, images: Tensor) -> Tensor:
        """Blend the pattern at ``train_alpha`` into copies of ``images``, on each image's chosen pieces.

        Args:
            images: C x H x W or N x C x H x W images in [0, 1].

        Returns:
            A new tensor of the same shape, dtype and device.
        """
        batch, single = as_batch(images)
        _, masks = self.blend_masks(batch)
        pattern = self.trigger.blend.trigger_image(*batch.shape[1:]).to(batch.device, batch.dtype)
        weight = self.trigger.train_alpha * masks[:, None].to(batch.device, batch.dtype)
        out = (1.0 - weight) * batch + weight * pattern
        return out[0] if single else out

    def __repr__(self) -> str:
        return f"AdaptiveBlendTrainingTrigger({self.trigger!r}, seed={self.seed})"

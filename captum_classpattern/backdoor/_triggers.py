"""Backdoor triggers: functions from clean to triggered images, in pixel space.

Triggers work on images in [0, 1], before any normalisation, and never modify the
caller's tensors: they return new ones.

* :class:`PatchTrigger`: BadNets, a small patch pasted at a fixed place (default a 3 x 3
  white square flush at the bottom-right, as BackdoorBench does).
* :class:`BlendTrigger`: Blended, ``x' = (1 - alpha) x + alpha t`` with a fixed image or
  seeded noise ``t`` (``alpha = 0.2``).
"""

from __future__ import annotations

from typing import Tuple, Union

import torch
from torch import Tensor

_CORNERS = ("bottom-right", "bottom-left", "top-right", "top-left", "center")


def as_batch(images: Tensor) -> Tuple[Tensor, bool]:
    """Accept one C x H x W image or a batch; say which so the result can match."""
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}.")
    if images.dim() == 3:
        return images.unsqueeze(0), True
    if images.dim() == 4:
        return images, False
    raise ValueError(f"images must be C x H x W or N x C x H x W, got shape {tuple(images.shape)}.")


class Trigger:
    """A backdoor trigger: a function from clean to triggered images.

    Subclasses implement :meth:`apply`, and :meth:`mask` when the trigger changes only some
    pixels (the default is every pixel: a blend, a signal, a warp, or a trigger that
    depends on the image). Calling the trigger is the same as calling :meth:`apply`.
    """

    def apply(self, images: Tensor) -> Tensor:  # pragma: no cover - interface
        """Return triggered copies of ``images`` (the input is not modified)."""
        raise NotImplementedError

    def mask(self, height: int, width: int) -> Tensor:
        """The H x W boolean mask of the pixels the trigger may change: by default every pixel."""
        return torch.ones(height, width, dtype=torch.bool)

    def __call__(self, images: Tensor) -> Tensor:
        return self.apply(images)


class PatchTrigger(Trigger):
    """BadNets: a small patch pasted over the image at a fixed place.

    Args:
        size: side of the square patch in pixels, or ``(height, width)``.
        position: ``"bottom-right"`` (default, flush with the corner as in BackdoorBench),
            ``"bottom-left"``, ``"top-right"``, ``"top-left"``, ``"center"``, or the
            ``(row, column)`` of the patch's top-left pixel.
        content: the patch's pixels: a float in [0, 1] (``1.0`` is white), an
            ``h x w`` tensor (shared by all channels) or a ``C x h x w`` tensor.

    Raises:
        ValueError: a size that is not positive, an unknown position, or content outside
            [0, 1] or of the wrong shape.
        TypeError: content that is neither a number nor a tensor.

    Example:
        >>> trigger = PatchTrigger()                  # 3 x 3 white square, bottom-right
        >>> stamped = trigger(images)                 # new tensor; images unchanged
        >>> true_mask = trigger.mask(*images.shape[-2:])
    """

    def __init__(
        self,
        size: Union[int, Tuple[int, int]] = 3,
        position: Union[str, Tuple[int, int]] = "bottom-right",
        content: Union[float, Tensor] = 1.0,
    ) -> None:
        sizes = (size, size) if isinstance(size, int) else tuple(size)
        if len(sizes) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes):
            raise ValueError(f"size must be a positive int or a (height, width) pair of them, got {size!r}.")
        self.size: Tuple[int, int] = sizes
        if isinstance(position, str):
            if position not in _CORNERS:
                raise ValueError(f"position must be one of {_CORNERS} or a (row, column) pair, got {position!r}.")
        elif not (
            isinstance(position, (tuple, list))
            and len(position) == 2
            and all(isinstance(p, int) and p >= 0 for p in position)
        ):
            raise ValueError(
                f"position must be one of {_CORNERS} or a (row, column) pair of ints >= 0, got {position!r}."
            )
        self.position = position if isinstance(position, str) else tuple(position)
        if isinstance(content, bool) or not isinstance(content, (int, float, Tensor)):
            raise TypeError(f"content must be a float in [0, 1] or a tensor, got {type(content).__name__}.")
        if isinstance(content, Tensor):
            if content.dim() == 2:
                content = content.unsqueeze(0)
            if content.dim() != 3 or tuple(content.shape[1:]) != self.size:
                raise ValueError(f"content must be {self.size} or C x {self.size}, got shape {tuple(content.shape)}.")
            if not torch.isfinite(content).all() or content.min() < 0 or content.max() > 1:
                raise ValueError("content must hold pixels in [0, 1].")
            content = content.detach().clone().float()
        elif not 0.0 <= float(content) <= 1.0:
            raise ValueError(f"content must lie in [0, 1], got {content}.")
        self.content = content

    def corner(self, height: int, width: int) -> Tuple[int, int]:
        """The ``(row, column)`` of the patch's top-left pixel in an ``height x width`` image.

        Raises:
            ValueError: the patch does not fit in the image.
        """
        ph, pw = self.size
        if ph > height or pw > width:
            raise ValueError(f"a {ph} x {pw} patch does not fit in a {height} x {width} image.")
        if isinstance(self.position, tuple):
            row, col = self.position
        else:
            rows = {"top": 0, "bottom": height - ph, "center": (height - ph) // 2}
            cols = {"left": 0, "right": width - pw, "center": (width - pw) // 2}
            vertical, _, horizontal = self.position.partition("-")
            row, col = rows[vertical], cols[horizontal or "center"]
        if row + ph > height or col + pw > width:
            raise ValueError(f"a {ph} x {pw} patch at {(row, col)} does not fit in a {height} x {width} image.")
        return row, col

    def mask(self, height: int, width: int) -> Tensor:
        """The H x W boolean mask of the patch's pixels.

        Args:
            height: image height.
            width: image width.

        Returns:
            A bool tensor, ``True`` under the patch.
        """
        row, col = self.corner(height, width)
        out = torch.zeros(height, width, dtype=torch.bool)
        out[row : row + self.size[0], col : col + self.size[1]] = True
        return out

    def apply(self, images: Tensor) -> Tensor:
        """Paste the patch onto copies of ``images``.

        Args:
            images: C x H x W or N x C x H x W images in [0, 1].

        Returns:
            A new tensor of the same shape, dtype and device.

        Raises:
            ValueError: wrong shape, or tensor content with a channel count the images
                do not have.
        """
        batch, single = as_batch(images)
        out = batch.clone()
        row, col = self.corner(*batch.shape[-2:])
        ph, pw = self.size
        if isinstance(self.content, Tensor):
            content = self.content.to(out.device, out.dtype)
            if content.shape[0] not in (1, out.shape[1]):
                raise ValueError(f"the patch has {content.shape[0]} channels but the images have {out.shape[1]}.")
            out[:, :, row : row + ph, col : col + pw] = content
        else:
            out[:, :, row : row + ph, col : col + pw] = float(self.content)
        return out[0] if single else out

    def __repr__(self) -> str:
        content = "tensor" if isinstance(self.content, Tensor) else self.content
        return f"PatchTrigger(size={self.size}, position={self.position!r}, content={content})"


class BlendTrigger(Trigger):
    """Blended: ``x' = (1 - alpha) x + alpha t`` with a fixed trigger image ``t``.

    Args:
        pattern: the trigger image ``t`` (H x W or C x H x W, in [0, 1]), or ``"noise"``
            for uniform noise drawn once per image size from ``seed`` (so every image of a
            size gets the same noise).
        alpha: blend weight in (0, 1].
        seed: seed of the noise pattern.

    Raises:
        ValueError: ``alpha`` outside (0, 1], or a pattern outside [0, 1].
        TypeError: a pattern that is neither a tensor nor ``"noise"``.

    Example:
        >>> trigger = BlendTrigger("noise", alpha=0.2, seed=0)
        >>> stamped = trigger(images)
    """

    def __init__(self, pattern: Union[str, Tensor] = "noise", alpha: float = 0.2, seed: int = 0) -> None:
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be a float in (0, 1], got {alpha!r}.")
        if isinstance(pattern, str):
            if pattern != "noise":
                raise ValueError(f"pattern must be a tensor or 'noise', got {pattern!r}.")
        elif isinstance(pattern, Tensor):
            if pattern.dim() == 2:
                pattern = pattern.unsqueeze(0)
            if pattern.dim() != 3:
                raise ValueError(f"pattern must be H x W or C x H x W, got shape {tuple(pattern.shape)}.")
            if not torch.isfinite(pattern).all() or pattern.min() < 0 or pattern.max() > 1:
                raise ValueError("pattern must hold pixels in [0, 1].")
            pattern = pattern.detach().clone().float()
        else:
            raise TypeError(f"pattern must be a tensor or 'noise', got {type(pattern).__name__}.")
        self.pattern = pattern
        self.alpha = float(alpha)
        self.seed = int(seed)

    def trigger_image(self, channels: int, height: int, width: int) -> Tensor:
        """The trigger image ``t`` for images of this size (CPU, float32).

        Raises:
            ValueError: a tensor pattern whose size or channels do not fit.
        """
        if isinstance(self.pattern, str):
            # The noise depends on the seed and the size only, so train and test agree.
            generator = torch.Generator().manual_seed(self.seed)
            return torch.rand(channels, height, width, generator=generator)
        if tuple(self.pattern.shape[1:]) != (height, width) or self.pattern.shape[0] not in (1, channels):
            raise ValueError(
                f"the blend pattern is {tuple(self.pattern.shape)} but the images are {(channels, height, width)}."
            )
        return self.pattern.expand(channels, height, width)

    def apply(self, images: Tensor) -> Tensor:
        """Blend the trigger into copies of ``images``.

        Args:
            images: C x H x W or N x C x H x W images in [0, 1].

        Returns:
            A new tensor of the same shape, dtype and device.
        """
        batch, single = as_batch(images)
        pattern = self.trigger_image(*batch.shape[1:]).to(batch.device, batch.dtype)
        out = (1.0 - self.alpha) * batch + self.alpha * pattern
        return out[0] if single else out

    def __repr__(self) -> str:
        pattern = "noise" if isinstance(self.pattern, str) else "tensor"
        return f"BlendTrigger(pattern={pattern!r}, alpha={self.alpha}, seed={self.seed})"

"""Backdoor triggers, all-to-one poisoning and the attack metrics (CA, ASR, RA).

Everything works in pixel space, on images in [0, 1] before any normalisation
(METHOD.md §2). Triggers never modify the caller's tensors: they return new ones.

* :class:`PatchTrigger`: BadNets, a small patch pasted at a fixed place (default a 3 x 3
  white square flush at the bottom-right, as BackdoorBench does).
* :class:`BlendTrigger`: Blended, ``x' = (1 - alpha) x + alpha t`` with a fixed image or
  seeded noise ``t`` (``alpha = 0.2``).
* :class:`PoisonedDataset`: an all-to-one poisoned view of an ``(image, label)`` data set.
* :func:`backdoor_metrics`: clean accuracy, attack success rate and robust accuracy, the
  last two counted on non-target test images only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple, Union

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ._helpers import check_images, evaluation_mode

__all__ = [
    "Trigger",
    "PatchTrigger",
    "BlendTrigger",
    "PoisonedDataset",
    "BackdoorMetrics",
    "backdoor_metrics",
    "clean_accuracy",
    "attack_success_rate",
    "trigger_robust_accuracy",
]

_CORNERS = ("bottom-right", "bottom-left", "top-right", "top-left", "center")


def _as_batch(images: Tensor) -> Tuple[Tensor, bool]:
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

    Subclasses implement :meth:`apply` and :meth:`mask`. Calling the trigger is the same
    as calling :meth:`apply`.
    """

    def apply(self, images: Tensor) -> Tensor:  # pragma: no cover - interface
        """Return triggered copies of ``images`` (the input is not modified)."""
        raise NotImplementedError

    def mask(self, height: int, width: int) -> Tensor:  # pragma: no cover - interface
        """The H x W boolean mask of the pixels the trigger changes."""
        raise NotImplementedError

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

    def __init__(self, size: Union[int, Tuple[int, int]] = 3, position: Union[str, Tuple[int, int]] = "bottom-right",
                 content: Union[float, Tensor] = 1.0) -> None:
        sizes = (size, size) if isinstance(size, int) else tuple(size)
        if len(sizes) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes):
            raise ValueError(f"size must be a positive int or a (height, width) pair of them, got {size!r}.")
        self.size: Tuple[int, int] = sizes  # type: ignore[assignment]
        if isinstance(position, str):
            if position not in _CORNERS:
                raise ValueError(f"position must be one of {_CORNERS} or a (row, column) pair, got {position!r}.")
        elif not (isinstance(position, (tuple, list)) and len(position) == 2
                  and all(isinstance(p, int) and p >= 0 for p in position)):
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
        out[row:row + self.size[0], col:col + self.size[1]] = True
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
        batch, single = _as_batch(images)
        out = batch.clone()
        row, col = self.corner(*batch.shape[-2:])
        ph, pw = self.size
        if isinstance(self.content, Tensor):
            content = self.content.to(out.device, out.dtype)
            if content.shape[0] not in (1, out.shape[1]):
                raise ValueError(f"the patch has {content.shape[0]} channels but the images have {out.shape[1]}.")
            out[:, :, row:row + ph, col:col + pw] = content
        else:
            out[:, :, row:row + ph, col:col + pw] = float(self.content)
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

    def mask(self, height: int, width: int) -> Tensor:
        """Every pixel: a blend trigger changes the whole image."""
        return torch.ones(height, width, dtype=torch.bool)

    def apply(self, images: Tensor) -> Tensor:
        """Blend the trigger into copies of ``images``.

        Args:
            images: C x H x W or N x C x H x W images in [0, 1].

        Returns:
            A new tensor of the same shape, dtype and device.
        """
        batch, single = _as_batch(images)
        pattern = self.trigger_image(*batch.shape[1:]).to(batch.device, batch.dtype)
        out = (1.0 - self.alpha) * batch + self.alpha * pattern
        return out[0] if single else out

    def __repr__(self) -> str:
        pattern = "noise" if isinstance(self.pattern, str) else "tensor"
        return f"BlendTrigger(pattern={pattern!r}, alpha={self.alpha}, seed={self.seed})"


def _check_trigger(trigger: Any) -> None:
    if not callable(trigger):
        raise TypeError(f"trigger must be a Trigger (or a callable on images), got {type(trigger).__name__}.")


def _check_index(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int class index, got {type(value).__name__}.")
    return value


class PoisonedDataset(Dataset):
    """An all-to-one poisoned view of an ``(image, label)`` data set.

    ``round(rate * len(data))`` items, drawn at random (``seed``) from the items whose
    label is not ``target``, are returned with the trigger applied and the label
    ``target``; every other item is returned unchanged. Nothing is copied or modified:
    items are triggered when read.

    Args:
        data: a torch ``Dataset`` whose items are ``(image, label)`` (image C x H x W in
            [0, 1]), or an ``(images, labels)`` pair of tensors.
        trigger: the :class:`Trigger` (or any callable on images).
        target: the class every poisoned item is relabelled as.
        rate: share of the whole data set to poison, in [0, 1].
        seed: seed of the draw.

    Attributes:
        poisoned_indices: sorted 1-d long tensor of the poisoned items' indices.

    Raises:
        ValueError: a rate outside [0, 1], or more items to poison than there are
            non-target items.
        TypeError: data that is neither a Dataset nor a pair of tensors, or a non-int
            target.

    Example:
        >>> poisoned = PoisonedDataset((images, labels), PatchTrigger(), target=0, rate=0.1)
        >>> train_images, train_labels = poisoned.tensors()
        >>> poisoned.poisoned_indices[:5]
    """

    def __init__(self, data: Union[Dataset, Tuple[Tensor, Tensor]], trigger: Callable[[Tensor], Tensor],
                 target: int, rate: float = 0.1, seed: int = 0) -> None:
        _check_trigger(trigger)
        self.target = _check_index(target, "target")
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be a float in [0, 1], got {rate!r}.")
        if isinstance(data, (tuple, list)):
            if len(data) != 2 or not all(isinstance(t, Tensor) for t in data):
                raise TypeError("tensor data must be an (images, labels) pair of tensors.")
            images, labels = data
            labels = labels.reshape(-1)
            if images.shape[0] != labels.numel():
                raise ValueError(f"got {labels.numel()} labels for {images.shape[0]} images.")
            self._images: Optional[Tensor] = images
            self._dataset: Optional[Dataset] = None
            all_labels = labels.detach().cpu().long()
        elif isinstance(data, Dataset):
            self._images, self._dataset = None, data
            # Reading every label once is the only portable way to know the classes.
            all_labels = torch.tensor([int(data[i][1]) for i in range(len(data))],  # type: ignore[arg-type]
                                      dtype=torch.long)
        else:
            raise TypeError(f"data must be a torch Dataset or an (images, labels) pair, got {type(data).__name__}.")
        self._labels = all_labels
        self.trigger = trigger
        self.rate = float(rate)
        self.seed = int(seed)
        count = int(round(self.rate * all_labels.numel()))
        candidates = torch.nonzero(all_labels != self.target).flatten()
        if count > candidates.numel():
            raise ValueError(
                f"cannot poison {count} items: only {candidates.numel()} items are not of the target class "
                f"{self.target}."
            )
        generator = torch.Generator().manual_seed(self.seed)
        chosen = candidates[torch.randperm(candidates.numel(), generator=generator)[:count]]
        self.poisoned_indices: Tensor = chosen.sort().values
        self._is_poisoned = torch.zeros(all_labels.numel(), dtype=torch.bool)
        self._is_poisoned[self.poisoned_indices] = True

    def __len__(self) -> int:
        return int(self._labels.numel())

    def is_poisoned(self, index: int) -> bool:
        """Whether item ``index`` is returned triggered and relabelled."""
        return bool(self._is_poisoned[index])

    @property
    def poisoned_mask(self) -> Tensor:
        """1-d bool tensor, ``True`` at the poisoned items."""
        return self._is_poisoned.clone()

    def __getitem__(self, index: int) -> Tuple[Tensor, Any]:
        if self._images is not None:
            image, label = self._images[index], self._labels[index]
        else:
            image, label = self._dataset[index]  # type: ignore[index]
        if self._is_poisoned[index]:
            label = torch.tensor(self.target) if isinstance(label, Tensor) else self.target
            return self.trigger(image), label
        return image, label

    def tensors(self) -> Tuple[Tensor, Tensor]:
        """Materialise the poisoned view as ``(images, labels)`` tensors (new tensors).

        Returns:
            N x C x H x W images and N long labels.
        """
        if self._images is not None:
            images = self._images.clone()
            if self.poisoned_indices.numel():
                rows = self.poisoned_indices.to(images.device)
                images[rows] = self.trigger(self._images[rows])
            labels = self._labels.clone()
            labels[self.poisoned_indices] = self.target
            return images, labels.to(self._images.device)
        items = [self[i] for i in range(len(self))]
        return torch.stack([x for x, _ in items]), torch.tensor([int(y) for _, y in items], dtype=torch.long)


def _predict(model: Callable, images: Tensor, batch_size: int, transform: Optional[Callable] = None) -> Tensor:
    out = []
    with evaluation_mode(model, "backdoor metrics"), torch.inference_mode():
        for start in range(0, images.shape[0], batch_size):
            batch = images[start:start + batch_size]
            if transform is not None:
                batch = transform(batch)
            out.append(model(batch).argmax(1).cpu())
    return torch.cat(out)


def _checked(images: Tensor, labels: Tensor) -> Tensor:
    check_images(images, "images")
    if not isinstance(labels, Tensor):
        labels = torch.as_tensor(labels)
    labels = labels.reshape(-1).cpu().long()
    if labels.numel() != images.shape[0]:
        raise ValueError(f"got {labels.numel()} labels for {images.shape[0]} images.")
    return labels


def _non_target(images: Tensor, labels: Tensor, target: int) -> Tuple[Tensor, Tensor]:
    keep = labels != target
    if not bool(keep.any()):
        raise ValueError(f"no test images outside the target class {target}.")
    return images[keep.to(images.device)], labels[keep]


def clean_accuracy(model: Callable, images: Tensor, labels: Tensor, batch_size: int = 512) -> float:
    """Top-1 accuracy on clean test images (all classes); the model's mode is left as found.

    Args:
        model: the classifier.
        images: test images N x C x H x W in [0, 1].
        labels: their labels.
        batch_size: images per model call.

    Returns:
        A float in [0, 1].
    """
    labels = _checked(images, labels)
    return float((_predict(model, images, batch_size) == labels).float().mean())


def attack_success_rate(model: Callable, images: Tensor, labels: Tensor, trigger: Callable[[Tensor], Tensor],
                        target: int, batch_size: int = 512) -> float:
    """Share of non-target test images classified as ``target`` once triggered (ASR).

    Args:
        model: the classifier.
        images: clean test images in [0, 1].
        labels: their labels; images of the target class are left out (METHOD.md §2).
        trigger: the trigger to apply.
        target: the backdoor's target class.
        batch_size: images per model call.

    Returns:
        A float in [0, 1].

    Raises:
        ValueError: no test image outside the target class.
    """
    _check_trigger(trigger)
    target = _check_index(target, "target")
    images, labels = _non_target(images, _checked(images, labels), target)
    return float((_predict(model, images, batch_size, trigger) == target).float().mean())


def trigger_robust_accuracy(model: Callable, images: Tensor, labels: Tensor, trigger: Callable[[Tensor], Tensor],
                            target: int, batch_size: int = 512) -> float:
    """Share of non-target test images still classified correctly once triggered (RA).

    Args:
        model: the classifier.
        images: clean test images in [0, 1].
        labels: their labels; images of the target class are left out.
        trigger: the trigger to apply.
        target: the backdoor's target class.
        batch_size: images per model call.

    Returns:
        A float in [0, 1].
    """
    _check_trigger(trigger)
    target = _check_index(target, "target")
    images, labels = _non_target(images, _checked(images, labels), target)
    return float((_predict(model, images, batch_size, trigger) == labels).float().mean())


@dataclass
class BackdoorMetrics:
    """The three numbers BackdoorBench reports for an attacked model.

    Attributes:
        clean_accuracy: top-1 accuracy on clean test images (CA).
        attack_success_rate: non-target triggered images classified as the target (ASR).
        robust_accuracy: non-target triggered images still classified correctly (RA).
    """

    clean_accuracy: float
    attack_success_rate: float
    robust_accuracy: float

    def as_dict(self) -> Dict[str, float]:
        """The metrics as a plain dict (for JSON)."""
        return {"clean_accuracy": self.clean_accuracy, "attack_success_rate": self.attack_success_rate,
                "robust_accuracy": self.robust_accuracy}


def backdoor_metrics(model: Callable, images: Tensor, labels: Tensor, trigger: Callable[[Tensor], Tensor],
                     target: int, batch_size: int = 512) -> BackdoorMetrics:
    """Clean accuracy, attack success rate and robust accuracy in one pass.

    Args:
        model: the classifier (its mode is left as found).
        images: clean test images N x C x H x W in [0, 1].
        labels: their labels.
        trigger: the trigger.
        target: the backdoor's target class.
        batch_size: images per model call.

    Returns:
        A :class:`BackdoorMetrics`.

    Raises:
        ValueError: bad shapes, or no test image outside the target class.
        TypeError: a trigger that is not callable, or a non-int target.

    Example:
        >>> m = backdoor_metrics(model, test.images, test.labels, PatchTrigger(), target=0)
        >>> print(f"CA {m.clean_accuracy:.3f} ASR {m.attack_success_rate:.3f}")
    """
    _check_trigger(trigger)
    target = _check_index(target, "target")
    labels = _checked(images, labels)
    clean = _predict(model, images, batch_size)
    others_images, others_labels = _non_target(images, labels, target)
    triggered = _predict(model, others_images, batch_size, trigger)
    return BackdoorMetrics(
        clean_accuracy=float((clean == labels).float().mean()),
        attack_success_rate=float((triggered == target).float().mean()),
        robust_accuracy=float((triggered == others_labels).float().mean()),
    )

"""Clean accuracy, attack success rate and robust accuracy of a backdoored model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import torch
from torch import Tensor

from .._utils import check_images, evaluation_mode
from ._poisoning import _check_index, _check_trigger


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

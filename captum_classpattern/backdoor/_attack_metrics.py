"""Clean accuracy, attack success rate and robust accuracy of a backdoored model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Tuple, Union

import torch
from torch import Tensor

from .._utils import check_images, check_labels, num_classes_of, predict
from ._checks import check_trigger
from ._per_batch import ALL_TO_ALL, backdoor_labels, check_target

_WHO = "backdoor metrics"


def _checked(images: Tensor, labels: Tensor) -> Tensor:
    check_images(images, "images")
    return check_labels(images, labels, "test")


def _share(predicted: Tensor, expected: Union[Tensor, int]) -> float:
    # float32 mean, as these metrics have always been computed
    return float((predicted == expected).float().mean())


def _triggered(
    model: Callable, images: Tensor, labels: Tensor, trigger: Callable[[Tensor], Tensor], target: Any, batch_size: int
) -> Tuple[Tensor, Tensor, Tensor]:
    """Predictions for the triggered images that count, their true labels, and the labels the attack wants.

    All-to-one counts the images outside the target class; all-to-all counts every image
    and wants the next class, ``(label + 1) % classes`` (the model's output count).
    """
    check_trigger(trigger)
    num_classes = num_classes_of(model, images[:1], who=_WHO) if target == ALL_TO_ALL else None
    target, num_classes = check_target(target, num_classes)
    keep = torch.ones_like(labels, dtype=torch.bool) if target == ALL_TO_ALL else labels != target
    if not bool(keep.any()):
        raise ValueError(f"no test images outside the target class {target}.")
    predicted = predict(
        model, images[keep.to(images.device)], batch_size=batch_size, transform=trigger, who=_WHO, labels=labels
    )
    kept = labels[keep]
    return predicted, kept, backdoor_labels(kept, target, num_classes)


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
    return _share(predict(model, images, batch_size=batch_size, who=_WHO, labels=labels), labels)


def attack_success_rate(
    model: Callable,
    images: Tensor,
    labels: Tensor,
    trigger: Callable[[Tensor], Tensor],
    target: Union[int, str],
    batch_size: int = 512,
) -> float:
    """Share of non-target test images classified as ``target`` once triggered (ASR).

    Args:
        model: the classifier.
        images: clean test images in [0, 1].
        labels: their labels; images of the target class are left out.
        trigger: the trigger to apply.
        target: the backdoor's target class, or ``"all-to-all"`` (every image counts, and
            success is the next class, ``(label + 1) % classes``).
        batch_size: images per model call.

    Returns:
        A float in [0, 1].

    Raises:
        ValueError: no test image outside the target class.
    """
    predicted, _, wanted = _triggered(model, images, _checked(images, labels), trigger, target, batch_size)
    return _share(predicted, wanted)


def trigger_robust_accuracy(
    model: Callable,
    images: Tensor,
    labels: Tensor,
    trigger: Callable[[Tensor], Tensor],
    target: Union[int, str],
    batch_size: int = 512,
) -> float:
    """Share of non-target test images still classified correctly once triggered (RA).

    Takes the same arguments as :func:`attack_success_rate` and counts the same images;
    ``ASR + RA <= 1``, the rest being triggered images sent to a third class.

    Returns:
        A float in [0, 1].

    Raises:
        ValueError: no test image outside the target class.
    """
    predicted, others_labels, _ = _triggered(model, images, _checked(images, labels), trigger, target, batch_size)
    return _share(predicted, others_labels)


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

    def to_dict(self) -> Dict[str, float]:
        """The metrics as a plain, JSON-ready dict."""
        return {
            "clean_accuracy": self.clean_accuracy,
            "attack_success_rate": self.attack_success_rate,
            "robust_accuracy": self.robust_accuracy,
        }

    @classmethod
    def from_dict(cls, data: Dict[str, float]) -> BackdoorMetrics:
        """Rebuild the metrics from :meth:`to_dict`'s output.

        Args:
            data: the dict.

        Returns:
            The :class:`BackdoorMetrics`.
        """
        return cls(
            clean_accuracy=float(data["clean_accuracy"]),
            attack_success_rate=float(data["attack_success_rate"]),
            robust_accuracy=float(data["robust_accuracy"]),
        )


def backdoor_metrics(
    model: Callable,
    images: Tensor,
    labels: Tensor,
    trigger: Callable[[Tensor], Tensor],
    target: Union[int, str],
    batch_size: int = 512,
) -> BackdoorMetrics:
    """Clean accuracy, attack success rate and robust accuracy in one pass.

    Args:
        model: the classifier (its mode is left as found).
        images: clean test images N x C x H x W in [0, 1].
        labels: their labels.
        trigger: the trigger.
        target: the backdoor's target class, or ``"all-to-all"`` (every image counts, and
            success is the next class, ``(label + 1) % classes``).
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
    labels = _checked(images, labels)
    triggered, others_labels, wanted = _triggered(model, images, labels, trigger, target, batch_size)
    return BackdoorMetrics(
        clean_accuracy=_share(predict(model, images, batch_size=batch_size, who=_WHO), labels),
        attack_success_rate=_share(triggered, wanted),
        robust_accuracy=_share(triggered, others_labels),
    )

"""Balanced accuracy of each class, one-vs-rest, and the labelled images it is measured on."""

from __future__ import annotations

from typing import Any, Optional, Union

import torch
from torch import Tensor, nn

from .._utils import check_labels, check_positive_int, checked_call, evaluation_mode, output_width, predict
from ._hooks import run_device


def check_labelled(images: Tensor, labels: Any, num_classes: Optional[int] = None) -> Tensor:
    """Check images and their labels; return the labels as a 1-d CPU long tensor.

    Args:
        images: N x ... images.
        labels: one integer class per image.
        num_classes: when given, labels must lie in ``0..num_classes - 1``.

    Raises:
        ValueError: no images, labels that do not fit the images or ``num_classes``, or a
            ``num_classes`` below 2.
        TypeError: labels that are not integer classes.
    """
    if not isinstance(images, Tensor) or images.dim() < 2:
        raise ValueError("images must be a tensor N x C x H x W.")
    labels = check_labels(images, labels, "images'")
    if labels.numel() == 0:
        raise ValueError("images is empty: pass at least one labelled image.")
    if num_classes is not None:
        if check_positive_int(num_classes, "num_classes") < 2:
            raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}.")
        if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
            raise ValueError(f"labels must lie in 0..{num_classes - 1}.")
    return labels


def check_model_width(model: nn.Module, images: Tensor, num_classes: int, device: torch.device, who: str) -> None:
    """Run the model on one image and refuse a ``num_classes`` other than its output width.

    The per-class scores count predictions against ``num_classes`` classes: with fewer, the
    predictions of the model's extra classes were clamped onto the last one; with more, the
    extra classes scored as never predicted. Either way the numbers were wrong without a word.

    Raises:
        ValueError: the model fails on the image, its output carries no class signal, or its
            width is not ``num_classes``.
    """
    with evaluation_mode(model, who, warn=False), torch.inference_mode():
        output = checked_call(model, (images[:1].to(device),), None, who)
    width = output_width(output, who)
    if width != num_classes:
        raise ValueError(
            f"num_classes is {num_classes} but the model returns {width} classes: pass num_classes={width} "
            f"(and labels in 0..{width - 1})."
        )


def balanced_from_predictions(predictions: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """(recall + true-negative rate) / 2 per class, one-vs-rest; NaN where undefined."""
    confusion = (
        torch.bincount(labels * num_classes + predictions.clamp(0, num_classes - 1), minlength=num_classes**2)
        .view(num_classes, num_classes)
        .double()
    )
    hits = confusion.diagonal()
    positives = confusion.sum(1)
    predicted = confusion.sum(0)
    negatives = confusion.sum() - positives
    recall = hits / positives
    true_negative_rate = (negatives - (predicted - hits)) / negatives
    return (recall + true_negative_rate) / 2


def balanced_accuracy_per_class(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    num_classes: int,
    *,
    batch_size: int = 256,
    device: Optional[Union[str, torch.device]] = None,
) -> Tensor:
    """Balanced accuracy of each class, one-vs-rest from top-1 predictions.

    For class ``c``: ``(recall + true-negative rate) / 2``, where recall is the share of
    class-``c`` images predicted ``c`` and the true-negative rate the share of the other
    images not predicted ``c``. 0.5 is chance; 1 is perfect.

    Args:
        model: the classifier (left in the mode it was in).
        images: N x C x H x W images.
        labels: N class labels.
        num_classes: number of classes.
        batch_size: images per model call.
        device: where to run; default the model's device.

    Returns:
        A float64 tensor of length ``num_classes``; NaN for a class with no images (or no
        images of other classes).

    Raises:
        ValueError: labels that do not fit the images or ``num_classes``, a bad ``batch_size``.
        TypeError: labels that are not integer classes.

    Example:
        >>> balanced_accuracy_per_class(model, images, labels, 5).mean()
    """
    labels = check_labelled(images, labels, num_classes)
    check_positive_int(batch_size, "batch_size")
    run_on = run_device(model, device)
    check_model_width(model, images, num_classes, run_on, "balanced_accuracy_per_class")
    predictions = predict(model, images, batch_size=batch_size, device=run_on, who="balanced_accuracy_per_class")
    return balanced_from_predictions(predictions, labels, num_classes)

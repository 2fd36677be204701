"""Argument checks shared by the backdoor modules (models, triggers, classes, image sets, settings fields)."""

from __future__ import annotations

import math
from typing import Any, Callable, List, Optional, Sequence, Tuple

from torch import Tensor

from .._utils import check_device, check_images, check_label_range, check_labels, expand_targets, num_classes_of
from ..attr import pixel_budget


def check_model(model: Any) -> None:
    """Refuse a model that cannot be called.

    Raises:
        TypeError: ``model`` is not callable.
    """
    if not callable(model):
        raise TypeError(f"model must be a callable returning logits (e.g. an nn.Module), got {type(model).__name__}.")


def check_settings(settings: Any, kind: type, name: str) -> None:
    """Refuse settings that are not an instance of the settings class ``kind``.

    Raises:
        TypeError: ``settings`` is of another type (e.g. a dict).
    """
    if not isinstance(settings, kind):
        raise TypeError(
            f"{name} must be a {kind.__name__}, got {type(settings).__name__}: build one with the "
            f"fields to change, {kind.__name__}(field=value, ...), or change one with .replace(...)."
        )


def check_trigger(trigger: Any) -> None:
    """Refuse a trigger that cannot be applied to images.

    Raises:
        TypeError: ``trigger`` is not callable.
    """
    if not callable(trigger):
        raise TypeError(f"trigger must be a Trigger (or a callable on images), got {type(trigger).__name__}.")


def check_number(
    value: Any, name: str, low: float, high: float, *, low_open: bool = False, high_open: bool = False
) -> float:
    """Return ``value`` as a float if it is a number between ``low`` and ``high``.

    Args:
        value: the value to check.
        name: the settings field, for the error message.
        low: the lower end.
        high: the upper end (``math.inf`` for none).
        low_open: exclude ``low`` itself.
        high_open: exclude ``high`` itself.

    Raises:
        TypeError: ``value`` is not an int or float (or is a bool).
        ValueError: ``value`` lies outside the range.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}.")
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not (above and below) or math.isnan(value):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must lie in {interval}, got {value!r}.")
    return float(value)


def check_budget(value: Any, name: str) -> None:
    """Check a pattern size before the image size is known: an int >= 1 or a fraction in (0, 1].

    Raises:
        TypeError: ``value`` is neither an int nor a float.
        ValueError: a non-positive count or a fraction outside (0, 1].
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be an int (pixels) or a float fraction of the image, got {type(value).__name__}.")
    if isinstance(value, float) and not 0.0 < value <= 1.0:
        raise ValueError(
            f"{name} as a fraction of the image must lie in (0, 1], got {value!r}; pass an int for a pixel count."
        )
    if isinstance(value, int) and value < 1:
        raise ValueError(f"{name} must be at least 1 pixel, got {value!r}.")


def budget_pixels(value: Any, name: str, height: int, width: int) -> int:
    """A pattern size (pixels, or a fraction of the image) as a pixel count for ``height x width`` images.

    Raises:
        ValueError: the size does not fit the images; the message names the field.
    """
    try:
        return pixel_budget(value, height, width)
    except ValueError as error:
        raise ValueError(f"{name}: {error}") from error


def check_trigger_mask(mask: Optional[Tensor], height: int, width: int) -> None:
    """Check an optional true trigger mask: an H x W tensor with at least one pixel set.

    Raises:
        ValueError: a mask of another shape, or an empty one.
    """
    if mask is None:
        return
    if not isinstance(mask, Tensor) or tuple(mask.shape) != (height, width):
        raise ValueError(f"trigger_mask must be an H x W tensor of shape {(height, width)}.")
    if not bool(mask.bool().any()):
        raise ValueError("trigger_mask is empty.")


def scanned_classes(
    model: Callable,
    images: Tensor,
    classes: Optional[Sequence[int]],
    who: str,
    labelled: Sequence[Tuple[Tensor, str]] = (),
) -> Tensor:
    """The classes a scan compares: every output class by default, at least three, none repeated.

    Call it with the model in evaluation mode (it runs the model on one image). ``labels``
    ``labelled`` holds ``(labels, name)`` pairs (labels already checked by ``check_labels``),
    each checked to hold classes of the model only.

    Returns:
        A 1-d ``torch.long`` tensor of classes on the CPU.

    Raises:
        ValueError: fewer than three classes, a repeated class, a class or a label out of
            range, or a model whose output carries no class signal.
    """
    num_classes = num_classes_of(model, images[:1])
    for labels, name in labelled:
        check_label_range(labels, num_classes, name)
    wanted: List[int] = list(range(num_classes)) if classes is None else list(classes)
    targets = expand_targets(wanted, len(wanted), num_classes, name="classes")
    if targets.numel() < 3:
        raise ValueError(f"{who} needs at least three classes: the anomaly index compares each class with the rest.")
    if targets.unique().numel() != targets.numel():
        raise ValueError(f"classes must not repeat, got {targets.tolist()}.")
    return targets


def check_second_set(
    model: Callable,
    images: Tensor,
    labels: Tensor,
    other: Optional[Tensor],
    other_labels: Optional[Tensor],
    name: str,
    check_shape: bool = False,
) -> Tuple[Tensor, Tensor]:
    """Validate an optional second image set, defaulting to ``(images, labels)``; check devices.

    Args:
        model: the classifier (only its device is read).
        images: the first image set (already checked).
        labels: its labels (already checked).
        other: the second image set, or ``None``.
        other_labels: its labels.
        name: the second set's argument name, ending in ``images`` (e.g. ``"eval_images"``).
        check_shape: require the same C x H x W as ``images``.

    Returns:
        ``(other, other_labels)``, the labels as a CPU long tensor.

    Raises:
        ValueError: labels without images, bad shapes, or tensors on another device than the model.
        TypeError: images or labels of the wrong type.
    """
    if other is None:
        if other_labels is not None:
            raise ValueError(f"{name[: -len('images')]}labels given without {name}.")
        other, other_labels = images, labels
    else:
        check_images(other, name)
        other_labels = check_labels(other, other_labels, f"{name}'")
        if check_shape and tuple(other.shape[1:]) != tuple(images.shape[1:]):
            raise ValueError(f"{name} are {tuple(other.shape[1:])} per image but images are {tuple(images.shape[1:])}.")
    check_device(model, images, "images")
    check_device(model, other, name)
    return other, other_labels


def check_reference_scan(
    item: Any,
    name: str,
    classes: List[int],
    size: Sequence[int],
    settings: Any,
    probes: Tuple[bool, bool],
    max_eval: Optional[int] = None,
) -> None:
    """Refuse a reference scan (a ``ScanResult``) that cannot be compared with a scan of ``classes`` at ``size``.

    Args:
        item: the reference's scan.
        name: how the messages call it (``"reference 0"``).
        classes: the classes of the scan it is compared with.
        size: the ``(height, width)`` of that scan's images.
        settings: that scan's ``ScanSettings``.
        probes: whether that scan ran the blend probe and the warp probe.
        max_eval: the held-out images per class that scan measures on (``None``: not checked).

    Raises:
        ValueError: other classes or image size, other settings, powers measured on
            another number of images, or no probe where one is needed.
    """
    if item.classes != classes or tuple(item.maps.shape[-2:]) != tuple(size):
        raise ValueError(
            f"{name} scanned the classes {item.classes} on {tuple(item.maps.shape[-2:])} images; this scan "
            f"needs the classes {classes} on {tuple(size)} images: scan the reference with the same images and "
            "classes."
        )
    if item.settings != settings:
        raise ValueError(f"{name} was scanned with other ScanSettings: scan it with this scan's settings.")
    if max_eval is not None and item.scoring.max_eval != max_eval:
        # Powers measured on more images vary less: the references' spread would not be the suspect's.
        raise ValueError(
            f"{name} measured its powers on up to {item.scoring.max_eval} held-out images per class, this scan on "
            f"{max_eval}: measure it again alike, remeasure(reference_result, reference_model, held_out, "
            f"ScoringSettings(max_eval={max_eval}))."
        )
    for needed, found, kind in zip(probes, (item.blend, item.warp), ("blend", "warp")):
        if needed and found is None:
            raise ValueError(f"{name} has no {kind} probe: scan it again with this scan's settings.")

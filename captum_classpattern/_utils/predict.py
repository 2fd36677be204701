"""One batched prediction loop for every accuracy, power and attack-success number."""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Optional

import torch
from torch import Tensor

from .arguments import check_label_range
from .checks import check_class_index
from .model_state import call_model, checked_call, evaluation_mode, output_width
from .threads import thread_scope, tuned_threads


def predict(
    model: Callable,
    images: Tensor,
    *,
    batch_size: int = 512,
    transform: Optional[Callable[[Tensor], Tensor]] = None,
    device: Optional[torch.device] = None,
    additional_forward_args: Any = None,
    who: str = "predict",
    check_output: Optional[Callable[[Tensor], Any]] = None,
    labels: Optional[Tensor] = None,
) -> Tensor:
    """Top-1 classes of ``images``, computed in eval mode without gradients.

    Args:
        model: the classifier; its training flags are restored afterwards.
        images: N x C x H x W inputs.
        batch_size: images per model call.
        transform: applied to each batch before the model sees it (e.g. stamping a pattern).
        device: where each batch is moved before the call (``None``: left where it is).
        additional_forward_args: passed after the images, as Captum does.
        who: names the caller in the training-mode warning and in error messages.
        check_output: called with the model's output for the first batch, before anything
            else is done with it (e.g. to check a class index against its width).
        labels: integer labels that go with the images (or the data they were drawn
            from), checked to be classes of the model on the first batch: a label the
            model cannot have is never predicted, so every share computed with it is wrong.

    Returns:
        A 1-d ``torch.long`` tensor of N predicted classes on the CPU.

    Raises:
        ValueError: the model fails on the first batch (a RuntimeError, e.g. of dtype
            or channel count, see :func:`checked_call`), its output carries no class signal
            (see :func:`output_width`), or a label is not a class of the model.
    """
    predictions = []
    with evaluation_mode(model, who), torch.inference_mode(), thread_scope():
        for start in range(0, images.shape[0], batch_size):
            batch = images[start : start + batch_size]
            if device is not None:
                batch = batch.to(device)
            if transform is not None:
                batch = transform(batch)
            first = start == 0  # the first call says clearly when the images do not fit the model
            with tuned_threads("predict", batch, model):
                if first:
                    output = checked_call(model, (batch,), additional_forward_args, who)
                else:
                    output = call_model(model, (batch,), additional_forward_args)
            if first:
                width = output_width(output, who)  # NaN, or a single column, would make every prediction class 0
                if labels is not None:
                    check_label_range(labels, width, "labels")
                if check_output is not None:
                    check_output(output)
            predictions.append(output.argmax(1).cpu())
    if not predictions:
        return torch.empty(0, dtype=torch.long)
    return torch.cat(predictions)


def share_predicted(
    model: Callable, images: Tensor, target: Any, *, labels: Optional[Tensor] = None, **kwargs: Any
) -> float:
    """Share of ``images`` (after ``transform``, if given) that ``model`` classifies as ``target``.

    Keyword arguments are those of :func:`predict`. The target is checked by
    :func:`check_class_index`, its range against the width of the model's output, and so
    are ``labels`` when given.

    Args:
        model: the classifier.
        images: the images to classify.
        target: the class counted.
        labels: the labels of the data ``images`` were drawn from (e.g. before the
            target's own images were left out), checked against the model's width.
        **kwargs: passed to :func:`predict`.

    Returns:
        The share, a float in [0, 1].

    Raises:
        ValueError: ``images`` is empty, ``target`` is negative or not a class of the model,
            or a label is not a class of the model.
        TypeError: ``target`` is not an int class index.
    """
    target = check_class_index(target, "target")
    if images.shape[0] == 0:
        raise ValueError("no images to measure on.")
    check = partial(_check_target_range, target, kwargs.get("who", "predict"))
    predicted = predict(model, images, check_output=check, labels=labels, **kwargs)
    return float((predicted == target).double().mean())


def _check_target_range(target: int, who: str, output: Any) -> None:
    check_class_index(target, "target", output_width(output, who))

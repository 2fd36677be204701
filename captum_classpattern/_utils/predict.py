"""One batched prediction loop for every accuracy, power and attack-success number."""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from torch import Tensor

from .model_state import call_model, evaluation_mode


def predict(
    model: Callable,
    images: Tensor,
    *,
    batch_size: int = 512,
    transform: Optional[Callable[[Tensor], Tensor]] = None,
    device: Optional[torch.device] = None,
    additional_forward_args: Any = None,
    who: str = "predict",
) -> Tensor:
    """Top-1 classes of ``images``, computed in eval mode without gradients.

    Args:
        model: the classifier; its training flags are restored afterwards.
        images: N x C x H x W inputs.
        batch_size: images per model call.
        transform: applied to each batch before the model sees it (e.g. stamping a pattern).
        device: where each batch is moved before the call (``None``: left where it is).
        additional_forward_args: passed after the images, as Captum does.
        who: names the caller in the training-mode warning.

    Returns:
        A 1-d ``torch.long`` tensor of N predicted classes on the CPU.
    """
    predictions = []
    with evaluation_mode(model, who), torch.inference_mode():
        for start in range(0, images.shape[0], batch_size):
            batch = images[start : start + batch_size]
            if device is not None:
                batch = batch.to(device)
            if transform is not None:
                batch = transform(batch)
            predictions.append(call_model(model, (batch,), additional_forward_args).argmax(1).cpu())
    if not predictions:
        return torch.empty(0, dtype=torch.long)
    return torch.cat(predictions)


def share_predicted(model: Callable, images: Tensor, target: int, **kwargs: Any) -> float:
    """Share of ``images`` (after ``transform``, if given) that ``model`` classifies as ``target``.

    Keyword arguments are those of :func:`predict`.

    Raises:
        ValueError: ``images`` is empty.
    """
    if images.shape[0] == 0:
        raise ValueError("no images to measure on.")
    return float((predict(model, images, **kwargs) == int(target)).double().mean())

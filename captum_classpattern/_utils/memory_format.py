"""Handing images to a model in the memory format its convolutions run fastest in on a CPU."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn


class ChannelsLastInputs(nn.Module):
    """Calls a model with its 4-d CPU float inputs in ``channels_last`` memory format.

    On a CPU, convolutions given channels-last images run faster even when the weights
    stay as they are, so the caller's model is wrapped, not converted. The logits are the
    same up to float rounding; the layout changes no value. A model that cannot take the
    format (one that calls ``view`` on an activation whose layout it assumed) raises a
    ``RuntimeError`` on its first such call: the call is repeated with contiguous inputs
    and the wrapper keeps to them from then on, so an error that is not about the layout
    still reaches the caller, raised by the plain call. Inputs that are not 4-d float
    tensors on a CPU are handed over unchanged.

    Args:
        model: the caller's model (or any callable taking the images first).

    Example:
        >>> fast = ChannelsLastInputs(model)
        >>> logits = fast(images)  # equal to model(images) up to float rounding
    """

    def __init__(self, model: Callable) -> None:
        super().__init__()
        self.training = False  # set directly: .eval() would also reach the caller's model
        self.model = model
        self.enabled = True

    def forward(self, images: Any, *args: Any, **kwargs: Any) -> Any:
        if not (self.enabled and _worth_reformatting(images)):
            return self.model(images, *args, **kwargs)
        try:
            return self.model(images.contiguous(memory_format=torch.channels_last), *args, **kwargs)
        except RuntimeError:
            output = self.model(images, *args, **kwargs)  # raises the model's own error if it is not the layout
            self.enabled = False
            return output


def _worth_reformatting(images: Any) -> bool:
    return (
        isinstance(images, Tensor)
        and images.dim() == 4
        and images.device.type == "cpu"
        and images.is_floating_point()
        and images.shape[1] > 1  # one channel: both layouts are the same
    )


def channels_last_inputs(model: Callable) -> Callable:
    """``model`` wrapped in :class:`ChannelsLastInputs`, unless it already is one."""
    return model if isinstance(model, ChannelsLastInputs) else ChannelsLastInputs(model)

"""Calling the caller's model without changing it: eval mode restored per submodule, Captum-style calls."""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, Callable, Iterator, Tuple

import torch
from torch import Tensor, nn

_STOCHASTIC = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd, nn.Dropout)


@contextlib.contextmanager
def evaluation_mode(forward_func: Callable, who: str, *, warn: bool = True) -> Iterator[None]:
    """Run in eval mode, restoring every submodule's own training flag afterwards.

    A model in training mode would update BatchNorm running statistics (a change to the
    caller's buffers) and sample dropout, so the work runs in eval mode and a warning says
    so. Each submodule's flag is restored individually, also on exceptions, because
    ``model.train(flag)`` would overwrite submodules the caller had set differently.

    Args:
        forward_func: the caller's model (anything else runs unchanged).
        who: names the caller in the warning.
        warn: warn about a model in training mode; ``False`` where training mode is
            expected (an attack run inside a training loop).
    """
    if not isinstance(forward_func, nn.Module):
        yield
        return
    flags = [(module, module.training) for module in forward_func.modules()]
    if warn and any(training and isinstance(module, _STOCHASTIC) for module, training in flags):
        warnings.warn(
            f"{who}: the model is in training mode, so BatchNorm statistics would be updated "
            "and dropout sampled; it runs in eval mode and your training mode is restored "
            "afterwards. Call model.eval() to silence this warning.",
            UserWarning,
            stacklevel=4,
        )
    try:
        forward_func.eval()
        yield
    finally:
        for module, training in flags:
            module.training = training


def num_classes_of(forward_func: Callable, sample: Tensor, additional_forward_args: Any = None) -> int:
    """Run the model once on ``sample`` and return its number of output classes."""
    with torch.no_grad():
        output = call_model(forward_func, (sample,), additional_forward_args)
    if not isinstance(output, Tensor) or output.dim() != 2:
        shape = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
        raise ValueError(f"the model must return N x num_classes logits, got {shape}.")
    return int(output.shape[1])


def call_model(forward_func: Callable, inputs: Tuple[Tensor, ...], additional_forward_args: Any = None) -> Tensor:
    """Call ``forward_func(*inputs, *additional_forward_args)`` as Captum does."""
    if additional_forward_args is None:
        extra: Tuple[Any, ...] = ()
    elif isinstance(additional_forward_args, tuple):
        extra = additional_forward_args
    else:
        extra = (additional_forward_args,)
    return forward_func(*inputs, *extra)

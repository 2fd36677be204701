"""Calling the caller's model without changing it: eval mode restored per submodule, Captum-style calls."""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, Callable, Iterator, Tuple

import torch
from torch import Tensor, nn

_STOCHASTIC = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd, nn.Dropout)
# Rows of a float32 softmax sum to 1 within about 1e-6; logits hardly ever come this close.
_PROBABILITY_TOLERANCE = 1e-4


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


def check_logits(output: Any, who: str) -> int:
    """Check that a model's output is N x num_classes logits and return num_classes.

    Outputs whose rows are all non-negative and sum to one are probabilities (a softmax
    at the end of the model). A cross-entropy computed on them is wrong (it treats them
    as logits, so its gradients are much weaker), so they are refused; log-probabilities
    are fine, as the cross-entropy of log-softmax outputs equals that of the logits.

    Args:
        output: what the model returned for a batch.
        who: names the caller in error messages.

    Returns:
        The number of classes (the output's width).

    Raises:
        ValueError: the output is not a 2-d tensor, or it holds probabilities.
    """
    width = output_width(output, who)
    if width >= 2 and output.shape[0] and output.is_floating_point():
        rows = output.detach().double()
        if bool((rows >= 0).all()) and bool(((rows.sum(1) - 1).abs() <= _PROBABILITY_TOLERANCE).all()):
            raise ValueError(
                f"{who}: the model returns probabilities (every row is non-negative and sums to 1), but logits "
                "are needed for the cross-entropy: remove the final softmax (e.g. the model's last layer), or "
                "wrap the model so that it returns log-probabilities, lambda x: model(x).clamp_min(1e-12).log()."
            )
    return width


def output_width(output: Any, who: str) -> int:
    """The number of classes of an N x num_classes model output, checked to carry a class signal.

    A model whose output is NaN or infinite, or that has a single output unit, cannot say
    which class an image shows: every search on it returns maps of 0.5 (or a constant map)
    and every power is meaningless, without any error. Such outputs are refused here, on
    the first call every entry point makes.

    Raises:
        ValueError: the output is not a 2-d tensor, has fewer than two columns, or holds
            NaN or infinite values.
    """
    if not isinstance(output, Tensor) or output.dim() != 2:
        shape = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
        raise ValueError(f"{who}: the model must return N x num_classes outputs, got {shape}.")
    width = int(output.shape[1])
    if width < 2:
        raise ValueError(
            f"{who}: the model returns {width} output column(s) per image, but a class pattern needs a classifier "
            "with at least two classes (one logit per class); for a binary model with one logit, wrap it to return "
            "two: lambda x: torch.cat([-model(x), model(x)], 1) / 2."
        )
    if output.is_floating_point() and output.numel() and not bool(torch.isfinite(output.detach()).all()):
        raise ValueError(
            f"{who}: the model returns NaN or infinite outputs on the first images, so it carries no class signal: "
            "check its weights (torch.isfinite on each parameter) and that the inputs are what it was trained on."
        )
    return width


def checked_call(forward_func: Callable, inputs: Tuple[Tensor, ...], additional_forward_args: Any, who: str) -> Any:
    """:func:`call_model`, with the model's RuntimeError turned into a ValueError that says what was passed.

    A model given inputs of another dtype or channel count fails deep inside a layer;
    the ValueError names the inputs' shape and dtype and what to change, and is chained
    to the model's own error. Out-of-memory errors pass through unchanged.

    Raises:
        ValueError: the model raised a RuntimeError, or it is on the meta device.
    """
    if isinstance(forward_func, nn.Module) and any(
        t.device.type == "meta" for t in [*forward_func.parameters(), *forward_func.buffers()]
    ):
        raise ValueError(
            f"{who}: the model is on the meta device (shapes only, no weights): materialise it first, e.g. "
            "model.to_empty(device='cpu') followed by model.load_state_dict(...)."
        )
    try:
        return call_model(forward_func, inputs, additional_forward_args)
    except torch.cuda.OutOfMemoryError:
        raise
    except RuntimeError as error:
        raise ValueError(_failure_message(forward_func, inputs[0], who, error)) from error


def _failure_message(forward_func: Callable, sample: Tensor, who: str, error: RuntimeError) -> str:
    hints = []
    if isinstance(forward_func, nn.Module):
        parameter = next((p for p in forward_func.parameters() if p.is_floating_point()), None)
        if parameter is not None and parameter.dtype != sample.dtype:
            hints.append(
                f"the model's parameters are {parameter.dtype} but the inputs are {sample.dtype}: cast the inputs "
                f"(inputs.to({parameter.dtype})) or the model (e.g. model.float())"
            )
        first = next((m for m in forward_func.modules() if isinstance(getattr(m, "in_channels", None), int)), None)
        if first is not None and sample.dim() >= 2 and first.in_channels != sample.shape[1]:
            hints.append(
                f"the model's first layer takes {first.in_channels} channels but the inputs have {sample.shape[1]}: "
                f"give it {first.in_channels}-channel images (e.g. images.expand(-1, 3, -1, -1) for grey images "
                "on an RGB model, images.mean(1, keepdim=True) for RGB images on a grey one)"
            )
    if not hints:
        hints.append("give it inputs of the dtype, channel count and size it was built for")
    return (
        f"{who}: the model failed on inputs of shape {tuple(sample.shape)} and dtype {sample.dtype}; "
        f"{'; '.join(hints)}. The model said: {error}"
    )


def num_classes_of(
    forward_func: Callable, sample: Tensor, additional_forward_args: Any = None, who: str = "the model"
) -> int:
    """Run the model once on ``sample`` and return its number of output classes.

    The output is checked by :func:`check_logits` and the call made by :func:`checked_call`.

    Raises:
        ValueError: the model fails on ``sample``, or does not return logits.
    """
    with torch.no_grad():
        output = checked_call(forward_func, (sample,), additional_forward_args, who)
    return check_logits(output, who)


def call_model(forward_func: Callable, inputs: Tuple[Tensor, ...], additional_forward_args: Any = None) -> Tensor:
    """Call ``forward_func(*inputs, *additional_forward_args)`` as Captum does."""
    if additional_forward_args is None:
        extra: Tuple[Any, ...] = ()
    elif isinstance(additional_forward_args, tuple):
        extra = additional_forward_args
    else:
        extra = (additional_forward_args,)
    return forward_func(*inputs, *extra)

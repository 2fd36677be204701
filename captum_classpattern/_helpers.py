"""Small private helpers: tensor-or-tuple mirroring, targets, model state, atomic files.

Captum keeps equivalents of these behind ``_``-prefixed names that change between
releases, so the package keeps its own (DESIGN.md, "The Captum contract").
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
import warnings
from typing import Any, Callable, Iterator, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

TensorOrTuple = Union[Tensor, Tuple[Tensor, ...]]


def as_tuple(inputs: TensorOrTuple, name: str = "inputs") -> Tuple[Tuple[Tensor, ...], bool]:
    """Return ``(tensors, was_tuple)`` so callers can mirror the input form on output."""
    if isinstance(inputs, Tensor):
        return (inputs,), False
    if isinstance(inputs, (tuple, list)) and inputs and all(isinstance(t, Tensor) for t in inputs):
        return tuple(inputs), True
    raise TypeError(f"{name} must be a tensor or a non-empty tuple of tensors, got {type(inputs).__name__}.")


def mirror(tensors: Sequence[Tensor], was_tuple: bool) -> TensorOrTuple:
    """Undo :func:`as_tuple`: a single tensor comes back as a tensor."""
    return tuple(tensors) if was_tuple else tensors[0]


def expand_targets(target: Any, count: int, num_classes: Optional[int] = None) -> Tensor:
    """Turn Captum's ``TargetType`` into one class index per canvas.

    Args:
        target: an int (applies to every canvas), a list/tuple of ints or a 0-d/1-d
            integer tensor with one class per canvas.
        count: the number of canvases.
        num_classes: when known, targets are checked to lie in ``[0, num_classes)``.

    Returns:
        A 1-d ``torch.long`` tensor of length ``count`` on the CPU.

    Raises:
        TypeError: the target is not an int, a sequence of ints or an integer tensor.
        ValueError: the number of targets does not match, or a class is out of range.
    """
    if target is None:
        raise ValueError("target is required: pass the class (int) or one class per canvas (list).")
    if isinstance(target, Tensor):
        if target.is_floating_point() or target.dim() > 1:
            raise TypeError("a target tensor must hold integer class indices, 0-d or 1-d.")
        values = target.detach().cpu().long().reshape(-1)
    elif isinstance(target, bool):
        raise TypeError("target must be an int class index, not a bool.")
    elif isinstance(target, int):
        values = torch.tensor([target])
    elif isinstance(target, (list, tuple)):
        if not all(isinstance(t, int) and not isinstance(t, bool) for t in target):
            raise TypeError(
                "a target list must hold one int class per canvas; Captum's tuple targets "
                "(indices into multi-dimensional outputs) are not supported here."
            )
        values = torch.tensor(list(target), dtype=torch.long)
    else:
        raise TypeError(f"target must be an int, a list of ints or an integer tensor, got {type(target).__name__}.")
    if values.numel() == 1:
        values = values.expand(count)
    if values.numel() != count:
        raise ValueError(f"got {values.numel()} targets for {count} canvases: give one class per canvas or a single int.")
    if num_classes is not None:
        bad = values[(values < 0) | (values >= num_classes)]
        if bad.numel():
            raise ValueError(f"target class {int(bad[0])} is out of range: the model has {num_classes} classes (0..{num_classes - 1}).")
    return values.clone()


def check_images(images: Tensor, name: str, *, unit_range: bool = True) -> None:
    """Check that ``images`` is a finite N x C x H x W float tensor (pixels in [0, 1])."""
    if not isinstance(images, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(images).__name__}.")
    if images.dim() != 4:
        raise ValueError(f"{name} must be N x C x H x W, got shape {tuple(images.shape)}.")
    if not images.is_floating_point():
        raise TypeError(f"{name} must be a float tensor with pixels in [0, 1], got {images.dtype}.")
    if images.shape[0] == 0:
        raise ValueError(f"{name} is empty.")
    if not torch.isfinite(images).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    if unit_range and (images.min() < 0 or images.max() > 1):
        raise ValueError(
            f"{name} must hold pixels in [0, 1] (found {float(images.min()):.3g}..{float(images.max()):.3g}); "
            "normalisation belongs inside the model, e.g. nn.Sequential(Normalize(...), model)."
        )


def check_choice(value: Any, allowed: Sequence[str], name: str) -> str:
    """Return ``value`` if it is one of the ``allowed`` strings, else raise a ValueError naming them."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(repr(a) for a in allowed)}; got {value!r}.")
    return value


def check_positive_int(value: Any, name: str) -> int:
    """Return ``value`` if it is an int >= 1 (not a bool), else raise a ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
    return value


def check_positive_float(value: Any, name: str) -> float:
    """Return ``value`` as a float if it is a number > 0 (not a bool), else raise a ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}.")
    return float(value)


def check_labels(images: Tensor, labels: Any, name: str) -> Tensor:
    """Integer class labels, one per image, as a 1-d CPU long tensor.

    Raises:
        ValueError: no labels, or not one per image.
        TypeError: labels that are not integer classes.
    """
    if labels is None:
        raise ValueError(f"{name} labels are required.")
    if not isinstance(labels, Tensor):
        try:
            labels = torch.as_tensor(labels)
        except (TypeError, ValueError, RuntimeError) as error:
            raise TypeError(f"{name} labels must be a tensor or sequence of ints.") from error
    if labels.is_floating_point() or labels.is_complex():
        raise TypeError(f"{name} labels must hold integer classes, got {labels.dtype}.")
    labels = labels.reshape(-1).cpu().long()
    if labels.numel() != images.shape[0]:
        raise ValueError(f"got {labels.numel()} {name} labels for {images.shape[0]} images.")
    return labels


def module_device(forward_func: Callable) -> Optional[torch.device]:
    """The device of a module's first parameter or buffer, or ``None`` if unknown."""
    if isinstance(forward_func, nn.Module):
        for tensor in forward_func.parameters():
            return tensor.device
        for tensor in forward_func.buffers():
            return tensor.device
    return None


def check_device(forward_func: Callable, tensor: Tensor, name: str) -> None:
    """Raise a clear error when ``tensor`` and the model live on different devices."""
    device = module_device(forward_func)
    if device is not None and device != tensor.device:
        raise ValueError(
            f"{name} is on {tensor.device} but the model is on {device}: "
            f"move it with {name}.to({str(device)!r})."
        )


_STOCHASTIC = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd, nn.Dropout)


@contextlib.contextmanager
def evaluation_mode(forward_func: Callable, who: str) -> Iterator[None]:
    """Run in eval mode, restoring every submodule's own training flag afterwards.

    A model in training mode would update BatchNorm running statistics (a change to the
    caller's buffers) and sample dropout, so the work runs in eval mode and a warning says
    so. Each submodule's flag is restored individually, also on exceptions, because
    ``model.train(flag)`` would overwrite submodules the caller had set differently.
    """
    if not isinstance(forward_func, nn.Module):
        yield
        return
    flags = [(module, module.training) for module in forward_func.modules()]
    if any(training and isinstance(module, _STOCHASTIC) for module, training in flags):
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


def write_atomic(path: Union[str, os.PathLike], data: Union[str, bytes]) -> None:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace``.

    A reader never sees a half-written file, and an interrupted write leaves the old file.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    handle, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(handle, mode) as stream:
            stream.write(data)
        # mkstemp creates the file readable by its owner only; give it the permissions an
        # ordinary open() would have (0o666 less the umask).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def write_json_atomic(path: Union[str, os.PathLike], obj: Any) -> None:
    """Serialise ``obj`` as indented JSON and write it atomically."""
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def save_figure_atomic(fig: Any, path: Union[str, os.PathLike], **kwargs: Any) -> None:
    """Save a matplotlib figure atomically (render to memory, then :func:`write_atomic`)."""
    import io

    buffer = io.BytesIO()
    fmt = os.path.splitext(os.fspath(path))[1].lstrip(".") or "png"
    fig.savefig(buffer, format=fmt, **kwargs)
    write_atomic(path, buffer.getvalue())

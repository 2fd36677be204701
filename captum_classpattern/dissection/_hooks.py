"""Layers of a model: finding one by name, the device to run on, and capturing a layer's output."""

from __future__ import annotations

from typing import Any, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from .._utils import module_device

LayerSpec = Union[str, nn.Module]
"""A layer of a model: the module itself or its dotted name (``"features.relu4"``)."""


def resolve_layer(model: nn.Module, layer: LayerSpec) -> Tuple[str, nn.Module]:
    """Return ``(dotted name, module)`` for a layer given by name or as a module.

    Args:
        model: the network.
        layer: a submodule of ``model`` or its dotted name.

    Returns:
        The layer's dotted name (``"<model>"`` for the model itself) and the module.

    Raises:
        TypeError: ``model`` is not a module, or ``layer`` is neither a name nor a module.
        ValueError: no such layer in ``model``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    if isinstance(layer, str):
        try:
            return layer, model.get_submodule(layer)
        except AttributeError:
            names = [name for name, _ in model.named_modules() if name]
            shown = ", ".join(names[:40]) + (f", ... ({len(names)} in all)" if len(names) > 40 else "")
            raise ValueError(
                f"the model has no layer named {layer!r}; pass one of model.named_modules(): {shown}."
            ) from None
    if isinstance(layer, nn.Module):
        for name, module in model.named_modules():
            if module is layer:
                return name or "<model>", module
        raise ValueError("layer is not a submodule of model; pass one of its modules or its dotted name.")
    raise TypeError(f"layer must be a dotted name (str) or an nn.Module, got {type(layer).__name__}.")


def run_device(model: nn.Module, device: Optional[Union[str, torch.device]]) -> torch.device:
    """The device to run on: ``device`` if given, else the model's, else the CPU."""
    if device is not None:
        return torch.device(device)
    return module_device(model) or torch.device("cpu")


class _StopForward(Exception):
    """Raised by the capture hook: nothing after the tapped layer needs to run."""


class LayerTap:
    """Context manager that captures a layer's output; the hook is removed on exit.

    Args:
        module: the layer.
        name: its dotted name, for error messages.
        stop: stop the forward pass at the layer (later layers never run).
    """

    def __init__(self, module: nn.Module, name: str, stop: bool = True) -> None:
        self.module, self.name, self.stop = module, name, stop
        self.output: Optional[Tensor] = None
        self.handle: Any = None

    def __enter__(self) -> LayerTap:
        self.handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.handle.remove()

    def _hook(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if self.output is not None:  # a layer used twice: keep its first call
            return
        self.output = output
        if self.stop:
            raise _StopForward

    def run(self, model: nn.Module, images: Tensor) -> Any:
        """Run ``model`` on ``images`` (up to the layer) and return the layer's output.

        Raises:
            ValueError: the layer did not run during the forward pass.
        """
        self.output = None
        try:
            model(images)
        except _StopForward:
            pass
        if self.output is None:
            raise ValueError(f"layer {self.name!r} did not run during the forward pass; pick a layer the model uses.")
        output, self.output = self.output, None
        return output

    def features(self, model: nn.Module, images: Tensor) -> Tensor:
        """Run ``model`` on ``images`` and return the layer's N x C x H x W output.

        Raises:
            TypeError: the layer's output is not a tensor.
            ValueError: the layer's output is not N x C x H x W.
        """
        return _check_feature_map(self.run(model, images), self.name)


def _check_feature_map(output: Any, name: str) -> Tensor:
    if not isinstance(output, Tensor):
        raise TypeError(
            f"layer {name!r} returned {type(output).__name__}, not a tensor; dissect a layer whose "
            "output is one N x C x H x W tensor (e.g. a Conv2d or the ReLU after it)."
        )
    if output.dim() != 4:
        raise ValueError(
            f"layer {name!r} outputs shape {tuple(output.shape)}; dissection needs N x C x H x W "
            "feature maps: pick a convolutional layer (or the activation after it)."
        )
    return output

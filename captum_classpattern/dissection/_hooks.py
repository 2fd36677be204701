"""Layer hooks and data batches: the plumbing of network dissection.

Finding a layer by name, capturing its output during a forward pass (and stopping the pass
there), and reading and checking the ``(images, masks[, image_labels])`` batches. It holds
no dissection numerics, so :mod:`captum_classpattern.dissection` reads as the method itself;
:mod:`captum_classpattern.ablation` taps layers the same way (through ``dissection``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Optional, Tuple, Union

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

LayerSpec = Union[str, nn.Module]


# ----------------------------------------------------------------------------------------
# Layers, devices, model calls (shared with ablation.py)
# ----------------------------------------------------------------------------------------


def _resolve_layer(model: nn.Module, layer: LayerSpec) -> Tuple[str, nn.Module]:
    """Return ``(dotted name, module)`` for a layer given by name or as a module."""
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


def _model_device(model: nn.Module, device: Optional[Union[str, torch.device]]) -> torch.device:
    """The device to run on: ``device`` if given, else the model's, else the CPU."""
    if device is not None:
        return torch.device(device)
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


class _StopForward(Exception):
    """Raised by the capture hook: nothing after the dissected layer needs to run."""


class _LayerTap:
    """Context manager that captures a layer's output; the hook is removed on exit."""

    def __init__(self, module: nn.Module, name: str, stop: bool = True) -> None:
        self.module, self.name, self.stop = module, name, stop
        self.output: Optional[Tensor] = None
        self.handle: Any = None

    def __enter__(self) -> "_LayerTap":
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
        """Run ``model`` on ``images`` (up to the layer) and return the layer's output."""
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
        """Run ``model`` on ``images`` and return the layer's N x C x H x W output."""
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


# ----------------------------------------------------------------------------------------
# Reading the data
# ----------------------------------------------------------------------------------------


@dataclass
class _Batch:
    images: Tensor
    masks: Tensor  # N x K x Hm x Wm integer concept ids, 0 = none, < 0 = not annotated
    labels: Optional[Tensor]  # N x num_concepts bool, image-level concepts


def _batches(data: Any, batch_size: int) -> Iterable:
    """Iterate batches: whole tensors are split, map-style data sets go through a DataLoader."""
    if isinstance(data, tuple) and data and all(isinstance(item, Tensor) for item in data):
        count = data[0].shape[0]
        return (tuple(item[start:start + batch_size] for item in data) for start in range(0, count, batch_size))
    if isinstance(data, Dataset):
        return DataLoader(data, batch_size=batch_size, shuffle=False)
    return data


def _parse_batch(batch: Any, index: int) -> _Batch:
    if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
        raise TypeError(
            f"batch {index} is a {type(batch).__name__}; data must yield (images, masks) or "
            "(images, masks, image_labels) tuples."
        )
    images, masks = batch[0], batch[1]
    labels = batch[2] if len(batch) == 3 else None
    if not isinstance(images, Tensor) or images.dim() != 4 or not images.is_floating_point():
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise TypeError(f"batch {index}: images must be a float tensor N x C x H x W, got {shape}.")
    if not isinstance(masks, Tensor) or masks.is_floating_point() or masks.is_complex() or masks.dtype == torch.bool:
        kind = masks.dtype if isinstance(masks, Tensor) else type(masks).__name__
        raise TypeError(
            f"batch {index}: masks must be an integer tensor of concept ids (0 = no concept), got {kind}; "
            "convert with masks.long()."
        )
    if masks.dim() == 3:
        masks = masks.unsqueeze(1)
    if masks.dim() != 4 or masks.shape[0] != images.shape[0]:
        raise ValueError(
            f"batch {index}: masks of shape {tuple(batch[1].shape)} do not fit {images.shape[0]} images; "
            "pass N x H x W (one category) or N x K x H x W (K categories) concept ids."
        )
    if labels is not None:
        if not isinstance(labels, Tensor) or labels.dim() != 2 or labels.shape[0] != images.shape[0]:
            shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
            raise ValueError(
                f"batch {index}: image_labels must be multi-hot N x num_concepts, got {shape} for "
                f"{images.shape[0]} images."
            )
        labels = labels != 0
    return _Batch(images, masks.long(), labels)


class _Layout:
    """What the first pass learns about the data, and the checks that every batch agrees."""

    def __init__(self) -> None:
        self.images = 0
        self.mask_channels = -1
        self.mask_size: Tuple[int, int] = (0, 0)
        self.label_width: Optional[int] = None
        self.max_id = 0
        self.units = 0

    def check(self, batch: _Batch, features: Tensor, index: int) -> None:
        shape = (batch.masks.shape[1], tuple(batch.masks.shape[2:]))
        width = None if batch.labels is None else batch.labels.shape[1]
        if self.images == 0:
            self.mask_channels, self.mask_size = shape[0], shape[1]  # type: ignore[assignment]
            self.label_width, self.units = width, features.shape[1]
        elif shape != (self.mask_channels, self.mask_size) or width != self.label_width:
            raise ValueError(
                f"batch {index}: masks {shape[0]} x {shape[1]} / image_labels width {width} differ from the "
                f"first batch's {self.mask_channels} x {self.mask_size} / {self.label_width}; every batch "
                "needs the same mask categories and resolution (resize masks with nearest-neighbour)."
            )
        self.images += batch.images.shape[0]
        if batch.masks.numel():
            self.max_id = max(self.max_id, int(batch.masks.max()))

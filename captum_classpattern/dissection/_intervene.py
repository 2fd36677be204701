"""Interventions on units: scale, switch off or set chosen channels of a layer, everywhere or in a region."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._hooks import LayerSpec, resolve_layer

Units = Union[int, Sequence[int], Tensor]
"""Channel indices: an int, a sequence of ints or a 1-d integer tensor."""


def unit_index(units: Units, width: Optional[int]) -> Tensor:
    """Validate ``units`` and return them as a 1-d int64 tensor.

    Args:
        units: the channel indices.
        width: the layer's number of units, if known.

    Raises:
        TypeError: units of the wrong type.
        ValueError: a negative unit, or one beyond ``width``.
    """
    if isinstance(units, Tensor):
        if units.is_floating_point() or units.dim() > 1:
            raise TypeError("units must be an int, a sequence of ints or a 1-d integer tensor.")
        index = units.reshape(-1).long().cpu()
    elif isinstance(units, (int, np.integer)) and not isinstance(units, bool):
        index = torch.tensor([int(units)])
    else:
        try:
            values = [int(u) for u in units]  # type: ignore[union-attr]
        except (TypeError, ValueError):
            raise TypeError("units must be an int, a sequence of ints or a 1-d integer tensor.") from None
        index = torch.tensor(values, dtype=torch.long)
    if index.numel() and int(index.min()) < 0:
        raise ValueError(f"units must be non-negative channel indices, got {index.tolist()}.")
    if width is not None and index.numel() and int(index.max()) >= width:
        raise ValueError(f"unit {int(index.max())} is out of range: the layer has {width} units (0..{width - 1}).")
    return index


def declared_width(module: nn.Module) -> Optional[int]:
    """The output width a module declares (Conv, Linear, BatchNorm), if any."""
    for attribute in ("out_channels", "out_features", "num_features"):
        value = getattr(module, attribute, None)
        if isinstance(value, int):
            return value
    return None


UnitSelection = Union[int, Sequence[int], Sequence[bool], Tensor, np.ndarray]
"""Units of a layer: an int, a sequence of ints, a 1-d integer tensor or a boolean channel mask."""

Amount = Union[float, Tensor]
"""A number for every chosen unit, or a 1-d tensor with one number per chosen unit."""


@dataclass(frozen=True)
class Intervention:
    """What an :func:`intervene` block changes.

    Attributes:
        layer: the layer's dotted name.
        units: the changed channels, in the order given.
        mode: ``"scale"`` (activations multiplied) or ``"value"`` (activations set).
        masked: whether the change is restricted to a spatial region.
    """

    layer: str
    units: Tuple[int, ...]
    mode: str
    masked: bool


def _selected_units(units: UnitSelection, width: Optional[int]) -> Tuple[Tensor, Optional[int]]:
    """The chosen channels as a 1-d int64 tensor, and the width a boolean mask implies (if one was given)."""
    mask: Optional[Tensor] = None
    if isinstance(units, Tensor) and units.dtype == torch.bool:
        mask = units
    elif isinstance(units, np.ndarray) and units.dtype == np.bool_:
        mask = torch.from_numpy(units)
    elif isinstance(units, (list, tuple)) and units and all(isinstance(u, (bool, np.bool_)) for u in units):
        mask = torch.tensor([bool(u) for u in units])
    if mask is None:
        if isinstance(units, np.ndarray):
            units = torch.from_numpy(units)
        index = unit_index(units, width)
        if len(set(index.tolist())) != index.numel():
            raise ValueError(f"units must not repeat, got {index.tolist()}; list each unit once.")
        return index, None
    if mask.dim() != 1:
        raise TypeError(f"a boolean unit mask must be 1-d (one entry per channel), got shape {tuple(mask.shape)}.")
    if width is not None and mask.numel() != width:
        raise ValueError(f"the boolean unit mask has {mask.numel()} entries but the layer has {width} units.")
    return mask.nonzero().reshape(-1).long().cpu(), int(mask.numel())


def _amount(amount: Amount, count: int, name: str) -> Tensor:
    """``scale`` or ``value`` as a float64 tensor of shape (count,) (or a scalar tensor)."""
    if isinstance(amount, Tensor):
        if not (amount.is_floating_point() or amount.dtype in (torch.int32, torch.int64)):
            raise TypeError(f"{name} must be a float or a float tensor, got a {amount.dtype} tensor.")
        values = amount.detach().double().cpu()
        if values.dim() > 1 or (values.dim() == 1 and values.numel() != count):
            raise ValueError(
                f"{name} must be a number or a 1-d tensor with one entry per unit ({count}), "
                f"got shape {tuple(amount.shape)}."
            )
    elif isinstance(amount, (int, float, np.integer, np.floating)) and not isinstance(amount, (bool, np.bool_)):
        values = torch.tensor(float(amount), dtype=torch.float64)
    else:
        raise TypeError(f"{name} must be a float or a 1-d tensor with one entry per unit, got {type(amount).__name__}.")
    if not torch.isfinite(values).all():
        raise ValueError(f"{name} contains NaN or infinite values; pass finite numbers.")
    return values


def _region(mask: Tensor) -> Tensor:
    """Check a spatial mask (H x W or N x H x W; bool, or float in [0, 1]) and return it as N x 1 x H x W."""
    if not isinstance(mask, Tensor):
        raise TypeError(f"mask must be a torch.Tensor (H x W or N x H x W), got {type(mask).__name__}.")
    if mask.dim() not in (2, 3) or mask.numel() == 0:
        raise ValueError(f"mask must be H x W or N x H x W, got shape {tuple(mask.shape)}.")
    region = mask.detach().cpu()
    if region.dtype != torch.bool:
        if not region.is_floating_point():
            raise TypeError(f"mask must be a bool tensor or a float tensor in [0, 1], got {mask.dtype}.")
        if not torch.isfinite(region).all() or region.min() < 0 or region.max() > 1:
            raise ValueError("a float mask must hold finite values in [0, 1] (1: changed, 0: kept, between: blended).")
    return region.reshape(-1, 1, *region.shape[-2:])


def resize_region(region: Tensor, size: Tuple[int, int]) -> Tensor:
    """Resize an N x 1 x H x W mask to ``size``: nearest for bool, area (shrinking) or bilinear (growing) for float.

    Args:
        region: the mask, bool or float in [0, 1].
        size: the layer's spatial size (h, w).

    Returns:
        An N x 1 x h x w float tensor in [0, 1] (exactly 0 or 1 for a bool mask).
    """
    if tuple(region.shape[-2:]) == tuple(size):
        return region.double()
    if region.dtype == torch.bool:
        return F.interpolate(region.double(), size=size, mode="nearest")
    if region.shape[-2] >= size[0] and region.shape[-1] >= size[1]:
        return F.interpolate(region.double(), size=size, mode="area")
    return F.interpolate(region.double(), size=size, mode="bilinear", align_corners=False).clamp(0.0, 1.0)


class _Hook:
    """The forward hook: replaces the chosen channels with the changed ones (a new tensor)."""

    def __init__(
        self,
        index: Tensor,
        mask_width: Optional[int],
        mode: str,
        amount: Tensor,
        region: Optional[Tensor],
        name: str,
    ) -> None:
        self.index, self.mask_width, self.mode, self.amount = index, mask_width, mode, amount
        self.region, self.name = region, name
        self.resized: Dict[Tuple[int, int], Tensor] = {}

    def _check(self, output: Any) -> Tensor:
        if not isinstance(output, Tensor) or output.dim() < 2:
            raise TypeError(
                f"interventions need a layer whose output is one tensor N x C (x ...); units are channels "
                f"(layer {self.name!r} returned {type(output).__name__})."
            )
        width = output.shape[1]
        if self.mask_width is not None and self.mask_width != width:
            raise ValueError(f"the boolean unit mask has {self.mask_width} entries but the layer has {width} units.")
        if self.index.numel() and int(self.index.max()) >= width:
            raise ValueError(
                f"unit {int(self.index.max())} is out of range: the layer has {width} units (0..{width - 1})."
            )
        if self.region is not None and output.dim() != 4:
            raise ValueError(
                f"a spatial mask needs a layer with N x C x H x W output; layer {self.name!r} outputs shape "
                f"{tuple(output.shape)}. Drop mask= to change the units everywhere."
            )
        return output

    def _weights(self, output: Tensor) -> Tensor:
        assert self.region is not None
        size = (int(output.shape[2]), int(output.shape[3]))
        if size not in self.resized:
            self.resized[size] = resize_region(self.region, size)
        weights = self.resized[size]
        if weights.shape[0] not in (1, output.shape[0]):
            raise ValueError(
                f"the mask holds {weights.shape[0]} regions but the batch has {output.shape[0]} images; "
                "pass one H x W mask or one per image (N x H x W)."
            )
        return weights.to(output.device, output.dtype)

    def __call__(self, _module: nn.Module, _inputs: Any, output: Any) -> Tensor:
        output = self._check(output)
        if not self.index.numel():
            return output
        index = self.index.to(output.device)
        chosen = output.index_select(1, index)
        shape = (1, -1) + (1,) * (output.dim() - 2)
        amount = self.amount.to(output.device, output.dtype)
        amount = amount.view(shape) if amount.dim() else amount
        changed = chosen * amount if self.mode == "scale" else torch.zeros_like(chosen) + amount
        if self.region is not None:  # lerp is exact at weights 0 and 1
            changed = torch.lerp(chosen, changed, self._weights(output).expand_as(chosen))
        return output.index_copy(1, index, changed)


@contextlib.contextmanager
def intervene(
    model: nn.Module,
    layer: LayerSpec,
    units: UnitSelection,
    *,
    scale: Optional[Amount] = None,
    value: Optional[Amount] = None,
    mask: Optional[Tensor] = None,
) -> Iterator[Intervention]:
    """Scale or set chosen units of a layer while the context is open, everywhere or inside a region.

    A forward hook on ``layer`` returns a new output tensor in which the chosen channels
    (dim 1) are multiplied by ``scale`` (``scale=0`` switches them off) or set to
    ``value`` (switches them on). The layer's own output is not modified in place, so
    gradients flow through the change. The hook is removed on exit, also when the block
    raises; the model's parameters, buffers, training flags and gradients are never
    touched. Interventions nest: the inner block's change is applied to the outer one's
    result. The same code serves classifiers (N x C or N x C x H x W layers) and
    generators (a decoder layer N x C x h x w).

    A spatial ``mask`` restricts the change to a region. It may have any resolution and is
    resized to the layer's h x w: a bool mask by nearest neighbour (each unit position is
    changed or kept), a float mask in [0, 1] by area averaging when neither side grows and
    bilinear interpolation (``align_corners=False``) when a side grows; a float weight ``m``
    blends ``(1 - m) * original + m * changed``.

    Args:
        model: the network (classifier or generator).
        layer: the layer (module or dotted name); channel dim 1 of its output is changed.
        units: an int, a sequence of distinct ints, a 1-d integer tensor, or a boolean
            channel mask with one entry per unit.
        scale: multiply the units' activations by this (a float, or one per unit).
        value: set the units' activations to this (a float, or one per unit).
        mask: optional region, H x W (all images) or N x H x W (one per image; N may also
            be 1); bool, or float in [0, 1].

    Yields:
        An :class:`Intervention` record: the layer's name, the units, the mode and whether
        a mask applies.

    Raises:
        ValueError: both or neither of ``scale`` and ``value``; a negative, repeated or
            out-of-range unit (checked up front for Conv/Linear/BatchNorm layers, else at
            the first forward pass); NaN or infinite amounts; a mask that is not 2-D or
            3-D, holds values outside [0, 1], does not match the batch, or is given for a
            layer without spatial dims; no such layer.
        TypeError: units, amounts or mask of the wrong type, or a layer whose output is
            not one tensor N x C (x ...).

    Example:
        >>> with intervene(model, "features.relu4", [3, 17], scale=0.0):  # switch off
        ...     logits = model(images)
        >>> region = torch.zeros(64, 64, dtype=torch.bool)
        >>> region[:32, :32] = True
        >>> with intervene(generator, "decoder.2", [5], value=4.0, mask=region):  # switch on, top left
        ...     scenes = generator(codes)
    """
    name, module = resolve_layer(model, layer)
    if (scale is None) == (value is None):
        raise ValueError("pass exactly one of scale= (multiply; 0 switches units off) and value= (set them).")
    index, mask_width = _selected_units(units, declared_width(module))
    mode = "scale" if scale is not None else "value"
    amount = _amount(scale if scale is not None else value, index.numel(), mode)  # type: ignore[arg-type]
    region = None if mask is None else _region(mask)
    record = Intervention(layer=name, units=tuple(index.tolist()), mode=mode, masked=region is not None)
    handle = module.register_forward_hook(_Hook(index, mask_width, mode, amount, region, name))
    try:
        yield record
    finally:
        handle.remove()

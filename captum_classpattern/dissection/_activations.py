"""Streaming a layer's activations for chosen units, batch by batch."""

from __future__ import annotations

from typing import Iterable, Iterator, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from .._utils import check_positive_int, evaluation_mode
from ._hooks import LayerSpec, LayerTap, resolve_layer, run_device


def _layer_features(
    model: nn.Module, module: nn.Module, name: str, images: Tensor, device: torch.device, batch_size: int, units: Tensor
) -> Iterable[Tuple[int, Tensor]]:
    """Yield ``(start, features of the chosen units)`` batch by batch."""
    with evaluation_mode(model, "unit_activations"), LayerTap(module, name) as tap, torch.inference_mode():
        for start in range(0, images.shape[0], batch_size):
            features = tap.features(model, images[start : start + batch_size].to(device))
            yield start, features.index_select(1, units.to(features.device)).float()


def unit_activations(
    model: nn.Module,
    layer: LayerSpec,
    images: Tensor,
    units: Sequence[int],
    *,
    batch_size: int = 64,
    device: Optional[Union[str, torch.device]] = None,
) -> Iterator[Tuple[int, Tensor]]:
    """Yield ``(start, activations)`` of the chosen units of ``layer``, one batch of ``images`` at a time.

    The model runs in eval mode without gradients and is left as found; the forward pass
    stops at ``layer``.

    Args:
        model: the network.
        layer: a submodule of ``model`` or its dotted name.
        images: N x C x H x W inputs.
        units: the channels to keep.
        batch_size: images per model call.
        device: where to run; default the model's device.

    Yields:
        The index of the batch's first image and its B x len(units) x h x w activations (float32).

    Raises:
        ValueError: an unknown layer, a layer whose output is not N x C x H x W, or a bad
            ``batch_size``.

    Example:
        >>> for start, acts in unit_activations(model, "features.2", images, [0, 5]):
        ...     peaks[start:start + len(acts)] = acts.amax((2, 3))
    """
    check_positive_int(batch_size, "batch_size")
    name, module = resolve_layer(model, layer)
    index = torch.tensor([int(u) for u in units], dtype=torch.long)
    yield from _layer_features(model, module, name, images, run_device(model, device), batch_size, index)

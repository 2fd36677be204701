"""Removing units: zeroing channels of a layer's output, alone or many ablations per model call."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._utils import evaluation_mode
from ._hooks import LayerSpec, LayerTap, resolve_layer
from ._intervene import Units, declared_width, intervene, unit_index


def keep_factors(output: Tensor, keep: Tensor) -> Tensor:
    """Multiply channel dim 1 of ``output`` by ``keep`` (G x C: one row per replica).

    Raises:
        TypeError: ``output`` is not one tensor N x C (x ...).
        ValueError: ``keep`` has another number of units than ``output``.
    """
    if not isinstance(output, Tensor) or output.dim() < 2:
        raise TypeError("ablation needs a layer whose output is one tensor N x C (x ...); units are channels.")
    if keep.shape[1] != output.shape[1]:
        raise ValueError(
            f"the layer has {output.shape[1]} units but units up to {keep.shape[1] - 1} were asked for; "
            f"choose units in 0..{output.shape[1] - 1}."
        )
    groups = keep.shape[0]
    factors = keep.to(output.device, output.dtype).repeat_interleave(output.shape[0] // groups, 0)
    return output * factors.view(*factors.shape, *([1] * (output.dim() - 2)))


@contextlib.contextmanager
def ablate_units(model: nn.Module, layer: LayerSpec, units: Units) -> Iterator[List[int]]:
    """Zero the chosen channels of ``layer``'s output while the context is open.

    A forward hook returns the output with the channels set to zero (a new tensor; the
    layer's own output is not modified in place). The hook is removed on exit, also when
    the block raises.

    Args:
        model: the network.
        layer: the layer (module or dotted name); channel dim 1 of its output is ablated.
        units: channel indices (an int, a sequence or a 1-d integer tensor).

    Yields:
        The ablated units as a list of ints.

    Raises:
        ValueError: a negative unit, or one beyond the layer's width (checked up front for
            Conv/Linear/BatchNorm layers, else at the first forward pass).
        TypeError: units of the wrong type.

    Example:
        >>> with ablate_units(model, "features.relu4", [3, 17]):
        ...     logits = model(images)
    """
    _, module = resolve_layer(model, layer)
    index = unit_index(units, declared_width(module)).tolist()
    with intervene(model, module, list(dict.fromkeys(index)), value=0.0):
        yield index


def layer_width(model: nn.Module, module: nn.Module, name: str, images: Tensor, device: torch.device) -> int:
    """Number of units of ``module``: declared, or seen on one image.

    Raises:
        TypeError: the layer's output is not one tensor N x C (x ...).
    """
    width = declared_width(module)
    if width is not None:
        return width
    with evaluation_mode(model, "unit ablation"), LayerTap(module, name) as tap, torch.inference_mode():
        output = tap.run(model, images[:1].to(device))
    if not isinstance(output, Tensor) or output.dim() < 2:
        raise TypeError(f"layer {name!r} must output one tensor N x C (x ...) to ablate its units.")
    return int(output.shape[1])


def _head_input(
    model: nn.Module, module: nn.Module, name: str, batch: Tensor, head: Callable[[Tensor], Tensor], check: bool
) -> Tensor:
    """The layer's output for ``batch``; on the first chunk, check that ``head`` finishes the model."""
    if not check:
        with LayerTap(module, name) as tap:
            return tap.run(model, batch)
    captured: Dict[str, Tensor] = {}

    def hook(_module: nn.Module, _inputs: Any, output: Tensor) -> None:
        captured.setdefault("output", output.clone())  # later in-place ops must not change it

    handle = module.register_forward_hook(hook)
    try:
        logits = model(batch)
    finally:
        handle.remove()
    if "output" not in captured:
        raise ValueError(f"layer {name!r} did not run during the forward pass; pick a layer the model uses.")
    rebuilt = head(captured["output"])
    if not (
        isinstance(rebuilt, Tensor)
        and rebuilt.shape == logits.shape
        and torch.allclose(rebuilt.float(), logits.float(), rtol=1e-4, atol=1e-4)
    ):
        raise ValueError(
            "head(layer output) does not reproduce model(images): head must be the rest of the network after the "
            "layer, e.g. nn.Sequential(model.pool, model.flatten, model.fc); or pass head=None."
        )
    return captured["output"]


def ablated_predictions(
    model: nn.Module,
    module: nn.Module,
    name: str,
    images: Tensor,
    labels: Tensor,
    ablations: Sequence[Tensor],
    width: int,
    device: torch.device,
    batch_size: int,
    head: Optional[Callable[[Tensor], Tensor]] = None,
    show_progress: bool = False,
    desc: str = "Unit ablation",
) -> Tuple[Tensor, Tensor]:
    """Top-1 predictions and log-probabilities of the true labels with each set of units removed.

    Both are len(ablations) x N. Several ablations share one model call: the image chunk is
    repeated once per ablation and a different set of channels is zeroed in each copy, so a
    call holds about ``batch_size`` images however few images there are. With ``head`` the
    layer's output is computed once per chunk and only ``head`` runs per ablation.

    Args:
        model: the classifier.
        module: the layer whose channels are removed.
        name: the layer's dotted name.
        images: N images.
        labels: their N labels (CPU).
        ablations: the sets of units to remove, one 1-d tensor each (empty: nothing removed).
        width: the layer's number of units.
        device: where to run.
        batch_size: images per model call.
        head: optional, the rest of the network after the layer.
        show_progress: show a tqdm progress bar.
        desc: the progress bar's label.

    Raises:
        ValueError: a ``head`` that does not reproduce the model's logits.
    """
    count = images.shape[0]
    chunk = min(count, batch_size)
    group = max(1, batch_size // chunk)
    keeps = []
    for first in range(0, len(ablations), group):
        keep = torch.ones(len(ablations[first : first + group]), width)
        for row, units in enumerate(ablations[first : first + group]):
            keep[row, units] = 0.0
        keeps.append(keep.to(device))
    predictions = torch.empty(len(ablations), count, dtype=torch.long)
    log_probs = torch.empty(len(ablations), count, dtype=torch.float64)
    current: Dict[str, Tensor] = {}

    def hook(_module: nn.Module, _inputs: Any, output: Tensor) -> Tensor:
        return keep_factors(output, current["keep"])

    progress = tqdm(total=len(keeps) * -(-count // chunk), desc=desc, disable=not show_progress, leave=False)
    handle = module.register_forward_hook(hook) if head is None else None
    try:
        with evaluation_mode(model, "unit ablation"), torch.inference_mode():
            for start in range(0, count, chunk):
                batch = images[start : start + chunk].to(device)
                target = labels[start : start + chunk].to(device)
                features = None if head is None else _head_input(model, module, name, batch, head, start == 0)
                row = 0
                for keep in keeps:
                    if features is None:
                        current["keep"] = keep
                        logits = model(batch.repeat(keep.shape[0], *([1] * (batch.dim() - 1))))
                    else:
                        stacked = features.repeat(keep.shape[0], *([1] * (features.dim() - 1)))
                        logits = head(keep_factors(stacked, keep))  # type: ignore[misc]
                    logits = logits.view(keep.shape[0], batch.shape[0], -1).double()
                    log_prob = logits.log_softmax(2).gather(2, target[None, :, None].expand(keep.shape[0], -1, 1))
                    predictions[row : row + keep.shape[0], start : start + batch.shape[0]] = logits.argmax(2).cpu()
                    log_probs[row : row + keep.shape[0], start : start + batch.shape[0]] = log_prob[..., 0].cpu()
                    row += keep.shape[0]
                    progress.update()
    finally:
        if handle is not None:
            handle.remove()
        progress.close()
    return predictions, log_probs

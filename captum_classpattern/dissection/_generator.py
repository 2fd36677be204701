"""Dissecting a generator: units of a generator layer against segmentations of the images it draws.

The generator draws an image from each latent code; a segmenter labels the image's pixels
with concepts; each unit of the chosen layer is thresholded at its top quantile, upsampled
to the image and compared with every concept's pixels by pooled IoU, exactly as
:func:`dissect` does for a classifier and its annotated inputs (it runs :func:`dissect` on
the generator, with the segmentations as masks).
"""

from __future__ import annotations

import dataclasses
import math
from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from .._utils import accepts_older_keywords, check_positive_int, evaluation_mode
from ._dissect import dissect
from ._hooks import LayerSpec, resolve_layer, run_device
from ._result import DissectionResult
from ._settings import (
    OLDER_DISSECTION_KEYWORDS,
    DissectionSettings,
    check_dissection_settings,
    fold_dissection_keywords,
)

_DEFAULT_SETTINGS = DissectionSettings()


def check_latents(latents: Tensor) -> Tensor:
    """Check that ``latents`` is a non-empty, finite float tensor with one code per row.

    Raises:
        TypeError: not a float tensor.
        ValueError: empty, 0-d or non-finite.
    """
    if not isinstance(latents, Tensor) or not latents.is_floating_point():
        kind = latents.dtype if isinstance(latents, Tensor) else type(latents).__name__
        raise TypeError(f"latents must be a float tensor with one latent code per row, got {kind}.")
    if latents.dim() < 1 or latents.shape[0] == 0:
        raise ValueError(f"latents must hold at least one code (N x ...), got shape {tuple(latents.shape)}.")
    if not bool(torch.isfinite(latents).all()):
        raise ValueError("latents contain NaN or infinite values.")
    return latents


def generate(
    generator: nn.Module, latents: Tensor, batch_size: int = 64, device: Optional[Union[str, torch.device]] = None
) -> Tensor:
    """Images the generator draws from ``latents``, batch by batch (eval mode, no gradients).

    Args:
        generator: maps N latent codes to N x C x H x W images.
        latents: N x ... latent codes.
        batch_size: codes per call.
        device: where to run; default the generator's device.

    Returns:
        The images on the CPU.

    Raises:
        ValueError: the generator's output is not N x C x H x W.
    """
    check_positive_int(batch_size, "batch_size")
    run_on = run_device(generator, device)
    parts = []
    with evaluation_mode(generator, "generate"), torch.inference_mode():
        for start in range(0, latents.shape[0], batch_size):
            images = generator(latents[start : start + batch_size].to(run_on))
            if not isinstance(images, Tensor) or images.dim() != 4:
                shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
                raise ValueError(f"the generator must return N x C x H x W images, got {shape}.")
            parts.append(images.float().cpu())
    return torch.cat(parts)


def segment(segmenter: nn.Module, images: Tensor, batch_size: int = 64) -> Tensor:
    """Concept ids ``segmenter`` gives ``images``, as N x K x H x W int64 (eval mode, no gradients).

    Raises:
        TypeError: the segmenter does not return integer ids.
        ValueError: masks that do not match the images.
    """
    parts = []
    run_on = run_device(segmenter, None)
    with evaluation_mode(segmenter, "segment"), torch.inference_mode():
        for start in range(0, images.shape[0], batch_size):
            masks = segmenter(images[start : start + batch_size].to(run_on))
            if not isinstance(masks, Tensor) or masks.is_floating_point() or masks.dtype == torch.bool:
                raise TypeError("the segmenter must return integer concept ids (N x H x W or N x K x H x W).")
            if masks.dim() == 3:
                masks = masks[:, None]
            if masks.dim() != 4 or masks.shape[0] != images[start : start + batch_size].shape[0]:
                raise ValueError(f"the segmenter returned shape {tuple(masks.shape)} for a batch of images.")
            parts.append(masks.long().cpu())
    return torch.cat(parts)


class _FromIndex(nn.Module):
    """Feeds the generator the latent codes whose indices arrive as tiny N x 1 x h x w "images"."""

    def __init__(self, generator: nn.Module, latents: Tensor) -> None:
        super().__init__()
        self.generator, self.latents = generator, latents

    def forward(self, index: Tensor) -> Tensor:
        rows = index[:, 0, 0, 0].round().long().to(self.latents.device)
        return self.generator(self.latents[rows].to(index.device))


def _index_images(count: int, size: Tuple[int, int]) -> Tensor:
    """N x 1 x h x w tensors holding each image's index, with the masks' aspect ratio."""
    divisor = math.gcd(*size)
    shape = (size[0] // divisor, size[1] // divisor)
    if shape[0] * shape[1] > 64:  # an awkward ratio: close enough (dissect tolerates 2%)
        shape = (max(1, round(8 * size[0] / max(size))), max(1, round(8 * size[1] / max(size))))
    return torch.arange(count, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 1, *shape).contiguous()


@accepts_older_keywords(OLDER_DISSECTION_KEYWORDS, fold_dissection_keywords)
def dissect_generator(
    generator: nn.Module,
    layer: LayerSpec,
    latents: Tensor,
    segmenter: nn.Module,
    settings: DissectionSettings = _DEFAULT_SETTINGS,
    *,
    concept_names: Optional[Sequence[str]] = None,
    categories: Optional[Sequence[str]] = None,
    device: Optional[Union[str, torch.device]] = None,
    batch_size: int = 64,
    show_progress: bool = False,
) -> DissectionResult:
    """Label each unit of a generator layer with the concept it draws (GAN dissection).

    The generator draws one image per latent code and ``segmenter`` labels its pixels; then
    each unit's threshold is set at the top ``quantile`` of its activations (upsampled
    bilinearly to the segmentation's resolution) and its pooled IoU with every concept is
    counted, with the machinery of :func:`dissect` and the same :class:`DissectionResult`.

    Args:
        generator: maps N latent codes to N x C x H x W images; its mode, parameters and
            buffers are left as found.
        layer: the layer to dissect (module or dotted name); its output must be
            N x C x h x w.
        latents: N x ... latent codes (any shape the generator takes).
        segmenter: maps images to integer concept ids N x H x W or N x K x H x W (e.g.
            :class:`ConceptSegmenter`); left as found.
        settings: the top ``quantile`` of activations above each unit's threshold, the
            ``iou_threshold`` from which a unit counts as a detector, and the thresholds'
            memory budget (:class:`DissectionSettings`); the older keywords
            ``quantile=``, ``iou_threshold=`` and ``threshold_settings=`` are still accepted.
        concept_names: name of each concept id; default the segmenter's ``concept_names``.
        categories: category of each concept id; default the segmenter's
            ``concept_categories``.
        device: where to run; default the generator's device.
        batch_size: latent codes per call.
        show_progress: show progress bars.

    Returns:
        A :class:`DissectionResult` whose ``layer`` is the layer's name in ``generator``.

    Raises:
        TypeError: latents that are not a float tensor; a segmenter that does not return
            integer ids.
        ValueError: unknown layer, bad settings, generator or layer outputs of the wrong
            shape (as for :func:`dissect`).

    Example:
        >>> result = dissect_generator(autoencoder.decoder, "relu1", latents, segmenter)
        >>> result.units_for("red")[:3]
    """
    settings = check_dissection_settings(settings)
    check_latents(latents)
    check_positive_int(batch_size, "batch_size")
    name, module = resolve_layer(generator, layer)
    images = generate(generator, latents, batch_size, device)
    masks = segment(segmenter, images, batch_size)
    names = concept_names if concept_names is not None else getattr(segmenter, "concept_names", None)
    kinds = categories if categories is not None else getattr(segmenter, "concept_categories", None)
    index = _index_images(latents.shape[0], (int(masks.shape[2]), int(masks.shape[3])))
    source = _FromIndex(generator, latents.detach())
    result = dissect(
        source,
        module,
        (index, masks),
        settings,
        concept_names=names,
        categories=kinds,
        device=run_device(generator, device),
        batch_size=batch_size,
        show_progress=show_progress,
    )
    return dataclasses.replace(result, layer=name)


def top_units(result: DissectionResult, concept: str, count: int) -> List[int]:
    """The ``count`` units with the highest IoU for ``concept`` (detectors or not), best first.

    Raises:
        ValueError: unknown concept or ``count`` out of range.
    """
    if concept not in result.concept_names:
        raise ValueError(f"unknown concept {concept!r}; known: {', '.join(result.concept_names[1:])}.")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= result.num_units:
        raise ValueError(f"the number of units must be an int in 1..{result.num_units}, got {count!r}.")
    column = result.ious[:, result.concept_names.index(concept)]
    return [int(u) for u in sorted(range(result.num_units), key=lambda u: (-column[u], u))[:count]]

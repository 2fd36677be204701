"""Editing real images through units: encode, switch concept units on or off in a region, decode."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .._utils import (
    JsonFile,
    Replaceable,
    accepts_older_keywords,
    check_images,
    check_keys,
    check_positive_int,
    evaluation_mode,
    float_array,
    refuse_both,
)
from ._causal import check_region, render
from ._hooks import LayerSpec, resolve_layer, run_device
from ._intervene import Amount, unit_index
from ._segment import concept_share


@dataclass(frozen=True, eq=False)
class UnitChange(Replaceable):
    """How :func:`edit_with_units` changes its units inside the region: scaled or set, exactly one.

    Attributes:
        scale: multiply the units by this (``0`` switches them off): a number, or a 1-d
            tensor with one number per unit.
        value: set the units to this (switches them on): a number, or one per unit.

    Raises:
        ValueError: both or neither of ``scale`` and ``value``.
        TypeError: an amount that is neither a number nor a tensor.

    Example:
        >>> edit_with_units(encoder, decoder, "relu1", images, units, region, segmenter, "red",
        ...                 UnitChange(value=torch.tensor(thresholds) * 2))
    """

    scale: Optional[Amount] = None
    value: Optional[Amount] = None

    def __post_init__(self) -> None:
        if (self.scale is None) == (self.value is None):
            raise ValueError("pass exactly one of scale= (multiply; 0 switches units off) and value= (set them).")
        amount = self.scale if self.scale is not None else self.value
        if isinstance(amount, (bool, np.bool_)) or not isinstance(
            amount, (int, float, np.integer, np.floating, Tensor)
        ):
            raise TypeError(f"scale or value must be a number or a 1-d tensor, got {type(amount).__name__}.")

    def as_keywords(self) -> Dict[str, Any]:
        """``{"scale": ...}`` or ``{"value": ...}``, the keywords :func:`intervene` takes."""
        return {"scale": self.scale} if self.scale is not None else {"value": self.value}


def _fold_keywords(older: Dict[str, Any], arguments: Dict[str, Any]) -> None:
    """Move ``edit_with_units``'s older ``scale=`` and ``value=`` into its ``change``."""
    refuse_both(older, arguments, ("scale", "value"), "change")
    arguments["change"] = UnitChange(**older)


@dataclass
class UnitEdit(JsonFile):
    """Real images decoded as they are and with units switched, and a concept's share of the region.

    Attributes:
        layer: the decoder layer that was changed.
        units: the units switched.
        concept: the concept measured (by its segmenter name).
        reconstructed: N x C x H x W images decoded without a change.
        edited: N x C x H x W images decoded with the change.
        share_before: per image, the concept's share of the region in ``reconstructed``.
        share_after: per image, that share in ``edited``.
    """

    layer: str
    units: List[int]
    concept: str
    reconstructed: Tensor
    edited: Tensor
    share_before: np.ndarray
    share_after: np.ndarray

    @property
    def change(self) -> float:
        """Mean over images of the change of the concept's share of the region."""
        return float((self.share_after - self.share_before).mean())

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict, images included as nested lists."""
        return {
            "layer": self.layer,
            "units": list(self.units),
            "concept": self.concept,
            "reconstructed": self.reconstructed.tolist(),
            "edited": self.edited.tolist(),
            "share_before": self.share_before.tolist(),
            "share_after": self.share_after.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> UnitEdit:
        """Rebuild an edit from :meth:`to_dict`'s output.

        Raises:
            ValueError: the dict is not a unit edit.
        """
        keys = ("layer", "units", "concept", "reconstructed", "edited", "share_before", "share_after")
        check_keys(data, keys, "UnitEdit")
        count = len(data["share_before"])
        return cls(
            layer=str(data["layer"]),
            units=[int(u) for u in data["units"]],
            concept=str(data["concept"]),
            reconstructed=torch.tensor(data["reconstructed"], dtype=torch.float32),
            edited=torch.tensor(data["edited"], dtype=torch.float32),
            share_before=float_array(data["share_before"], (count,)),
            share_after=float_array(data["share_after"], (count,)),
        )


@accepts_older_keywords(("scale", "value"), _fold_keywords)
def edit_with_units(
    encoder: nn.Module,
    generator: nn.Module,
    layer: LayerSpec,
    images: Tensor,
    units: Sequence[int],
    region: Tensor,
    segmenter: nn.Module,
    concept: str,
    change: Optional[UnitChange] = None,
    *,
    batch_size: int = 64,
) -> UnitEdit:
    """Edit real images through generator units: encode, change units in a region, decode, measure.

    The encoder maps the images to latent codes; the generator decodes them twice, once
    as they are and once with ``units`` of ``layer`` scaled (``UnitChange(scale=0)``
    switches them off) or set (``UnitChange(value=...)`` switches them on) inside
    ``region`` (see :func:`intervene`);
    the segmenter measures ``concept``'s share of the region in both.

    Args:
        encoder: maps N x C x H x W images to latent codes; left as found.
        generator: maps latent codes to images (the decoder); left as found.
        layer: the decoder layer to change (module or dotted name).
        images: N x C x H x W real images in [0, 1].
        units: the units to switch (e.g. a concept's top units by dissection IoU).
        region: H x W or N x H x W bool region at the images' resolution.
        segmenter: maps images to concept ids and names them (``concept_names``), e.g.
            :class:`ConceptSegmenter`; left as found.
        concept: the concept to measure, a name in ``segmenter.concept_names``.
        change: scale or set the units inside the region (:class:`UnitChange`); the older
            keywords ``scale=`` and ``value=`` are still accepted.
        batch_size: images per call.

    Returns:
        A :class:`UnitEdit`.

    Raises:
        ValueError: no ``change`` (or both or neither of ``scale`` and ``value``), empty or out-of-range
            units, a bad region, images of the wrong shape, an unknown concept or layer.
        TypeError: images, region, units or change of the wrong type.

    Example:
        >>> region = torch.zeros(32, 32, dtype=torch.bool)
        >>> region[4:14, 4:14] = True
        >>> edit = edit_with_units(net.encoder, net.decoder, "relu1", images, red_units, region,
        ...                        segmenter, "red", UnitChange(value=torch.tensor(thresholds) * 2))
        >>> edit.change
    """
    check_images(images, "images")
    check_positive_int(batch_size, "batch_size")
    name, _ = resolve_layer(generator, layer)
    chosen = unit_index(list(units) if not isinstance(units, Tensor) else units, None)
    if not chosen.numel():
        raise ValueError("units must name at least one unit of the layer.")
    if change is None:
        raise ValueError("pass exactly one of scale= (multiply; 0 switches units off) and value= (set them).")
    if not isinstance(change, UnitChange):
        raise TypeError(f"change must be a UnitChange, got {type(change).__name__}.")
    names = list(getattr(segmenter, "concept_names", []))
    if concept not in names[1:]:
        raise ValueError(f"unknown concept {concept!r}; the segmenter names {names[1:]}.")
    region = check_region(region, (int(images.shape[2]), int(images.shape[3])), int(images.shape[0]))
    run_on = run_device(encoder, None)
    codes = []
    with evaluation_mode(encoder, "edit_with_units"), torch.inference_mode():
        for start in range(0, images.shape[0], batch_size):
            codes.append(encoder(images[start : start + batch_size].to(run_on)).float().cpu())
    latents = torch.cat(codes)
    intervention: Dict[str, Any] = {"units": chosen, "mask": region, **change.as_keywords()}
    before_images, before = render(generator, layer, latents, segmenter, batch_size)
    after_images, after = render(generator, layer, latents, segmenter, batch_size, **intervention)
    concept_id = names.index(concept)
    return UnitEdit(
        layer=name,
        units=chosen.tolist(),
        concept=concept,
        reconstructed=before_images,
        edited=after_images,
        share_before=concept_share(before, concept_id, region).numpy(),
        share_after=concept_share(after, concept_id, region).numpy(),
    )

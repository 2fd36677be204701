"""Causal effects of generator units: switch a concept's units off, or on inside a region.

Ablation: the concept's top units by dissection IoU are set to zero everywhere and the
concept's area in the generated images (segmenter pixels) is compared with the area left
when as many random units are set to zero instead. Insertion: the same units are set to a
high activation inside a region and the concept's share of the region is measured before
and after, split by what the region lay on (the object or the ground).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from .._utils import (
    JsonFile,
    Replaceable,
    check_keys,
    check_positive_float,
    check_positive_int,
    check_seed,
    float_array,
)
from ._generator import check_latents, generate, segment, top_units
from ._hooks import LayerSpec, resolve_layer
from ._intervene import intervene
from ._result import DissectionResult
from ._segment import concept_share


@dataclass(frozen=True)
class CausalSettings(Replaceable):
    """How :func:`ablation_effect` and :func:`insertion_effect` intervene and measure.

    Attributes:
        units: how many top units (by IoU) of a concept are switched, and how many random
            units they are compared with (>= 1).
        random_draws: random unit sets per concept (>= 1); random units are drawn, without
            repetition, from the units outside the concept's top ``units``.
        seed: seeds the random unit sets.
        boost: switched-on units are set to ``boost`` times their dissection threshold
            (the activation at the top quantile) (> 0).
        appear_share: in a region, a concept *appears* when its share of the region grows
            by at least this much (in (0, 1]).
        batch_size: latent codes per generator call (>= 1).

    Raises:
        ValueError: a setting out of range.

    Example:
        >>> settings = CausalSettings(units=10, random_draws=5).replace(seed=1)
    """

    units: int = 10
    random_draws: int = 3
    seed: int = 0
    boost: float = 1.0
    appear_share: float = 0.1
    batch_size: int = 64

    def __post_init__(self) -> None:
        for name in ("units", "random_draws", "batch_size"):
            check_positive_int(getattr(self, name), f"CausalSettings.{name}")
        object.__setattr__(self, "seed", check_seed(self.seed, "CausalSettings.seed"))
        check_positive_float(self.boost, "CausalSettings.boost")
        if not 0 < check_positive_float(self.appear_share, "CausalSettings.appear_share") <= 1:
            raise ValueError(f"CausalSettings.appear_share must lie in (0, 1], got {self.appear_share!r}.")


_DEFAULT = CausalSettings()


def _check_inputs(
    generator: nn.Module, layer: LayerSpec, latents: Tensor, result: DissectionResult, settings: CausalSettings
) -> str:
    name, _ = resolve_layer(generator, layer)
    check_latents(latents)
    if not isinstance(result, DissectionResult):
        raise TypeError(f"result must be the DissectionResult of the layer, got {type(result).__name__}.")
    if not isinstance(settings, CausalSettings):
        raise TypeError(f"settings must be a CausalSettings, got {type(settings).__name__}.")
    if settings.units > result.num_units:
        raise ValueError(f"CausalSettings.units is {settings.units} but the layer has {result.num_units} units.")
    return name


def render(
    generator: nn.Module, layer: LayerSpec, latents: Tensor, segmenter: nn.Module, batch_size: int, **change: Any
) -> Tuple[Tensor, Tensor]:
    """Generated images and their segmentations, with :func:`intervene` ``change`` if given.

    A per-image ``mask`` (N x H x W) is split along with the batches of latent codes.
    """
    images, masks = [], []
    for start in range(0, latents.shape[0], batch_size):
        local = dict(change)
        region = local.get("mask")
        if region is not None and region.dim() == 3 and region.shape[0] > 1:
            local["mask"] = region[start : start + batch_size]
        with intervene(generator, layer, **local) if local else contextlib.nullcontext():
            part = generate(generator, latents[start : start + batch_size], batch_size)
        images.append(part)
        masks.append(segment(segmenter, part, batch_size))
    return torch.cat(images), torch.cat(masks)


def _concept_areas(
    generator: nn.Module, layer: LayerSpec, latents: Tensor, segmenter: nn.Module, batch_size: int, **change: Any
) -> Tensor:
    return render(generator, layer, latents, segmenter, batch_size, **change)[1]


@dataclass
class AblationEffect(JsonFile):
    """Concept areas in generated images with a concept's top units, or random units, switched off.

    Attributes:
        layer: the layer whose units were switched off.
        concepts: the concepts measured.
        top_units: per concept, its top units by IoU.
        random_units: per concept, the random unit sets (``random_draws`` lists).
        area_before: per concept, its mean share of the image's pixels without intervention.
        area_top: per concept, that share with its top units off.
        area_random: per concept, that share with each random set off.
        num_images: generated images per measurement.
    """

    layer: str
    concepts: List[str]
    top_units: List[List[int]]
    random_units: List[List[List[int]]]
    area_before: np.ndarray
    area_top: np.ndarray
    area_random: np.ndarray
    num_images: int

    @property
    def removed_top(self) -> np.ndarray:
        """Per concept, the share of its area removed by switching off its top units."""
        return 1.0 - np.divide(
            self.area_top, self.area_before, out=np.ones_like(self.area_top), where=self.area_before > 0
        )

    @property
    def removed_random(self) -> np.ndarray:
        """Per concept, the share of its area removed by random units (mean over the draws)."""
        ratio = np.divide(
            self.area_random,
            self.area_before[:, None],
            out=np.ones_like(self.area_random),
            where=self.area_before[:, None] > 0,
        )
        return 1.0 - ratio.mean(1)

    def summary(self) -> Dict[str, float]:
        """Mean over concepts of the share removed by the top units and by random units."""
        return {"removed_top": float(self.removed_top.mean()), "removed_random": float(self.removed_random.mean())}

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict of every measurement and the unit sets."""
        return {
            "layer": self.layer,
            "concepts": list(self.concepts),
            "top_units": [list(u) for u in self.top_units],
            "random_units": [[list(u) for u in draws] for draws in self.random_units],
            "area_before": self.area_before.tolist(),
            "area_top": self.area_top.tolist(),
            "area_random": self.area_random.tolist(),
            "num_images": self.num_images,
        }

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> AblationEffect:
        """Rebuild an effect from :meth:`to_dict`'s output.

        Raises:
            ValueError: the dict is not an ablation effect.
        """
        keys = ("layer", "concepts", "top_units", "random_units", "area_before", "area_top", "area_random")
        check_keys(data, (*keys, "num_images"), "AblationEffect")
        count = len(data["concepts"])
        draws = len(data["random_units"][0]) if count else 0
        return cls(
            layer=str(data["layer"]),
            concepts=[str(c) for c in data["concepts"]],
            top_units=[[int(u) for u in units] for units in data["top_units"]],
            random_units=[[[int(u) for u in units] for units in row] for row in data["random_units"]],
            area_before=float_array(data["area_before"], (count,)),
            area_top=float_array(data["area_top"], (count,)),
            area_random=float_array(data["area_random"], (count, draws)),
            num_images=int(data["num_images"]),
        )


def ablation_effect(
    generator: nn.Module,
    layer: LayerSpec,
    latents: Tensor,
    segmenter: nn.Module,
    result: DissectionResult,
    concepts: Optional[Sequence[str]] = None,
    settings: CausalSettings = _DEFAULT,
) -> AblationEffect:
    """Switch off each concept's top units, and as many random units, and measure the concept's area.

    Args:
        generator: maps latent codes to images; left as found.
        layer: the dissected layer (module or dotted name).
        latents: N x ... latent codes.
        segmenter: maps images to concept ids (as in :func:`dissect_generator`); left as found.
        result: the :func:`dissect_generator` result of ``layer``.
        concepts: concept names to measure; default every concept of ``result`` present
            in the generated images.
        settings: how many units, random draws, the seed, the batch size.

    Returns:
        An :class:`AblationEffect`.

    Raises:
        ValueError: unknown layer or concept, more units than the layer has, no concept
            present in the generated images.
        TypeError: latents, result or settings of the wrong type.

    Example:
        >>> effect = ablation_effect(autoencoder.decoder, "relu1", latents, segmenter, result)
        >>> effect.summary()
    """
    name = _check_inputs(generator, layer, latents, result, settings)
    before = _concept_areas(generator, layer, latents, segmenter, settings.batch_size)
    if concepts is None:
        present = set(before.unique().tolist())
        chosen = [c for i, c in enumerate(result.concept_names) if i > 0 and i in present]
        if not chosen:
            raise ValueError("no concept of the dissection appears in the generated images.")
    else:
        chosen = [str(c) for c in concepts]
    tops, randoms, area_before, area_top, area_random = [], [], [], [], []
    for position, concept in enumerate(chosen):
        top = top_units(result, concept, settings.units)
        concept_id = result.concept_names.index(concept)
        rest = np.array([u for u in range(result.num_units) if u not in top])
        rng = np.random.default_rng([settings.seed, position])
        draws = [
            sorted(int(u) for u in rng.choice(rest, size=min(settings.units, rest.size), replace=False))
            for _ in range(settings.random_draws)
        ]
        tops.append(top)
        randoms.append(draws)
        area_before.append(float(concept_share(before, concept_id).mean()))
        masks = _concept_areas(generator, layer, latents, segmenter, settings.batch_size, units=top, scale=0.0)
        area_top.append(float(concept_share(masks, concept_id).mean()))
        area_random.append(
            [
                float(concept_share(_draw_off(generator, layer, latents, segmenter, settings, draw), concept_id).mean())
                for draw in draws
            ]
        )
    return AblationEffect(
        layer=name,
        concepts=chosen,
        top_units=tops,
        random_units=randoms,
        area_before=np.array(area_before),
        area_top=np.array(area_top),
        area_random=np.array(area_random).reshape(len(chosen), settings.random_draws),
        num_images=int(latents.shape[0]),
    )


def _draw_off(
    generator: nn.Module,
    layer: LayerSpec,
    latents: Tensor,
    segmenter: nn.Module,
    settings: CausalSettings,
    units: List[int],
) -> Tensor:
    if not units:  # every unit is a top unit: nothing random to switch off
        return _concept_areas(generator, layer, latents, segmenter, settings.batch_size)
    return _concept_areas(generator, layer, latents, segmenter, settings.batch_size, units=units, scale=0.0)


@dataclass
class InsertionEffect(JsonFile):
    """A concept's share of a region before and after switching its top units on there, per image.

    Attributes:
        layer: the layer whose units were switched on.
        concept: the concept.
        units: the units switched on.
        values: the activation each unit was set to.
        share_before: per image, the concept's share of the region's pixels before.
        share_after: per image, that share with the units on.
        on_object: per image, whether at least half of the region lay on the object (any
            concept in the segmentation) before the intervention, else on the ground.
        appear_share: the growth of the share that counts as the concept appearing.
    """

    layer: str
    concept: str
    units: List[int]
    values: List[float]
    share_before: np.ndarray
    share_after: np.ndarray
    on_object: np.ndarray
    appear_share: float

    @property
    def appeared(self) -> np.ndarray:
        """Per image, whether the concept's share of the region grew by ``appear_share`` or more."""
        return (self.share_after - self.share_before) >= self.appear_share

    def summary(self) -> Dict[str, Dict[str, float]]:
        """Per context (``"all"``, ``"object"``, ``"ground"``): images, mean shares before/after, appearance rate."""
        out: Dict[str, Dict[str, float]] = {}
        for context, keep in (
            ("all", np.ones_like(self.on_object)),
            ("object", self.on_object),
            ("ground", ~self.on_object),
        ):
            count = int(keep.sum())
            out[context] = {
                "images": float(count),
                "share_before": float(self.share_before[keep].mean()) if count else float("nan"),
                "share_after": float(self.share_after[keep].mean()) if count else float("nan"),
                "appeared": float(self.appeared[keep].mean()) if count else float("nan"),
            }
        return out

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict of the per-image measurements."""
        return {
            "layer": self.layer,
            "concept": self.concept,
            "units": list(self.units),
            "values": list(self.values),
            "share_before": self.share_before.tolist(),
            "share_after": self.share_after.tolist(),
            "on_object": self.on_object.astype(bool).tolist(),
            "appear_share": self.appear_share,
        }

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> InsertionEffect:
        """Rebuild an effect from :meth:`to_dict`'s output.

        Raises:
            ValueError: the dict is not an insertion effect.
        """
        keys = ("layer", "concept", "units", "values", "share_before", "share_after", "on_object", "appear_share")
        check_keys(data, keys, "InsertionEffect")
        count = len(data["share_before"])
        return cls(
            layer=str(data["layer"]),
            concept=str(data["concept"]),
            units=[int(u) for u in data["units"]],
            values=[float(v) for v in data["values"]],
            share_before=float_array(data["share_before"], (count,)),
            share_after=float_array(data["share_after"], (count,)),
            on_object=np.array(data["on_object"], dtype=bool).reshape(count),
            appear_share=float(data["appear_share"]),
        )


def check_region(region: Tensor, size: Tuple[int, int], count: int) -> Tensor:
    """Check a region (H x W or N x H x W bool at the images' resolution) and return it as bool.

    Raises:
        TypeError: not a bool tensor.
        ValueError: the wrong size, an empty region, or the wrong number of images.
    """
    if not isinstance(region, Tensor) or region.dtype != torch.bool:
        raise TypeError("region must be a bool tensor H x W or N x H x W at the images' resolution.")
    if region.dim() not in (2, 3) or tuple(region.shape[-2:]) != tuple(size):
        raise ValueError(f"region must be H x W or N x H x W with H x W = {tuple(size)}, got {tuple(region.shape)}.")
    if region.dim() == 3 and region.shape[0] not in (1, count):
        raise ValueError(f"region holds {region.shape[0]} masks for {count} images; pass one or one per image.")
    if not bool(region.flatten(-2).any(-1).all()):
        raise ValueError("region must mark at least one pixel (per image).")
    return region


def insertion_effect(
    generator: nn.Module,
    layer: LayerSpec,
    latents: Tensor,
    segmenter: nn.Module,
    result: DissectionResult,
    concept: str,
    region: Tensor,
    settings: CausalSettings = _DEFAULT,
) -> InsertionEffect:
    """Switch a concept's top units on inside a region and measure the concept's share of it.

    Each of the concept's top ``settings.units`` units is set to ``settings.boost`` times
    its dissection threshold at the layer positions covered by ``region``.

    Args:
        generator: maps latent codes to images; left as found.
        layer: the dissected layer (module or dotted name).
        latents: N x ... latent codes.
        segmenter: maps images to concept ids; left as found.
        result: the :func:`dissect_generator` result of ``layer``.
        concept: the concept to add.
        region: H x W (all images) or N x H x W bool region at the images' resolution.
        settings: how many units, the activation boost, what counts as appearing.

    Returns:
        An :class:`InsertionEffect`.

    Raises:
        ValueError: unknown layer or concept, more units than the layer has, a bad region.
        TypeError: latents, region, result or settings of the wrong type.

    Example:
        >>> region = torch.zeros(32, 32, dtype=torch.bool)
        >>> region[8:16, 8:16] = True
        >>> effect = insertion_effect(autoencoder.decoder, "relu1", latents, segmenter, result, "red", region)
        >>> effect.summary()["ground"]
    """
    name = _check_inputs(generator, layer, latents, result, settings)
    units = top_units(result, concept, settings.units)
    values = [settings.boost * float(result.thresholds[u]) for u in units]
    before = _concept_areas(generator, layer, latents, segmenter, settings.batch_size)
    region = check_region(region, (int(before.shape[2]), int(before.shape[3])), int(latents.shape[0]))
    after = _concept_areas(
        generator, layer, latents, segmenter, settings.batch_size, units=units, value=torch.tensor(values), mask=region
    )
    concept_id = result.concept_names.index(concept)
    on_object = concept_share((before > 0).long(), 1, region) >= 0.5
    return InsertionEffect(
        layer=name,
        concept=concept,
        units=units,
        values=values,
        share_before=concept_share(before, concept_id, region).numpy(),
        share_after=concept_share(after, concept_id, region).numpy(),
        on_object=on_object.numpy(),
        appear_share=settings.appear_share,
    )

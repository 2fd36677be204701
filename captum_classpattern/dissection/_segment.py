"""A segmenter for the procedural concept images: colours from the palette, the shape from a classifier.

Pixels are read the way the data are drawn: the ground is grey (a faint tint), the object one
saturated palette colour, so a saturated pixel belongs to the object and takes the nearest
palette colour. Each image holds one object, so its shape is one label for the whole image,
given by a classifier of the object's silhouette (the saturated pixels: the same for sharp
real images and smooth generated ones), and painted on the object's pixels. Masks use the
concept ids of :class:`ConceptDataset`, so generated and real images are segmented into the
same concepts.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn

from .._utils import check_images, check_positive_float, evaluation_mode
from ._batches import batches, parse_batch
from ._concepts import COLORS, SHAPES, TEXTURES


class ConceptSegmenter(nn.Module):
    """Per-pixel concept ids of concept images: a shape channel and a colour channel.

    Calling the segmenter on N x 3 x H x W images in [0, 1] returns N x 2 x H x W int64
    concept ids (the ids of :class:`ConceptDataset` with the same ``shapes``): channel 0
    the shape on the object's pixels (all 0 without a shape classifier), channel 1 the
    colour (0 on the grey ground). Textures are not segmented.

    Args:
        shape_net: optional classifier mapping silhouettes (N x 1 x H x W, 1 on the
            object, see :meth:`silhouettes`) to N x len(shapes) logits; it is kept in
            eval mode while segmenting.
        shapes: the shape names, as in the :class:`ConceptDataset` the net was trained on.
        min_saturation: a pixel whose channel range (max - min) reaches this is coloured.

    Raises:
        ValueError: unknown shapes or ``min_saturation`` not in (0, 1).
        TypeError: ``shape_net`` not an ``nn.Module``.

    Example:
        >>> segmenter = ConceptSegmenter()  # colours only
        >>> data = ConceptDataset(8, seed=0)
        >>> masks = segmenter(data.tensors()[0])
        >>> [data.concept_names[i] for i in masks[:, 1].unique().tolist()]
        ['-', 'red', 'green', 'blue', 'yellow']
    """

    palette: Tensor

    def __init__(
        self, shape_net: Optional[nn.Module] = None, shapes: Sequence[str] = SHAPES, min_saturation: float = 0.3
    ) -> None:
        super().__init__()
        if shape_net is not None and not isinstance(shape_net, nn.Module):
            raise TypeError(f"shape_net must be an nn.Module or None, got {type(shape_net).__name__}.")
        chosen = tuple(shapes)
        if not chosen or any(s not in SHAPES for s in chosen) or len(set(chosen)) != len(chosen):
            raise ValueError(f"shapes must be distinct names from {SHAPES}, got {shapes!r}.")
        check_positive_float(min_saturation, "min_saturation")
        if min_saturation >= 1:
            raise ValueError(f"min_saturation must lie in (0, 1), got {min_saturation!r}.")
        self.shape_net, self.shapes, self.min_saturation = shape_net, chosen, float(min_saturation)
        self.concept_names: List[str] = ["-", *chosen, *COLORS, *TEXTURES]
        self.concept_categories: List[Optional[str]] = (
            [None] + ["shape"] * len(chosen) + ["color"] * len(COLORS) + ["texture"] * len(TEXTURES)
        )
        self.register_buffer("palette", torch.tensor(list(COLORS.values()), dtype=torch.float32), persistent=False)

    def concept_id(self, concept: str) -> int:
        """The id of a shape or colour concept.

        Raises:
            ValueError: the segmenter does not produce ``concept``.
        """
        known = self.concept_names[1 : 1 + len(self.shapes) + len(COLORS)]
        if concept not in known:
            raise ValueError(f"the segmenter knows the concepts {known}, not {concept!r}.")
        return self.concept_names.index(concept)

    def silhouettes(self, images: Tensor) -> Tensor:
        """The object's pixels (saturation at least ``min_saturation``) as N x 1 x H x W floats (0 or 1).

        Raises:
            ValueError: images that are not N x 3 x H x W.
        """
        if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"images must be N x 3 x H x W RGB, got {shape}.")
        pixels = images.detach().float()
        return ((pixels.amax(1) - pixels.amin(1)) >= self.min_saturation).float()[:, None]

    def forward(self, images: Tensor) -> Tensor:
        """Concept ids N x 2 x H x W (shape, colour) of images N x 3 x H x W in [0, 1]."""
        silhouettes = self.silhouettes(images)
        pixels = images.detach().float()
        distance = ((pixels[:, None] - self.palette[None, :, :, None, None]) ** 2).sum(2)  # N x colours x H x W
        colour = distance.argmin(1) + 1 + len(self.shapes)
        masks = torch.zeros(images.shape[0], 2, *images.shape[2:], dtype=torch.long, device=images.device)
        on_object = silhouettes[:, 0] > 0
        masks[:, 1] = torch.where(on_object, colour, torch.zeros_like(colour))
        if self.shape_net is not None:
            with evaluation_mode(self.shape_net, "ConceptSegmenter", warn=False), torch.no_grad():
                shape = self.shape_net(silhouettes).argmax(1) + 1
            masks[:, 0] = on_object.long() * shape[:, None, None]
        return masks


def concept_share(masks: Tensor, concept: int, region: Optional[Tensor] = None) -> Tensor:
    """Per image, the share of pixels (of ``region``, if given) labelled ``concept`` in any channel.

    Args:
        masks: N x K x H x W concept ids.
        concept: the concept id.
        region: optional H x W or N x H x W bool region at the masks' resolution.

    Returns:
        N floats in [0, 1] (0 for an empty region).
    """
    hit = (masks == concept).any(1).double()
    if region is None:
        return hit.mean((1, 2))
    weights = region.to(hit.device).double().expand_as(hit)
    return (hit * weights).sum((1, 2)) / weights.sum((1, 2)).clamp_min(1.0)


def segmentation_iou(segmenter: nn.Module, data: Any, batch_size: int = 64) -> Dict[str, float]:
    """Pixel IoU of a segmenter's concepts against true concept masks, per concept.

    Args:
        segmenter: a :class:`ConceptSegmenter` (or any module returning N x K x H x W ids).
        data: a :class:`ConceptDataset`, a tuple ``(images, masks)`` of whole tensors, or
            batches as :func:`dissect` reads them. Mask channels beyond the segmenter's
            (the texture channel of a :class:`ConceptDataset`) are ignored.
        batch_size: images per call for a data set or tensors.

    Returns:
        ``{concept name: IoU}`` for every concept id the segmenter or the truth uses in
        the compared channels (ids are compared across channels, so each concept is
        scored where it lives).

    Raises:
        ValueError: empty data, or masks and predictions of different sizes.

    Example:
        >>> ious = segmentation_iou(ConceptSegmenter(), ConceptDataset(100, seed=5))
        >>> round(ious["red"], 2)
        1.0
    """
    names = list(getattr(segmenter, "concept_names", []))
    inter: Dict[int, int] = {}
    union: Dict[int, int] = {}
    seen = 0
    with evaluation_mode(segmenter, "segmentation_iou", warn=False), torch.no_grad():
        for index, raw in enumerate(batches(data, batch_size)):
            batch = parse_batch(raw, index)
            check_images(batch.images, "images")
            predicted = segmenter(batch.images)
            if predicted.shape[-2:] != batch.masks.shape[-2:]:
                raise ValueError(
                    f"the segmenter returns {tuple(predicted.shape[-2:])} masks for "
                    f"{tuple(batch.masks.shape[-2:])} true masks; they must match."
                )
            seen += batch.images.shape[0]
            masks = batch.masks[:, : predicted.shape[1]]
            ids = set(predicted.unique().tolist()) | set(masks.unique().tolist())
            for concept in sorted(i for i in ids if i > 0):
                ours, truth = (predicted == concept).any(1), (masks == concept).any(1)
                inter[concept] = inter.get(concept, 0) + int((ours & truth).sum())
                union[concept] = union.get(concept, 0) + int((ours | truth).sum())
    if not seen:
        raise ValueError("data is empty: pass at least one image with its masks.")
    return {_name(names, c): inter[c] / union[c] for c in sorted(union) if union[c]}


def _name(names: List[str], concept: int) -> str:
    return names[concept] if concept < len(names) else f"concept{concept}"

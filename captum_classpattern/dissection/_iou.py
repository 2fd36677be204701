"""The second pass of network dissection: integer intersection and area counts of the pooled IoU."""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from ._batches import DATA_CHANGED


class IoUCounts:
    """Integer counts per source (mask channel, or image-level labels) for pooled IoU.

    Args:
        units: units of the layer.
        concepts: concept ids, including 0 ("no concept").
        channels: mask channels (pixel-level categories).
        has_labels: whether the data carry image-level labels (one more source).
        device: where the counts live.
    """

    def __init__(self, units: int, concepts: int, channels: int, has_labels: bool, device: torch.device) -> None:
        sources = channels + int(has_labels)
        self.units, self.concepts, self.channels = units, concepts, channels
        self.inter = torch.zeros(sources, units * concepts, dtype=torch.long, device=device)
        self.unit_area = torch.zeros(sources, units, dtype=torch.long, device=device)
        self.concept_area = torch.zeros(sources, concepts, dtype=torch.long, device=device)

    def update(self, active: Tensor, masks: Tensor, labels: Optional[Tensor]) -> None:
        """Add one batch: ``active`` N x U x Hm x Wm bool, ``masks`` N x K x Hm x Wm ids.

        Raises:
            RuntimeError: a concept id beyond those of the first pass (the data changed).
        """
        image, unit, row, col = active.nonzero(as_tuple=True)
        active_total = active.sum((0, 2, 3))
        for channel in range(self.channels):
            ids = masks[:, channel]
            annotated = ids >= 0
            self.concept_area[channel] += torch.bincount(ids[annotated], minlength=self.concepts)[: self.concepts]
            if bool(annotated.all()):
                self.unit_area[channel] += active_total
            else:  # pixels without annotation in this category count for none of its concepts
                self.unit_area[channel] += (active & annotated[:, None]).sum((0, 2, 3))
            hit = ids[image, row, col]
            keep = hit > 0
            if keep.any() and int(hit.max()) >= self.concepts:
                raise RuntimeError(DATA_CHANGED)
            flat = unit[keep] * self.concepts + hit[keep]
            self.inter[channel] += torch.bincount(flat, minlength=self.inter.shape[1])
        if labels is not None:  # image-level concepts: the whole activated area intersects
            per_image = active.sum((2, 3)).double()  # N x U, exact integers in float64
            inter = per_image.t() @ labels.double()
            self.inter[self.channels] += inter.round().long().reshape(-1)
            self.unit_area[self.channels] += active_total
            pixels = active.shape[2] * active.shape[3]
            self.concept_area[self.channels] += labels.sum(0).long() * pixels

    def ious(self) -> Tuple[np.ndarray, np.ndarray]:
        """Per (unit, concept) IoU, each concept taken from the source where it appears most.

        Returns:
            The U x C IoUs (column 0 is 0) and each concept's source: its mask channel, the
            image labels (index ``channels``), or -1 for a concept that never occurred.
        """
        inter = self.inter.view(-1, self.units, self.concepts).cpu().numpy()
        unit_area = self.unit_area.cpu().numpy()
        concept_area = self.concept_area.cpu().numpy()
        source = concept_area.argmax(0)  # a concept is expected to belong to one category
        columns = np.arange(self.concepts)
        inter = inter[source, :, columns].T  # U x C
        union = unit_area[source].T + concept_area[source, columns][None, :] - inter
        ious = np.divide(inter, union, out=np.zeros(inter.shape), where=union > 0)
        ious[:, 0] = 0.0  # id 0 means "no concept"
        seen = concept_area.max(0) > 0
        return ious, np.where(seen, source, -1)

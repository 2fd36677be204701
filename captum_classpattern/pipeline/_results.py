"""The per-class results of a search in a compact, CPU-side form that ranks send and checkpoints store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Sequence

import torch
from torch import Tensor

from ..attr import Pattern
from ._report import ClassReport, SearchReport


@dataclass
class SearchOutcome:
    """Everything a search produced: the report and the tensors behind it.

    Attributes:
        report: per-class numbers.
        canvases: N x C x H x W canvases, one per class searched.
        maps: the learned maps, shaped like ``canvases``.
        patterns: the top-k pattern of each map.
    """

    report: SearchReport
    canvases: Tensor
    maps: Tensor
    patterns: List[Pattern]


@dataclass
class ClassResults:
    """The results of some classes: report rows, canvases, one channel of the maps, pattern masks.

    The maps are the same in every channel and a pattern's values are the canvas's values at
    its mask, so one channel of the maps and the masks rebuild the full outcome exactly.

    Attributes:
        rows: one report row per class.
        canvases: N x C x H x W canvases (CPU).
        maps: N x 1 x H x W maps (CPU).
        masks: N x H x W boolean pattern masks (CPU).
    """

    rows: List[ClassReport]
    canvases: Tensor
    maps: Tensor
    masks: Tensor

    @classmethod
    def from_outcome(cls, outcome: SearchOutcome) -> ClassResults:
        """The compact form of a search's outcome."""
        masks = torch.stack([pattern.mask for pattern in outcome.patterns]).cpu()
        return cls(list(outcome.report.classes), outcome.canvases.cpu(), outcome.maps[:, :1].cpu(), masks)

    def __len__(self) -> int:
        return len(self.rows)

    def pick(self, index: int) -> ClassResults:
        """The results of the ``index``-th class alone."""
        part = slice(index, index + 1)
        return ClassResults(self.rows[part], self.canvases[part], self.maps[part], self.masks[part])

    @classmethod
    def concatenate(cls, parts: Sequence[ClassResults]) -> ClassResults:
        """The parts one after another, in the given order."""
        return cls(
            [row for part in parts for row in part.rows],
            torch.cat([part.canvases for part in parts]),
            torch.cat([part.maps for part in parts]),
            torch.cat([part.masks for part in parts]),
        )

    def expand(self, device: torch.device) -> SearchOutcome:
        """The full outcome on ``device``: the maps repeated over channels, the patterns rebuilt."""
        canvases = self.canvases.to(device)
        maps = self.maps.to(device).expand_as(canvases).contiguous()
        masks = self.masks.to(device)
        zero = torch.zeros((), dtype=canvases.dtype, device=device)
        patterns = [Pattern(mask, torch.where(mask, canvas, zero)) for mask, canvas in zip(masks, canvases)]
        return SearchOutcome(SearchReport(list(self.rows)), canvases, maps, patterns)

    def to_dict(self) -> Dict[str, Any]:
        """A mapping of plain values and tensors, for :func:`torch.save` (loadable with ``weights_only``)."""
        return {
            "rows": [row.to_dict() for row in self.rows],
            "canvases": self.canvases,
            "maps": self.maps,
            "masks": self.masks,
        }

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> ClassResults:
        """Rebuild the results from :meth:`to_dict`'s mapping.

        Raises:
            ValueError: the mapping lacks an entry, or its tensors do not fit its rows.
        """
        missing = sorted({"rows", "canvases", "maps", "masks"} - set(data))
        if missing:
            raise ValueError(f"class results lack {missing}.")
        rows = [ClassReport.from_dict(entry) for entry in data["rows"]]
        tensors = [data[name] for name in ("canvases", "maps", "masks")]
        if not all(isinstance(t, Tensor) and len(t) == len(rows) for t in tensors):
            raise ValueError(f"class results hold {len(rows)} rows but tensors of other lengths.")
        return cls(rows, *tensors)

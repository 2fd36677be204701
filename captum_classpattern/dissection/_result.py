"""The result of network dissection: each unit's thresholds, IoUs, label and detector flag."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .._utils import JsonFile, check_choice, check_keys, float_array

_KEYS = (
    "layer",
    "quantile",
    "iou_threshold",
    "num_images",
    "mask_size",
    "concept_names",
    "concept_categories",
    "thresholds",
    "threshold_errors",
    "ious",
)


@dataclass
class DissectionResult(JsonFile):
    """The labels that network dissection gives the units of one layer.

    Attributes:
        layer: dotted name of the dissected layer.
        concept_names: name of each concept id; entry 0 stands for "no concept".
        concept_categories: category of each concept id (``None`` for entry 0 and for
            concepts that never occurred).
        thresholds: per-unit activation thresholds, float64, length U.
        ious: U x num_concepts pooled IoU of each unit with each concept (column 0 is 0).
        threshold_errors: per-unit bound on ``|threshold - exact threshold|``; 0 where the
            threshold is exact (always, unless the bounded-memory refinement ran out).
        quantile: the top quantile that set the thresholds.
        iou_threshold: the IoU a unit needs to count as a detector.
        num_images: images dissected.
        mask_size: ``(height, width)`` of the masks, the resolution of the IoU.
    """

    layer: str
    concept_names: List[str]
    concept_categories: List[Optional[str]]
    thresholds: np.ndarray
    ious: np.ndarray
    threshold_errors: np.ndarray
    quantile: float
    iou_threshold: float
    num_images: int
    mask_size: Tuple[int, int]

    @property
    def num_units(self) -> int:
        """Number of units (channels) of the layer."""
        return int(self.thresholds.shape[0])

    @property
    def unit_ious(self) -> np.ndarray:
        """Each unit's best IoU, length U."""
        return self.ious.max(1) if self.ious.shape[1] else np.zeros(self.num_units)

    @property
    def unit_concepts(self) -> List[Optional[str]]:
        """Each unit's best concept, ``None`` for units that overlap no concept at all."""
        best = self.ious.argmax(1)
        return [self.concept_names[c] if self.ious[u, c] > 0 else None for u, c in enumerate(best)]

    @property
    def unit_categories(self) -> List[Optional[str]]:
        """The category of each unit's best concept."""
        best = self.ious.argmax(1)
        return [self.concept_categories[c] if self.ious[u, c] > 0 else None for u, c in enumerate(best)]

    @property
    def is_detector(self) -> np.ndarray:
        """Boolean mask of the units whose best IoU reaches ``iou_threshold``."""
        return (self.unit_ious >= self.iou_threshold) & (self.unit_ious > 0)

    def rows(self) -> List[Dict[str, Any]]:
        """The per-unit table as dicts with keys unit, concept, category, iou, threshold, detector."""
        concepts, categories, ious = self.unit_concepts, self.unit_categories, self.unit_ious
        detector = self.is_detector
        return [
            {
                "unit": unit,
                "concept": concepts[unit],
                "category": categories[unit],
                "iou": float(ious[unit]),
                "threshold": float(self.thresholds[unit]),
                "detector": bool(detector[unit]),
            }
            for unit in range(self.num_units)
        ]

    def detectors(self, by: str = "concept") -> Dict[str, int]:
        """Count detector units per concept (or per category), most frequent first.

        Args:
            by: ``"concept"`` or ``"category"``.

        Returns:
            A dict from name to number of detector units.

        Raises:
            ValueError: ``by`` is neither ``"concept"`` nor ``"category"``.
        """
        key = check_choice(by, ("concept", "category"), "by")
        counts: Dict[str, int] = {}
        for row in self.rows():
            if row["detector"]:
                counts[row[key]] = counts.get(row[key], 0) + 1
        return dict(sorted(counts.items(), key=lambda item: (-item[1], str(item[0]))))

    def units_for(self, concept: str, detectors_only: bool = True) -> List[int]:
        """Units labelled ``concept``, highest IoU first.

        Args:
            concept: a concept name.
            detectors_only: keep only units whose IoU reaches ``iou_threshold``.

        Returns:
            Unit indices.

        Raises:
            ValueError: the concept is unknown.
        """
        if concept not in self.concept_names:
            raise ValueError(f"unknown concept {concept!r}; known: {', '.join(self.concept_names[1:])}.")
        rows = [r for r in self.rows() if r["concept"] == concept and (r["detector"] or not detectors_only)]
        return [r["unit"] for r in sorted(rows, key=lambda r: -r["iou"])]

    def table(self, units: Optional[Sequence[int]] = None, detectors_only: bool = False, sort_by: str = "unit") -> str:
        """A plain-text table of the units.

        Args:
            units: units to show (default all).
            detectors_only: show only detector units.
            sort_by: ``"unit"`` or ``"iou"`` (highest first).

        Returns:
            The table as a string.

        Raises:
            ValueError: ``sort_by`` is neither ``"unit"`` nor ``"iou"``.
        """
        check_choice(sort_by, ("unit", "iou"), "sort_by")
        rows = self.rows()
        if units is not None:
            rows = [rows[int(u)] for u in units]
        if detectors_only:
            rows = [r for r in rows if r["detector"]]
        if sort_by == "iou":
            rows = sorted(rows, key=lambda r: -r["iou"])
        lines = [f"{'unit':>5}  {'concept':<16} {'category':<12} {'iou':>6}  {'threshold':>10}  detector"]
        for r in rows:
            lines.append(
                f"{r['unit']:>5}  {str(r['concept'] or '-'):<16} {str(r['category'] or '-'):<12} "
                f"{r['iou']:>6.3f}  {r['threshold']:>10.4g}  {'yes' if r['detector'] else 'no'}"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        detectors = int(self.is_detector.sum())
        head = (
            f"Dissection of {self.layer!r}: {self.num_units} units, {detectors} detectors "
            f"(IoU >= {self.iou_threshold:g}), {self.num_images} images at {self.mask_size[0]}x{self.mask_size[1]}, "
            f"top quantile {self.quantile:g}"
        )
        return head + "\n" + self.table()

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict: settings, the per-unit table and the full IoU matrix."""
        return {
            "layer": self.layer,
            "quantile": self.quantile,
            "iou_threshold": self.iou_threshold,
            "num_images": self.num_images,
            "mask_size": list(self.mask_size),
            "concept_names": list(self.concept_names),
            "concept_categories": list(self.concept_categories),
            "units": self.rows(),
            "thresholds": self.thresholds.tolist(),
            "threshold_errors": self.threshold_errors.tolist(),
            "ious": self.ious.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> DissectionResult:
        """Rebuild a result from :meth:`to_dict`'s output.

        Raises:
            ValueError: the dict is not a dissection result.
        """
        check_keys(data, _KEYS, "DissectionResult")
        units = len(data["thresholds"])
        return cls(
            layer=data["layer"],
            concept_names=list(data["concept_names"]),
            concept_categories=list(data["concept_categories"]),
            thresholds=float_array(data["thresholds"]),
            ious=float_array(data["ious"], (units, len(data["concept_names"]))),
            threshold_errors=float_array(data["threshold_errors"]),
            quantile=float(data["quantile"]),
            iou_threshold=float(data["iou_threshold"]),
            num_images=int(data["num_images"]),
            mask_size=(int(data["mask_size"][0]), int(data["mask_size"][1])),
        )

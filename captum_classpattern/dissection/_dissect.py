"""Network dissection: which concept does each unit (channel) of a layer detect?

The method of Bau, Zhu, Strobelt, Lapedriza, Zhou and Torralba (PNAS 2020), METHOD.md §4:

1. per unit, a threshold at the top ``quantile`` of its activations over every pixel of every
   image, the activation maps being upsampled bilinearly to the masks' resolution first;
2. per unit and concept, the IoU of the thresholded maps with the concept's masks, pooled
   over the data set from integer counts: ``sum |A & M| / sum |A | M|``;
3. a unit's label is its best concept; it is a *detector* when that IoU reaches 0.04.

Everything streams one batch at a time, so memory is bounded by the batch, not the data set
(see :func:`dissect` for the one documented exception, the exact-threshold buffer).
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._utils import evaluation_mode, write_atomic
from ._hooks import LayerSpec, _Batch, _batches, _LayerTap, _Layout, _model_device, _parse_batch, _resolve_layer
from ._quantiles import _IoUCounts, _strictly_below, _TopQuantile

# ----------------------------------------------------------------------------------------
# The result
# ----------------------------------------------------------------------------------------


@dataclass
class DissectionResult:
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
        if by not in ("concept", "category"):
            raise ValueError(f"by must be 'concept' or 'category', got {by!r}.")
        key = "concept" if by == "concept" else "category"
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

    def table(self, units: Optional[Sequence[int]] = None, detectors_only: bool = False,
              sort_by: str = "unit") -> str:
        """A plain-text table of the units.

        Args:
            units: units to show (default all).
            detectors_only: show only detector units.
            sort_by: ``"unit"`` or ``"iou"`` (highest first).

        Returns:
            The table as a string.
        """
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
    def from_dict(cls, data: Dict[str, Any]) -> "DissectionResult":
        """Rebuild a result from :meth:`to_dict`'s output."""
        units = len(data["thresholds"])
        ious = np.asarray(data["ious"], dtype=np.float64).reshape(units, len(data["concept_names"]))
        return cls(
            layer=data["layer"],
            concept_names=list(data["concept_names"]),
            concept_categories=list(data["concept_categories"]),
            thresholds=np.asarray(data["thresholds"], dtype=np.float64),
            ious=ious,
            threshold_errors=np.asarray(data["threshold_errors"], dtype=np.float64),
            quantile=float(data["quantile"]),
            iou_threshold=float(data["iou_threshold"]),
            num_images=int(data["num_images"]),
            mask_size=(int(data["mask_size"][0]), int(data["mask_size"][1])),
        )

    def to_json(self, path: Union[str, os.PathLike]) -> None:
        """Write the result as JSON, atomically (a temporary file, then ``os.replace``).

        Args:
            path: the file to write; its folder is created if needed.
        """
        write_atomic(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def from_json(cls, path: Union[str, os.PathLike]) -> "DissectionResult":
        """Read a result written by :meth:`to_json`.

        Args:
            path: the JSON file.

        Returns:
            The :class:`DissectionResult`.
        """
        with open(path, encoding="utf-8") as stream:
            return cls.from_dict(json.load(stream))


# ----------------------------------------------------------------------------------------
# dissect()
# ----------------------------------------------------------------------------------------


def _check_settings(quantile: float, iou_threshold: float, batch_size: int, max_exact_values: int,
                    refine_bins: int, max_refine_passes: int, exact: Optional[bool]) -> None:
    if isinstance(quantile, bool) or not isinstance(quantile, (int, float)) or not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must lie in (0, 1), e.g. 0.005 for the top 0.5%, got {quantile!r}.")
    if isinstance(iou_threshold, bool) or not isinstance(iou_threshold, (int, float)) or not 0 <= iou_threshold <= 1:
        raise ValueError(f"iou_threshold must lie in [0, 1] (0.04 in the paper), got {iou_threshold!r}.")
    for name, value, least in (("batch_size", batch_size, 1), ("max_exact_values", max_exact_values, 0),
                               ("refine_bins", refine_bins, 2), ("max_refine_passes", max_refine_passes, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an int >= {least}, got {value!r}.")
    if exact not in (None, True, False):
        raise TypeError(f"exact must be None, True or False, got {exact!r}.")


def _concept_metadata(layout: _Layout, concept_names: Optional[Sequence[str]],
                      categories: Optional[Sequence[str]]) -> Tuple[int, List[str]]:
    count = max(layout.max_id + 1, layout.label_width or 0, 1)
    if concept_names is not None:
        names = [str(name) for name in concept_names]
        if len(names) < count:
            raise ValueError(
                f"the data uses concept ids up to {count - 1} but only {len(names)} concept_names were given; "
                "concept_names[i] names id i, and id 0 is 'no concept'."
            )
        count = len(names)
    else:
        names = ["-"] + [f"concept{i}" for i in range(1, count)]
    if layout.label_width is not None and layout.label_width != count:
        raise ValueError(f"image_labels have {layout.label_width} columns but there are {count} concepts.")
    if categories is not None and len(categories) != count:
        raise ValueError(f"categories must give one category per concept id ({count}), got {len(categories)}.")
    return count, names


def _progress(iterable: Iterable, desc: str, show: bool) -> Iterable:
    if not show:
        return iterable
    return tqdm(iterable, total=len(iterable) if hasattr(iterable, "__len__") else None, desc=desc, leave=False)


def dissect(
    model: nn.Module,
    layer: LayerSpec,
    data: Any,
    *,
    quantile: float = 0.005,
    iou_threshold: float = 0.04,
    concept_names: Optional[Sequence[str]] = None,
    categories: Optional[Sequence[str]] = None,
    device: Optional[Union[str, torch.device]] = None,
    batch_size: int = 64,
    show_progress: bool = False,
    exact: Optional[bool] = None,
    max_exact_values: int = 2**24,
    refine_bins: int = 2048,
    max_refine_passes: int = 3,
) -> DissectionResult:
    """Label each unit of ``layer`` with the concept it detects (network dissection).

    Pass 1 sets each unit's threshold at the top ``quantile`` of its activations over all
    pixels of all images, after bilinear upsampling (``align_corners=False``) to the masks'
    resolution; the value is ``numpy.quantile(values, 1 - quantile, method="hazen")``.
    Pass 2 counts, as integers, ``|A_u & M_k|``, ``|A_u|`` and ``|M_k|`` for every unit ``u``
    and concept ``k`` (``A_u``: pixels where the unit exceeds its threshold) and forms the
    pooled IoU ``inter / (|A_u| + |M_k| - inter)``.

    Thresholds are exact as long as the values that decide them fit in ``max_exact_values``:
    with ``exact=None`` pass 1 keeps all values while they fit (one extra copy of the
    upsampled activations, at most ``max_exact_values`` floats). Beyond that the data are read
    again: histogram passes (``refine_bins`` bins per unit, at most ``max_refine_passes``)
    narrow each unit's interval around the two order statistics it needs, then one pass
    keeps only the values inside those intervals and the result is exact again. Only when
    the refinement budget runs out first is a threshold interpolated inside its last bin;
    ``DissectionResult.threshold_errors`` then holds a strict per-unit bound on the error
    (the width of its last bin, typically about ``range / 2048**3`` with the defaults).
    Memory is bounded by the batch, the histograms (units x ``refine_bins``) and
    ``max_exact_values``, never by the size of the data set
    (``benchmarks/bench_dissection.py`` measures it).

    Masks use ids: 0 means no concept, negative values mark pixels not annotated for that
    category (they count for none of its concepts, as images without a category's labels do
    in NetDissect-Lite). Image-level concepts (scene, texture) come as multi-hot
    ``image_labels``; the whole activated area of an image counts as intersection and the
    whole image as the concept's area. Each concept is expected to belong to one category.

    Args:
        model: the network; its mode, parameters and buffers are left exactly as found
            (it runs in eval mode under ``torch.inference_mode`` and each submodule's
            training flag is restored, also on errors).
        layer: the layer to dissect, an ``nn.Module`` of ``model`` or its dotted name
            (``"features.relu4"``); its output must be N x C x H x W. Only the model's
            forward pass up to this layer runs.
        data: re-iterable batches ``(images, masks)`` or ``(images, masks, image_labels)``
            (a DataLoader or a list), a map-style ``Dataset`` of such items (batched with
            ``batch_size``), or a tuple of whole tensors. ``masks`` hold integer concept
            ids, N x Hm x Wm or N x K x Hm x Wm (K categories); ``image_labels`` is
            N x num_concepts. It is read twice (thresholds from the buffer, then IoU) or
            up to ``max_refine_passes + 3`` times, and must give the same data each time
            (no random augmentation; a change is detected in the refinement passes).
        quantile: top share of activations above each unit's threshold, in (0, 1).
        iou_threshold: IoU from which a unit counts as a detector.
        concept_names: name of each concept id (entry 0 names "no concept").
        categories: category of each concept id (same length as ``concept_names``);
            default: one category per mask channel (``"pixel"`` or ``"mask<k>"``) and
            ``"image"`` for image-level labels.
        device: where to run; default the model's device.
        batch_size: images per model call when ``data`` is a Dataset or a tuple of tensors.
        show_progress: show a tqdm progress bar per pass.
        exact: ``None`` (exact thresholds from one pass while the values fit, else the
            bounded-memory refinement), ``True`` (keep every value: exact, memory grows with
            the data), ``False`` (always the bounded-memory refinement).
        max_exact_values: most activation values kept in memory for exact thresholds.
        refine_bins: histogram bins per unit in a refinement pass.
        max_refine_passes: most histogram passes before thresholds are interpolated.

    Returns:
        A :class:`DissectionResult`.

    Raises:
        ValueError: unknown layer, a layer output that is not N x C x H x W, empty data,
            masks or labels whose shapes disagree, a setting out of range, non-finite
            activations.
        TypeError: a one-shot iterator as ``data``, batches of the wrong kind, masks that
            are not integer tensors.
        RuntimeError: the data changed between passes.

    Example:
        >>> data = ConceptDataset(200, seed=0)
        >>> result = dissect(model, "features.relu4", data, concept_names=data.concept_names,
        ...                  categories=data.concept_categories)
        >>> print(result.detectors())
    """
    _check_settings(quantile, iou_threshold, batch_size, max_exact_values, refine_bins, max_refine_passes, exact)
    name, module = _resolve_layer(model, layer)
    if isinstance(data, Iterator):
        raise TypeError(
            "data is a one-shot iterator (e.g. a generator); dissection reads the data several times: "
            "pass a DataLoader, a list of batches, a Dataset or a tuple of tensors."
        )
    run_on = _model_device(model, device)
    finder = _TopQuantile(quantile, exact, max_exact_values, refine_bins, max_refine_passes)
    layout = _Layout()

    def stream(desc: str, first: bool = False) -> Iterable[Tuple[_Batch, Tensor, bool]]:
        for index, raw in enumerate(_progress(_batches(data, batch_size), desc, show_progress)):
            batch = _parse_batch(raw, index)
            if batch.images.shape[0] == 0:
                continue
            features = tap.features(model, batch.images.to(run_on))
            if first:  # the first pass learns the layout and checks every batch against it
                layout.check(batch, features, index)
            size = tuple(batch.masks.shape[2:])
            values = features.float()
            if tuple(values.shape[2:]) != size:
                values = F.interpolate(values, size=size, mode="bilinear", align_corners=False)
            yield batch, values, values is not features

    with evaluation_mode(model, "dissect"), _LayerTap(module, name) as tap, torch.inference_mode():
        passes = 0
        while not finder.done:
            passes += 1
            for _, values, fresh in stream(f"Network dissection: thresholds ({passes})", first=passes == 1):
                finder.update(values.flatten(2), fresh)
            if layout.images == 0:
                raise ValueError("data is empty: dissect needs at least one batch of (images, masks).")
            finder.finish_pass()
        thresholds, errors = finder.thresholds()
        count, names = _concept_metadata(layout, concept_names, categories)
        cut = _strictly_below(thresholds, run_on)[None, :, None, None]
        counts = _IoUCounts(layout.units, count, layout.mask_channels, layout.label_width is not None, run_on)
        for batch, values, _ in stream("Network dissection: IoU"):
            labels = None if batch.labels is None else batch.labels.to(run_on)
            counts.update(values > cut, batch.masks.to(run_on), labels)
    ious, source = counts.ious()
    return DissectionResult(
        layer=name,
        concept_names=names,
        concept_categories=_categories(categories, source, layout.mask_channels),
        thresholds=thresholds,
        ious=ious,
        threshold_errors=errors,
        quantile=float(quantile),
        iou_threshold=float(iou_threshold),
        num_images=layout.images,
        mask_size=layout.mask_size,
    )


def _categories(categories: Optional[Sequence[str]], source: np.ndarray, channels: int) -> List[Optional[str]]:
    if categories is not None:
        return [None] + [str(c) for c in list(categories)[1:]]
    names = ["pixel"] if channels == 1 else [f"mask{k}" for k in range(channels)]
    names.append("image")
    return [None] + [names[s] if s >= 0 else None for s in source[1:]]


# ----------------------------------------------------------------------------------------
# Figure
# ----------------------------------------------------------------------------------------



"""Network dissection: which concept does each unit (channel) of a layer detect?

Per unit, a threshold at the top ``quantile`` of its activations over every pixel of every
image (the activation maps upsampled bilinearly to the masks' resolution first); per unit
and concept, the IoU of the thresholded maps with the concept's masks, pooled over the data
set from integer counts, ``sum |A & M| / sum |A | M|``; a unit's label is its best concept,
and it is a *detector* when that IoU reaches ``iou_threshold``. Everything streams one batch
at a time.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from functools import partial
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._utils import accepts_older_keywords, check_positive_int, evaluation_mode
from ._batches import Batch, Layout, batches, parse_batch
from ._hooks import LayerSpec, LayerTap, resolve_layer, run_device
from ._iou import IoUCounts
from ._quantiles import TopQuantile, strictly_below
from ._result import DissectionResult
from ._settings import (
    OLDER_DISSECTION_KEYWORDS,
    DissectionSettings,
    ThresholdSettings,
    check_dissection_settings,
    fold_dissection_keywords,
)

_DEFAULT_SETTINGS = DissectionSettings()


def _concept_metadata(
    layout: Layout, concept_names: Optional[Sequence[str]], categories: Optional[Sequence[str]]
) -> Tuple[int, List[str]]:
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
    return tqdm(iterable, total=len(iterable) if isinstance(iterable, Sized) else None, desc=desc, leave=False)


@accepts_older_keywords(OLDER_DISSECTION_KEYWORDS, fold_dissection_keywords)
def dissect(
    model: nn.Module,
    layer: LayerSpec,
    data: Any,
    settings: DissectionSettings = _DEFAULT_SETTINGS,
    *,
    concept_names: Optional[Sequence[str]] = None,
    categories: Optional[Sequence[str]] = None,
    device: Optional[Union[str, torch.device]] = None,
    batch_size: int = 64,
    show_progress: bool = False,
) -> DissectionResult:
    """Label each unit of ``layer`` with the concept it detects (network dissection).

    Pass 1 sets each unit's threshold at the top ``quantile`` of its activations over all
    pixels of all images, after bilinear upsampling (``align_corners=False``) to the masks'
    resolution; the value is ``numpy.quantile(values, 1 - quantile, method="hazen")``.
    Pass 2 counts, as integers, ``|A_u & M_k|``, ``|A_u|`` and ``|M_k|`` for every unit ``u``
    and concept ``k`` (``A_u``: pixels where the unit exceeds its threshold) and forms the
    pooled IoU ``inter / (|A_u| + |M_k| - inter)``.

    Thresholds are exact as long as the values that decide them fit in
    ``settings.thresholds.max_exact_values``: with ``exact=None`` pass 1 keeps all values
    while they fit (one extra copy of the upsampled activations, at most
    ``max_exact_values`` floats). Beyond that the data are read again: histogram passes
    (``refine_bins`` bins per unit, at most ``max_refine_passes``) narrow each unit's
    interval around the two order statistics it needs, then one pass keeps only the values
    inside those intervals and the result is exact again. Only when the refinement budget
    (``settings.thresholds``) runs out first is a threshold interpolated inside its last bin;
    ``DissectionResult.threshold_errors`` then holds a strict per-unit bound on the error
    (the width of its last bin, typically about ``range / 2048**3`` with the defaults).
    Memory is bounded by the batch, the histograms (units x ``refine_bins``) and
    ``max_exact_values``, never by the size of the data set.

    Masks use ids: 0 means no concept, negative values mark pixels not annotated for that
    category (they count for none of its concepts). Image-level concepts (scene, texture) come as multi-hot
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
        settings: the top ``quantile`` of activations above each unit's threshold, the
            ``iou_threshold`` from which a unit counts as a detector, and the thresholds'
            memory budget (:class:`DissectionSettings`); the older keywords
            ``quantile=``, ``iou_threshold=`` and ``threshold_settings=`` are still accepted.
        concept_names: name of each concept id (entry 0 names "no concept").
        categories: category of each concept id (same length as ``concept_names``);
            default: one category per mask channel (``"pixel"`` or ``"mask<k>"``) and
            ``"image"`` for image-level labels.
        device: where to run; default the model's device.
        batch_size: images per model call when ``data`` is a Dataset or a tuple of tensors.
        show_progress: show a tqdm progress bar per pass.

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
    settings = check_dissection_settings(settings)
    check_positive_int(batch_size, "batch_size")
    quantile, iou_threshold = settings.quantile, settings.iou_threshold
    name, module = resolve_layer(model, layer)
    _refuse_one_shot(data)
    run_on = run_device(model, device)
    finder = _threshold_finder(quantile, settings.thresholds)
    layout = Layout()
    with evaluation_mode(model, "dissect"), LayerTap(module, name) as tap, torch.inference_mode():
        stream = partial(_layer_values, model, tap, data, batch_size, run_on, show_progress)
        thresholds, errors = _find_thresholds(finder, stream, layout)
        count, names = _concept_metadata(layout, concept_names, categories)
        counts = _count_overlaps(stream, thresholds, layout, count, run_on)
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


def _refuse_one_shot(data: Any) -> None:
    """Refuse a one-shot iterator, which cannot be read the several times dissection needs."""
    if isinstance(data, Iterator):
        raise TypeError(
            "data is a one-shot iterator (e.g. a generator); dissection reads the data several times: "
            "pass a DataLoader, a list of batches, a Dataset or a tuple of tensors."
        )


def _threshold_finder(quantile: float, budget: ThresholdSettings) -> TopQuantile:
    """The per-unit top-``quantile`` threshold finder, within the memory budget of ``budget``."""
    return TopQuantile(quantile, budget.exact, budget.max_exact_values, budget.refine_bins, budget.max_refine_passes)


def _layer_values(
    model: nn.Module,
    tap: LayerTap,
    data: Any,
    batch_size: int,
    run_on: torch.device,
    show_progress: bool,
    desc: str,
    layout: Optional[Layout] = None,
) -> Iterator[Tuple[Batch, Tensor, bool]]:
    """One pass over the data: each batch, its layer's activations at mask resolution and whether they are a copy."""
    for index, raw in enumerate(_progress(batches(data, batch_size), desc, show_progress)):
        batch = parse_batch(raw, index)
        if batch.images.shape[0] == 0:
            continue
        features = tap.features(model, batch.images.to(run_on))
        if layout is not None:  # the first pass learns the layout and checks every batch against it
            layout.check(batch, features, index)
        size = tuple(batch.masks.shape[2:])
        values = features.float()
        if tuple(values.shape[2:]) != size:
            values = F.interpolate(values, size=size, mode="bilinear", align_corners=False)
        yield batch, values, values is not features


def _find_thresholds(
    finder: TopQuantile, stream: Callable[..., Iterator[Tuple[Batch, Tensor, bool]]], layout: Layout
) -> Tuple[np.ndarray, np.ndarray]:
    """Pass 1 and any refinement passes: each unit's threshold and its error bound (pass 1 learns ``layout``)."""
    passes = 0
    while not finder.done:
        passes += 1
        first = layout if passes == 1 else None
        for _, values, fresh in stream(f"Network dissection: thresholds ({passes})", first):
            finder.update(values.flatten(2), fresh)
        if layout.images == 0:
            raise ValueError("data is empty: dissect needs at least one batch of (images, masks).")
        finder.finish_pass()
    return finder.thresholds()


def _count_overlaps(
    stream: Callable[..., Iterator[Tuple[Batch, Tensor, bool]]],
    thresholds: np.ndarray,
    layout: Layout,
    count: int,
    run_on: torch.device,
) -> IoUCounts:
    """Pass 2: count each unit's thresholded area, each concept's area and their intersections."""
    cut = strictly_below(thresholds, run_on)[None, :, None, None]
    counts = IoUCounts(layout.units, count, layout.mask_channels, layout.label_width is not None, run_on)
    for batch, values, _ in stream("Network dissection: IoU"):
        labels = None if batch.labels is None else batch.labels.to(run_on)
        counts.update(values > cut, batch.masks.to(run_on), labels)
    return counts


def _categories(categories: Optional[Sequence[str]], source: np.ndarray, channels: int) -> List[Optional[str]]:
    first: List[Optional[str]] = [None]  # id 0, "no concept"
    if categories is not None:
        return first + [str(c) for c in list(categories)[1:]]
    names = ["pixel"] if channels == 1 else [f"mask{k}" for k in range(channels)]
    names.append("image")
    return first + [names[s] if s >= 0 else None for s in source[1:]]

"""The main job: search the patterns of several classes and measure them on held-out images."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Union

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .canvas import select_canvases
from .class_pattern import ClassPattern
from .data import Split
from .metrics import captum_attribution, floor_rate, predictive_power, random_pixel_power
from .pattern import Budget, Pattern, pixel_budget, top_k_pattern
from .report import ClassReport, SearchReport
from .schedule import SearchSchedule

DEFAULT_BASELINES = ("Saliency", "IntegratedGradients")


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


def search_classes(
    model: Callable,
    search: Split,
    held_out: Split,
    classes: Sequence[int],
    *,
    k: Budget = 0.05,
    class_names: Optional[Sequence[str]] = None,
    baselines: Sequence[str] = DEFAULT_BASELINES,
    schedule: Union[str, SearchSchedule, None] = None,
    canvas_strategy: str = "confident",
    seed: int = 0,
    show_progress: bool = True,
) -> SearchOutcome:
    """Search a pattern for every class in one batched call and measure it on held-out images.

    Canvases are chosen from the search split, patterns are searched on the search split,
    and every number in the report (predictive power, floor, random pixels, the Captum
    baselines' top-k pixels) is measured on ``held_out``.

    Args:
        model: the classifier (pixels in [0, 1] in, logits out); its device is used.
        search: images the canvases are chosen from and the patterns pasted onto.
        held_out: images the patterns are evaluated on.
        classes: the classes to search.
        k: pattern size (pixels, or a fraction of the image).
        class_names: names for the report.
        baselines: Captum methods whose top-k canvas pixels are measured the same way.
        schedule: the search schedule (see :class:`~captum_classpattern.SearchSchedule`).
        canvas_strategy: how canvases are chosen (see :func:`~captum_classpattern.select_canvases`).
        seed: seeds the search and the random-pixel chance level.
        show_progress: progress bars.

    Returns:
        A :class:`SearchOutcome`.
    """
    classes = [int(c) for c in classes]
    if not classes:
        raise ValueError("no classes to search.")
    device = next(iter(model.parameters())).device if hasattr(model, "parameters") else torch.device("cpu")
    search_images, search_labels = search.images.to(device), search.labels.to(device)
    eval_images, eval_labels = held_out.images.to(device), held_out.labels.to(device)
    canvases = select_canvases(model, search_images, search_labels, classes, canvas_strategy, seed=seed)
    maps = ClassPattern(model).attribute(
        canvases, target=classes, baselines=search_images, baseline_labels=search_labels,
        schedule=schedule, seed=seed, show_progress=show_progress,
    )
    count = pixel_budget(k, *canvases.shape[-2:])
    patterns, rows = [], []
    for i, cls in enumerate(tqdm(classes, desc="measuring patterns", disable=not show_progress)):
        pattern = top_k_pattern(maps[i], canvases[i], count)
        patterns.append(pattern)
        measured = {
            name: predictive_power(
                model, top_k_pattern(captum_attribution(model, name, canvases[i], cls), canvases[i], count),
                eval_images, eval_labels, cls,
            )
            for name in baselines
        }
        rows.append(ClassReport(
            class_=cls, k=count,
            predictive_power=predictive_power(model, pattern, eval_images, eval_labels, cls),
            floor=floor_rate(model, eval_images, eval_labels, cls),
            random=random_pixel_power(model, canvases[i], eval_images, eval_labels, cls, count, seed=seed),
            baselines=measured,
            name=None if class_names is None else str(class_names[cls]),
        ))
    return SearchOutcome(SearchReport(rows), canvases, maps, patterns)

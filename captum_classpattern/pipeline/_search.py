"""The main job: search the patterns of several classes and measure them on held-out images."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Union

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..attr import Budget, ClassPattern, Pattern, SearchSchedule, pixel_budget, select_canvases, top_k_pattern
from ..data import Split
from ..metrics import captum_attribution, floor_rate, predictive_power, random_pixel_power
from ._distributed import all_gather, init_distributed, shard, world
from ._report import ClassReport, SearchReport

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

    Under :mod:`torch.distributed` (launched with ``torchrun``, or a process group you
    initialised) the classes are split between the ranks, each rank searches and
    measures its share, and every rank returns the gathered outcome, the same as a
    single process computes with the same seed. A missing process group is created
    (see :func:`~captum_classpattern.pipeline.init_distributed`). Only rank 0 shows
    progress bars; let only rank 0 write files
    (:func:`~captum_classpattern.pipeline.is_main_process`).

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
        A :class:`SearchOutcome`, on every rank.

    Raises:
        ValueError: no classes, or bad settings. Under torch.distributed an error on one
            rank is raised on every rank (as a ``RuntimeError`` naming the rank when it is
            not a ``ValueError``/``TypeError``), so that no rank is left waiting.
    """
    classes = [int(c) for c in classes]
    if not classes:
        raise ValueError("no classes to search.")
    device = next(iter(model.parameters())).device if hasattr(model, "parameters") else torch.device("cpu")
    settings = dict(
        k=k, class_names=class_names, baselines=baselines, schedule=schedule, canvas_strategy=canvas_strategy, seed=seed
    )
    if not init_distributed(device):
        return _search_here(model, search, held_out, classes, device, show_progress=show_progress, **settings)
    rank, world_size = world()
    mine = shard(classes, rank, world_size)
    failure: Optional[Exception] = None
    try:
        local = (
            _search_here(model, search, held_out, mine, device, show_progress=show_progress and rank == 0, **settings)
            if mine
            else None
        )
        message: tuple = ("ok", None if local is None else _to_cpu(local))
    except Exception as error:  # the gather below still runs, so no rank is left waiting
        failure = error
        message = ("error", type(error).__name__, f"rank {rank}: {error}")
    gathered = all_gather(message)
    if failure is not None:
        raise failure
    for entry in gathered:
        if entry[0] == "error":
            raise _ERRORS.get(entry[1], RuntimeError)(entry[2])
    return _merge([entry[1] for entry in gathered if entry[1] is not None], device)


_ERRORS = {"ValueError": ValueError, "TypeError": TypeError, "FileNotFoundError": FileNotFoundError}


def _search_here(
    model,
    search: Split,
    held_out: Split,
    classes: List[int],
    device,
    *,
    k,
    class_names,
    baselines,
    schedule,
    canvas_strategy,
    seed,
    show_progress,
) -> SearchOutcome:
    """:func:`search_classes` for ``classes`` in this process alone."""
    search_images, search_labels = search.images.to(device), search.labels.to(device)
    eval_images, eval_labels = held_out.images.to(device), held_out.labels.to(device)
    canvases = select_canvases(model, search_images, search_labels, classes, canvas_strategy, seed=seed)
    maps = ClassPattern(model).attribute(
        canvases,
        target=classes,
        baselines=search_images,
        baseline_labels=search_labels,
        schedule=schedule,
        seed=seed,
        show_progress=show_progress,
    )
    count = pixel_budget(k, *canvases.shape[-2:])
    patterns, rows = [], []
    for i, cls in enumerate(tqdm(classes, desc="measuring patterns", disable=not show_progress)):
        pattern = top_k_pattern(maps[i], canvases[i], count)
        patterns.append(pattern)
        measured = {
            name: predictive_power(
                model,
                top_k_pattern(captum_attribution(model, name, canvases[i], cls), canvases[i], count),
                eval_images,
                eval_labels,
                cls,
            )
            for name in baselines
        }
        rows.append(
            ClassReport(
                class_=cls,
                k=count,
                predictive_power=predictive_power(model, pattern, eval_images, eval_labels, cls),
                floor=floor_rate(model, eval_images, eval_labels, cls),
                random=random_pixel_power(model, canvases[i], eval_images, eval_labels, cls, count, seed=seed),
                baselines=measured,
                name=None if class_names is None else str(class_names[cls]),
            )
        )
    return SearchOutcome(SearchReport(rows), canvases, maps, patterns)


def _to_cpu(outcome: SearchOutcome) -> tuple:
    """What a rank sends: CPU tensors, without what the receiver can rebuild exactly.

    The maps are the same in every channel and a pattern's values are the canvas's values
    at its mask, so one channel of the maps and the masks are enough.
    """
    masks = torch.stack([pattern.mask for pattern in outcome.patterns]).cpu()
    return outcome.report, outcome.canvases.cpu(), outcome.maps[:, :1].cpu(), masks


def _merge(parts: List[tuple], device) -> SearchOutcome:
    """One outcome from the ranks' shares, in rank order (= the caller's class order)."""
    rows = [row for report, _, _, _ in parts for row in report.classes]
    canvases = torch.cat([part[1] for part in parts]).to(device)
    maps = torch.cat([part[2] for part in parts]).to(device).expand_as(canvases).contiguous()
    masks = torch.cat([part[3] for part in parts]).to(device)
    zero = torch.zeros((), dtype=canvases.dtype, device=device)
    patterns = [Pattern(mask, torch.where(mask, canvas, zero)) for mask, canvas in zip(masks, canvases)]
    return SearchOutcome(SearchReport(rows), canvases, maps, patterns)

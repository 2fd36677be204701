"""The main job: search the patterns of several classes and measure them on held-out images."""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch
from tqdm.auto import tqdm

from .._utils import check_positive_int
from ..attr import Budget, ClassPattern, SearchSchedule, pixel_budget, select_canvases, top_k_pattern
from ..data import Split
from ..metrics import (
    Baselines,
    CaptumBaseline,
    captum_attribution,
    floor_rate,
    predictive_power,
    random_pixel_power,
    resolve_baselines,
)
from ._checkpoint import Checkpoints, build_manifest
from ._distributed import all_gather, init_distributed, main_process_first, shard, world
from ._report import ClassReport, SearchReport
from ._results import ClassResults, SearchOutcome

DEFAULT_BASELINES = ("Saliency", "IntegratedGradients")
DEFAULT_CHUNK_SIZE = 8
"""Classes searched per call when checkpointing and no ``chunk_size`` is given."""


def search_classes(
    model: Callable,
    search: Split,
    held_out: Split,
    classes: Sequence[int],
    *,
    k: Budget = 0.05,
    class_names: Optional[Sequence[str]] = None,
    baselines: Baselines = DEFAULT_BASELINES,
    schedule: Union[str, SearchSchedule, None] = None,
    canvas_strategy: str = "confident",
    seed: int = 0,
    show_progress: bool = True,
    checkpoint_dir: Union[str, os.PathLike, None] = None,
    chunk_size: Optional[int] = None,
    resume: bool = False,
) -> SearchOutcome:
    """Search a pattern for every class and measure it on held-out images.

    Canvases are chosen from the search split, patterns are searched on the search split,
    and every number in the report (predictive power, floor, random pixels, the Captum
    baselines' top-k pixels) is measured on ``held_out``. A class's result depends only on
    the seed, its class and the data, so searching the classes in chunks, on several
    processes or in a resumed run gives the same outcome as one uninterrupted call.

    With ``checkpoint_dir`` the classes are searched in chunks of ``chunk_size`` and each
    finished chunk is written to the folder at once (a file per chunk, next to a manifest of
    the run's settings, model and data); ``resume=True`` then loads the finished chunks of
    an interrupted run instead of searching them again. Without ``resume`` the folder's old
    checkpoints are deleted and the run starts afresh.

    Under :mod:`torch.distributed` (launched with ``torchrun``, or a process group you
    initialised) the classes are split between the ranks, each rank searches and
    measures its share (and checkpoints it), and every rank returns the gathered outcome,
    the same as a single process computes with the same seed. A missing process group is
    created (see :func:`~captum_classpattern.pipeline.init_distributed`). Only rank 0 shows
    progress bars; let only rank 0 write files
    (:func:`~captum_classpattern.pipeline.is_main_process`).

    Args:
        model: the classifier (pixels in [0, 1] in, logits out); its device is used.
        search: images the canvases are chosen from and the patterns pasted onto.
        held_out: images the patterns are evaluated on.
        classes: the classes to search.
        k: pattern size (pixels, or a fraction of the image).
        class_names: names for the report.
        baselines: Captum baselines whose top-k canvas pixels are measured the same way:
            method names (run with settings that suit images), ``captum.attr`` classes,
            attribution objects with your own settings (``NoiseTunnel(IntegratedGradients(model))``),
            callables ``f(inputs, target=...)``, :class:`~captum_classpattern.metrics.CaptumBaseline`
            objects (a name and keyword arguments), or a mapping display name -> any of these
            (see :func:`~captum_classpattern.metrics.resolve_baselines`). Each is a column of
            the report under its display name.
        schedule: the search schedule (see :class:`~captum_classpattern.SearchSchedule`).
        canvas_strategy: how canvases are chosen (see :func:`~captum_classpattern.select_canvases`).
        seed: seeds the search and the random-pixel chance level.
        show_progress: progress bars (with several chunks, one bar over the chunks).
        checkpoint_dir: a folder to checkpoint finished chunks into (default: none).
        chunk_size: classes searched per call (default: all at once, or
            :data:`DEFAULT_CHUNK_SIZE` with ``checkpoint_dir``); smaller chunks lose less
            work when a run is killed and use less memory.
        resume: load the finished chunks found in ``checkpoint_dir`` instead of searching
            them again.

    Returns:
        A :class:`SearchOutcome`, on every rank.

    Raises:
        TypeError: a baseline of none of the accepted forms, or one that returns no tensor.
        ValueError: no classes, bad settings, an unknown baseline name or two baselines with
            the same display name, a baseline whose attribution does not give one score per
            canvas pixel, ``resume`` without ``checkpoint_dir``, or checkpoints of another run
            (other settings, classes, baselines, model, data or package version) to resume.
            Under torch.distributed an error on one rank is raised on every rank (as a
            ``RuntimeError`` naming the rank when it is not a
            ``ValueError``/``TypeError``/``OSError``), so that no rank is left waiting.

    Example:
        >>> outcome = search_classes(model, data.search, data.eval, range(10), checkpoint_dir="ckpt")
        >>> # killed half-way? the same call with resume=True searches only what is missing
        >>> outcome = search_classes(model, data.search, data.eval, range(10), checkpoint_dir="ckpt", resume=True)
        >>> # compare with your own Captum settings too
        >>> smooth = CaptumBaseline(NoiseTunnel(Saliency(model)), attribute_kwargs=dict(nt_type="smoothgrad"))
        >>> outcome = search_classes(model, data.search, data.eval, range(10), baselines=["Saliency", smooth])
    """
    classes = [int(c) for c in classes]
    if not classes:
        raise ValueError("no classes to search.")
    if chunk_size is not None:
        check_positive_int(chunk_size, "chunk_size")
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs the checkpoint_dir of the run to resume.")
    resolved = resolve_baselines(baselines)
    device = next(iter(model.parameters())).device if hasattr(model, "parameters") else torch.device("cpu")
    settings: Dict[str, Any] = dict(
        k=k, class_names=class_names, baselines=resolved, schedule=schedule, canvas_strategy=canvas_strategy, seed=seed
    )
    several = init_distributed(device)
    if checkpoint_dir is None and chunk_size is None and not several:
        return _search_here(model, search, held_out, classes, device, show_progress=show_progress, **settings)
    rank, world_size = world() if several else (0, 1)
    mine = shard(range(len(classes)), rank, world_size)
    failure: Optional[Exception] = None
    try:
        store = None
        if checkpoint_dir is not None:
            store = Checkpoints(checkpoint_dir, build_manifest(model, search, held_out, classes, settings))
            with main_process_first():  # rank 0 sets the folder up before the others read it
                if rank == 0:
                    store.prepare(resume)
                elif resume:
                    store.check()
        size = chunk_size or (DEFAULT_CHUNK_SIZE if store is not None else len(classes))
        local = None
        if mine:
            local = _search_share(
                model,
                search,
                held_out,
                classes,
                mine,
                device,
                settings,
                size,
                store,
                resume,
                show_progress and rank == 0,
            )
        message: tuple = ("ok", local)
    except Exception as error:  # the gather below still runs, so no rank is left waiting
        failure = error
        message = ("error", type(error).__name__, f"rank {rank}: {error}")
    gathered = all_gather(message)
    if failure is not None:
        raise failure
    for entry in gathered:
        if entry[0] == "error":
            raise _ERRORS.get(entry[1], RuntimeError)(entry[2])
    return ClassResults.concatenate([entry[1] for entry in gathered if entry[1] is not None]).expand(device)


_ERRORS = {
    error.__name__: error
    for error in (ValueError, TypeError, OSError, FileNotFoundError, PermissionError, NotADirectoryError)
}


def _search_here(
    model,
    search: Split,
    held_out: Split,
    classes: List[int],
    device,
    *,
    k,
    class_names,
    baselines: List[CaptumBaseline],
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
            baseline.name: predictive_power(
                model,
                top_k_pattern(_class_attribution(model, baseline, canvases[i], cls, seed), canvases[i], count),
                eval_images,
                eval_labels,
                cls,
            )
            for baseline in baselines
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


def _class_attribution(model, baseline: CaptumBaseline, canvas, cls: int, seed: int):
    """A Captum baseline's attribution, its random draws (if any) seeded by the seed and the class.

    Stochastic Captum methods draw from the global generator; seeding it per class (and
    restoring it afterwards) keeps a class's result independent of the classes searched before
    it, so chunks, ranks and resumed runs agree (``NoiseTunnel`` noise included). The default
    methods draw nothing.
    """
    devices = [canvas.device] if canvas.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed * 1_000_003 + cls)
        return captum_attribution(model, baseline, canvas, cls)


def _chunks(positions: Sequence[int], size: int) -> List[List[int]]:
    """Runs of consecutive positions, cut into pieces of at most ``size``."""
    chunks: List[List[int]] = []
    for position in positions:
        if chunks and chunks[-1][-1] == position - 1 and len(chunks[-1]) < size:
            chunks[-1].append(position)
        else:
            chunks.append([position])
    return chunks


def _search_share(
    model,
    search: Split,
    held_out: Split,
    classes: List[int],
    positions: Sequence[int],
    device,
    settings: dict,
    chunk_size: int,
    store: Optional[Checkpoints],
    resume: bool,
    show_progress: bool,
) -> ClassResults:
    """The results of the classes at ``positions`` of ``classes``, chunk by chunk, checkpointed in ``store``."""
    search = Split(search.images.to(device), search.labels.to(device))
    held_out = Split(held_out.images.to(device), held_out.labels.to(device))
    done: Dict[int, ClassResults] = store.load(positions) if store is not None and resume else {}
    chunks = _chunks([position for position in positions if position not in done], chunk_size)
    several = len(chunks) > 1
    with tqdm(
        total=len(positions),
        initial=len(done),
        unit="class",
        desc="searching classes",
        disable=not (show_progress and several),
    ) as bar:
        for chunk in chunks:
            outcome = _search_here(
                model,
                search,
                held_out,
                [classes[position] for position in chunk],
                device,
                show_progress=show_progress and not several,
                **settings,
            )
            results = ClassResults.from_outcome(outcome)
            if store is not None:
                store.save(chunk[0], results)
            done.update((position, results.pick(index)) for index, position in enumerate(chunk))
            bar.update(len(chunk))
    return ClassResults.concatenate([done[position] for position in positions])

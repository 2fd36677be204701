"""The main job: search the patterns of several classes and measure them on held-out images."""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union, overload

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from .._utils import (
    accepts_older_keywords,
    channels_last_inputs,
    check_class_list,
    check_label_range,
    check_seed,
    check_sequence_length,
    evaluation_mode,
    num_classes_of,
    phase,
    thread_scope,
)
from ..attr import (
    Budget,
    ClassPattern,
    ForwardSettings,
    ImageStream,
    SearchSchedule,
    pixel_budget,
    select_canvases,
    top_k_pattern,
)
from ..data import Split
from ..metrics import (
    Baselines,
    CaptumBaseline,
    resolve_baselines,
)
from ._budget import PowerSample
from ._checkpoint import Checkpoints, build_manifest
from ._distributed import all_gather, init_distributed, main_process_first, shard, world
from ._measure import measure_on_sample, measure_on_split
from ._report import SearchReport
from ._results import ClassResults, SearchOutcome
from ._search_checks import Source, check_chunking, check_sources, refuse_meta
from ._settings import OLDER_SEARCH_KEYWORDS, Chunking, ClassSearchSettings, fold_search_keywords

DEFAULT_BASELINES = ("Saliency", "IntegratedGradients")
DEFAULT_CHUNK_SIZE = 8
"""Classes searched per call when checkpointing and no ``chunk_size`` is given."""

DEFAULT_FORWARD_BATCH = 256
"""The most composites per model call in a search on a :class:`~captum_classpattern.data.Split`.

An :class:`~captum_classpattern.attr.ImageStream` sets its own (its ``batch_size``). A step
with more composites (chunk size x the schedule's batch size) is split into several model
calls whose gradients are accumulated; below the cap nothing changes, bit for bit."""

_DEFAULT_SETTINGS = ClassSearchSettings()
_NO_CHUNKING = Chunking()


@accepts_older_keywords(OLDER_SEARCH_KEYWORDS, fold_search_keywords)
def search_classes(
    model: Callable,
    search: Source,
    held_out: Union[Source, PowerSample],
    classes: Sequence[int],
    settings: ClassSearchSettings = _DEFAULT_SETTINGS,
    *,
    class_names: Optional[Sequence[str]] = None,
    baselines: Baselines = DEFAULT_BASELINES,
    seed: int = 0,
    show_progress: bool = True,
    chunks: Chunking = _NO_CHUNKING,
) -> SearchOutcome:
    """Search a pattern for every class and measure it on held-out images.

    Canvases are chosen from the search split, patterns are searched on the search split,
    and every number in the report (predictive power, floor, random pixels, the Captum
    baselines' top-k pixels) is measured on ``held_out``. A class's result depends only on
    the seed, its class and the data, so searching the classes in chunks, on several
    processes or in a resumed run gives the same outcome as one uninterrupted call.

    Data that does not fit in memory (ImageNet) is passed as
    :class:`~captum_classpattern.attr.ImageStream` objects, read by DataLoaders with
    workers: the search on a stream gives the maps of the same images in a tensor, and a
    class's canvas is chosen among its own images only. Memory stays bounded whatever the
    chunk size: each search step sends at most the stream's ``batch_size`` composites (for
    a Split, :data:`DEFAULT_FORWARD_BATCH`) through the model at once, accumulating the
    gradients. Wrap ``held_out`` in a :class:`~captum_classpattern.pipeline.PowerSample` to
    measure on a seeded subsample of each class, several patterns per model call, with a
    confidence interval for every class's power (``ClassReport.power_interval``); a
    held-out stream is measured that way on all its images.

    With ``chunks.checkpoint_dir`` the classes are searched in chunks of ``chunks.chunk_size``
    and each finished chunk is written to the folder at once (a file per chunk, next to a
    manifest of the run's settings, model and data); ``resume=True`` then loads the finished
    chunks of an interrupted run instead of searching them again. Without ``resume`` the
    folder's old checkpoints are deleted and the run starts afresh.

    Under :mod:`torch.distributed` (launched with ``torchrun``, or a process group you
    initialised) the classes are split between the ranks, each rank searches and
    measures its share (and checkpoints it), and every rank returns the gathered outcome,
    the same as a single process computes with the same seed. A missing process group is
    created (see :func:`~captum_classpattern.pipeline.init_distributed`). Only rank 0 shows
    progress bars; let only rank 0 write files
    (:func:`~captum_classpattern.pipeline.is_main_process`).

    Args:
        model: the classifier (pixels in [0, 1] in, logits out); its device is used.
        search: images the canvases are chosen from and the patterns pasted onto: a
            :class:`~captum_classpattern.data.Split` or an
            :class:`~captum_classpattern.attr.ImageStream`.
        held_out: images the patterns are evaluated on: a Split, an ImageStream, or a
            :class:`~captum_classpattern.pipeline.PowerSample` of either.
        classes: the classes to search.
        settings: the pattern size ``k``, the search schedule and how canvases are chosen
            (:class:`~captum_classpattern.pipeline.ClassSearchSettings`).
        class_names: names for the report.
        baselines: Captum baselines whose top-k canvas pixels are measured the same way:
            method names (run with settings that suit images), ``captum.attr`` classes,
            attribution objects with your own settings (``NoiseTunnel(IntegratedGradients(model))``),
            callables ``f(inputs, target=...)``, :class:`~captum_classpattern.metrics.CaptumBaseline`
            objects (a name and keyword arguments), or a mapping display name -> any of these
            (see :func:`~captum_classpattern.metrics.resolve_baselines`). Each is a column of
            the report under its display name.
        seed: seeds the search and the random-pixel chance level.
        show_progress: progress bars (with several chunks, one bar over the chunks).
        chunks: the checkpoint folder, the chunk size and whether to resume
            (:class:`~captum_classpattern.pipeline.Chunking`; default: one chunk, no
            checkpoints).

    The older keywords ``k=``, ``schedule=``, ``canvas_strategy=`` (now in ``settings``),
    ``checkpoint_dir=``, ``chunk_size=`` and ``resume=`` (in ``chunks``) are still accepted.

    Returns:
        A :class:`SearchOutcome`, on every rank.

    Raises:
        TypeError: classes that are not int class indices, a baseline of none of the
            accepted forms, or one that returns no tensor; ``search`` or ``held_out`` of
            another type.
        ValueError: no classes, a repeated class, ``class_names`` without a name for every
            class, a seed outside 0..2**32 - 1, a model whose output carries no class signal
            (NaN, or fewer than two classes), labels the model cannot have, a
            ``checkpoint_dir`` that is a file, ``resume`` with a checkpoint folder whose
            manifest is missing or unreadable, bad settings, an unknown baseline name or two baselines with
            the same display name, a baseline whose attribution does not give one score per
            canvas pixel, ``resume`` without ``checkpoint_dir``, or checkpoints of another run
            (other settings, classes, baselines, model, data or package version) to resume.
            Under torch.distributed an error on one rank is raised on every rank (as a
            ``RuntimeError`` naming the rank when it is not a
            ``ValueError``/``TypeError``/``OSError``), so that no rank is left waiting.

    Example:
        >>> outcome = search_classes(model, data.search, data.eval, range(10), chunks=Chunking("ckpt"))
        >>> # killed half-way? the same call with resume=True searches only what is missing
        >>> outcome = search_classes(model, data.search, data.eval, range(10), chunks=Chunking("ckpt", resume=True))
        >>> # compare with your own Captum settings too
        >>> smooth = CaptumBaseline(NoiseTunnel(Saliency(model)), attribute_kwargs=dict(nt_type="smoothgrad"))
        >>> outcome = search_classes(model, data.search, data.eval, range(10), baselines=["Saliency", smooth])
        >>> # ImageNet: streamed folders, power on 10 images per class with its 95% interval
        >>> train = ImageStream(ImageFolder("imagenet/train", tf), num_workers=8, batch_size=256)
        >>> val = PowerSample(ImageStream(ImageFolder("imagenet/val", tf), num_workers=8), per_class=10)
        >>> outcome = search_classes(model, train, val, range(1000), chunks=Chunking("ckpt", chunk_size=64))
    """
    if not isinstance(settings, ClassSearchSettings):
        raise TypeError(f"settings must be a ClassSearchSettings, got {type(settings).__name__}.")
    if not isinstance(chunks, Chunking):
        raise TypeError(f"chunks must be a Chunking, got {type(chunks).__name__}.")
    k, schedule, canvas_strategy = settings.k, settings.schedule, settings.canvas_strategy
    checkpoint_dir, chunk_size, resume = chunks.checkpoint_dir, chunks.chunk_size, chunks.resume
    search, held_out = check_sources(search, held_out)
    classes = check_class_list(classes, "classes")
    check_sequence_length(class_names, max(classes) + 1, "class_names", f"classes include {max(classes)}")
    seed = check_seed(seed)
    k = int(k) if isinstance(k, np.integer) else k  # the manifest is JSON, which takes no NumPy ints
    refuse_meta(model, search, held_out)
    chunk_size = check_chunking(chunk_size, checkpoint_dir, resume)
    resolved = resolve_baselines(baselines)
    device = next(iter(model.parameters())).device if hasattr(model, "parameters") else torch.device("cpu")
    run: Dict[str, Any] = dict(
        k=k, class_names=class_names, baselines=resolved, schedule=schedule, canvas_strategy=canvas_strategy, seed=seed
    )
    several = init_distributed(device)
    if checkpoint_dir is None and chunk_size is None and not several:
        return _search_here(model, search, held_out, classes, device, show_progress=show_progress, **run)
    rank, world_size = world() if several else (0, 1)
    message, failure = _search_rank_share(
        model, search, held_out, classes, device, run, rank, world_size, chunk_size, checkpoint_dir, resume,
        show_progress,
    )  # fmt: skip
    return _gathered_outcome(message, failure, device)


_ERRORS = {
    error.__name__: error
    for error in (ValueError, TypeError, OSError, FileNotFoundError, PermissionError, NotADirectoryError)
}


def _search_rank_share(
    model: Callable,
    search: Source,
    held_out: Union[Split, PowerSample],
    classes: List[int],
    device: torch.device,
    settings: Dict[str, Any],
    rank: int,
    world_size: int,
    chunk_size: Optional[int],
    checkpoint_dir: Union[str, os.PathLike, None],
    resume: bool,
    show_progress: bool,
) -> Tuple[tuple, Optional[Exception]]:
    """This rank's share of the classes, searched chunk by chunk, as the message to gather (and its error, if any)."""
    mine = shard(range(len(classes)), rank, world_size)
    try:
        store = _open_store(checkpoint_dir, model, search, held_out, classes, settings, rank, resume)
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
        return ("ok", local), None
    except Exception as error:  # the gather still runs, so no rank is left waiting
        return ("error", type(error).__name__, f"rank {rank}: {error}"), error


def _open_store(
    checkpoint_dir: Union[str, os.PathLike, None],
    model: Callable,
    search: Source,
    held_out: Union[Split, PowerSample],
    classes: List[int],
    settings: Dict[str, Any],
    rank: int,
    resume: bool,
) -> Optional[Checkpoints]:
    """The run's checkpoint store (``None`` without a folder), set up by rank 0 before the other ranks read it."""
    if checkpoint_dir is None:
        return None
    store = Checkpoints(checkpoint_dir, build_manifest(model, search, held_out, classes, settings))
    with main_process_first():  # rank 0 sets the folder up before the others read it
        if rank == 0:
            store.prepare(resume)
        elif resume:
            store.check()
    return store


def _gathered_outcome(message: tuple, failure: Optional[Exception], device: torch.device) -> SearchOutcome:
    """Gather every rank's share: raise this rank's error or another rank's, else return the whole outcome."""
    gathered = all_gather(message)
    if failure is not None:
        raise failure
    for entry in gathered:
        if entry[0] == "error":
            raise _ERRORS.get(entry[1], RuntimeError)(entry[2])
    return ClassResults.concatenate([entry[1] for entry in gathered if entry[1] is not None]).expand(device)


@overload
def _on_device(data: Split, device: torch.device) -> Split: ...


@overload
def _on_device(data: ImageStream, device: torch.device) -> ImageStream: ...


@overload
def _on_device(data: PowerSample, device: torch.device) -> PowerSample: ...


def _on_device(
    data: Union[Split, ImageStream, PowerSample], device: torch.device
) -> Union[Split, ImageStream, PowerSample]:
    """A Split's tensors on ``device``; a stream (read batch by batch) or sample as it is."""
    return Split(data.images.to(device), data.labels.to(device)) if isinstance(data, Split) else data


def _search_maps(
    model: Callable,
    search: Source,
    classes: List[int],
    device: torch.device,
    schedule: Union[str, SearchSchedule, None],
    canvas_strategy: str,
    seed: int,
    show_progress: bool,
) -> Tuple[Tensor, Tensor, Tensor]:
    """The canvases, maps and tie-break scores of ``classes``, chosen and searched on ``search``."""
    baselines: Union[Tensor, ImageStream]
    with phase("canvas choice"):
        if isinstance(search, Split):
            canvases = select_canvases(model, search.images, search.labels, classes, canvas_strategy, seed=seed)
            baselines, labels, cap = search.images, search.labels, DEFAULT_FORWARD_BATCH
        else:
            _check_stream_labels(model, search, device)
            own = torch.nonzero(torch.isin(search.labels, torch.tensor(classes))).flatten()
            pool = search if canvas_strategy == "best_of_n" else search.subset(own)
            canvases = select_canvases(model, pool, None, classes, canvas_strategy, seed=seed).to(device)
            baselines, labels, cap = search, None, search.batch_size
    explainer = ClassPattern(model)
    with phase("search"):
        maps = explainer.attribute(
            canvases,
            target=classes,
            baselines=baselines,
            baseline_labels=labels,
            schedule=schedule,
            seed=seed,
            forward_settings=ForwardSettings(max_forward_batch=cap),
            show_progress=show_progress,
        )
    assert explainer.last_tie_break is not None  # set by every search
    return canvases, maps, explainer.last_tie_break


def _check_stream_labels(model: Callable, stream: ImageStream, device: torch.device) -> None:
    """Refuse a stream's labels that the model cannot have, checked on one image before the canvases are chosen.

    The canvases of a stream are chosen among each class's own images only, so a label the
    model cannot have would otherwise surface as a class "with no images".
    """
    head = stream.subset(range(1))
    head.num_workers = 0  # one image: read it here
    images, _ = next(iter(head.loader(batch_sampler=[[0]])))
    with evaluation_mode(model, "search_classes"):
        width = num_classes_of(model, images.to(device), who="search_classes")
    check_label_range(stream.labels, width, "the search stream's labels")


def _search_here(
    model: Callable,
    search: Source,
    held_out: Union[Split, PowerSample],
    classes: List[int],
    device: torch.device,
    *,
    k: Budget,
    class_names: Optional[Sequence[str]],
    baselines: List[CaptumBaseline],
    schedule: Union[str, SearchSchedule, None],
    canvas_strategy: str,
    seed: int,
    show_progress: bool,
) -> SearchOutcome:
    """:func:`search_classes` for ``classes`` in this process alone."""
    with thread_scope():  # the loops' thread counts hold for the work between their steps too
        model = channels_last_inputs(model)  # faster convolutions on a CPU; the caller's model is untouched
        search, held_out = _on_device(search, device), _on_device(held_out, device)
        canvases, maps, ties = _search_maps(
            model, search, classes, device, schedule, canvas_strategy, seed, show_progress
        )
        count = pixel_budget(k, *canvases.shape[-2:])
        patterns = [top_k_pattern(maps[i], canvases[i], count, tie_break=ties[i]) for i in range(len(classes))]
        names = [None if class_names is None else str(class_names[cls]) for cls in classes]
        if isinstance(held_out, PowerSample):
            forward_batch = search.batch_size if isinstance(search, ImageStream) else DEFAULT_FORWARD_BATCH
            rows = measure_on_sample(
                model, held_out, classes, canvases, patterns, count, baselines, names, seed, forward_batch
            )
            return SearchOutcome(SearchReport(rows), canvases, maps, patterns)
        rows = measure_on_split(
            model, held_out, classes, canvases, patterns, count, baselines, names, seed, show_progress
        )
        return SearchOutcome(SearchReport(rows), canvases, maps, patterns)


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
    model: Callable,
    search: Source,
    held_out: Union[Split, PowerSample],
    classes: List[int],
    positions: Sequence[int],
    device: torch.device,
    settings: dict,
    chunk_size: int,
    store: Optional[Checkpoints],
    resume: bool,
    show_progress: bool,
) -> ClassResults:
    """The results of the classes at ``positions`` of ``classes``, chunk by chunk, checkpointed in ``store``."""
    search, held_out = _on_device(search, device), _on_device(held_out, device)
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

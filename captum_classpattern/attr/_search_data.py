"""The search set: the other-class images a pattern is pasted onto, streamed in batches.

Three sources are accepted:

* a tensor (optionally with labels): every canvas gets its own shuffled stream of the
  images not of its class, in batches of exactly ``batch_size`` (the last batch of an
  epoch may be smaller), so the paper's schedule is reproduced exactly. The shuffle is
  seeded per target class, so a canvas sees the same batches whether it is searched
  alone or together with others.
* an :class:`ImageStream` (or a map-style dataset such as ``ImageFolder``): the same
  per-canvas streams as for a tensor of the same images, the rows of each step read by a
  DataLoader with workers, so the maps are those of the tensor and only a few steps'
  images are in memory at a time.
* an iterable of ``(images, labels)`` (a DataLoader): each of its batches is one step, and
  every canvas uses the images of that batch not of its class. Only one batch is held at
  a time, so memory does not grow with the search set.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, List, Optional, Protocol, Tuple, Union

import torch
from torch import Tensor
from torch.utils.data import Dataset, IterableDataset

from .._utils import check_images, check_label_range, check_labels, is_one_shot
from ._image_stream import ImageStream

BaselineSource = Union[Tensor, Iterable]


@dataclass
class StepBatch:
    """The images of one search step.

    Attributes:
        images: the baseline images of this step, one row per (canvas, image) pair.
        owner: for each row, the index of the canvas it is paired with.
        per_canvas: when every canvas has exactly this many rows, grouped in canvas order
            (canvas 0's rows first), the search can pair rows with canvases by reshaping
            instead of indexing; ``None`` otherwise.
    """

    images: Tensor
    owner: Tensor
    per_canvas: Optional[int] = None


StepPlan = Tuple[Tensor, Tensor, Optional[int], Tensor]
"""The rows of one search step: ``(index, owner, per_canvas, active)``."""


class SearchSet(Protocol):
    """What the search loop asks of a search set (it builds one from the ``baselines`` it is given).

    A tensor of images is read by a private search set with per-canvas streams;
    :class:`StreamSearchSet` and :class:`IterableSearchSet` are search sets too.
    """

    def planned_steps(self, epochs: Optional[int], steps: Optional[int]) -> Optional[Tensor]:
        """Steps per canvas (a 1-d tensor, an upper bound), or ``None`` when not known in advance."""

    def steps(self, epochs: Optional[int], steps: Optional[int]) -> Iterator[Tuple[StepBatch, Tensor]]:
        """Yield ``(batch, active)`` pairs; ``active`` marks the canvases updated this step."""


_CHECK_ELEMENTS = 1 << 18


def _check_in_slices(images: Tensor, name: str) -> None:
    """``check_images`` on a large tensor, a slice at a time.

    Checking the whole search set at once would allocate temporaries as large as the set
    itself (the finiteness test makes a copy), so the search's peak memory would grow
    with the search set. Slices of about 2**18 values keep those temporaries small.
    """
    if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[0] == 0:
        check_images(images, name)  # raises the usual error
        return
    rows = max(1, _CHECK_ELEMENTS // max(1, images[0].numel()))
    for start in range(0, images.shape[0], rows):
        check_images(images[start : start + rows], name)


def _rows(images: Tensor, index: Tensor) -> Tensor:
    """``images[index]`` along the first dimension.

    ``index_select`` rather than advanced indexing: on a CPU shared with other work the
    latter starts a thread pool for a handful of rows and can cost a thousand times more.
    """
    return images.index_select(0, index.to(images.device))


def _split_batch(batch: object) -> Tuple[Tensor, Optional[Tensor]]:
    if isinstance(batch, Tensor):
        return batch, None
    if isinstance(batch, (tuple, list)) and len(batch) >= 1 and isinstance(batch[0], Tensor):
        labels = check_labels(batch[0], batch[1], "baseline batch") if len(batch) > 1 else None
        return batch[0], labels
    raise TypeError(
        "each item of an iterable search set must be an image tensor or an (images, labels) pair, "
        f"got {type(batch).__name__}."
    )


class TensorSearchSet:
    """Per-canvas shuffled batches of other-class images drawn from an in-memory tensor.

    Canvases of the same class share one stream (it is seeded by the class, so their
    streams would be identical anyway): the index pools and the shuffling are held once
    per class, not once per canvas, which matters when many canvases of a few classes are
    searched together.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Optional[Tensor],
        targets: Tensor,
        batch_size: int,
        seed: int,
        num_classes: Optional[int] = None,
    ):
        _check_in_slices(images, "baselines")
        if labels is not None:
            labels = check_labels(images, labels, "baseline")
            if num_classes is not None:
                check_label_range(labels, num_classes, "baseline_labels")
        self.images = images
        self._plan_pools(images.shape[0], labels, targets, batch_size, seed)

    def _plan_pools(self, count: int, labels: Optional[Tensor], targets: Tensor, batch_size: int, seed: int) -> None:
        """One pool of other-class rows and one seed per class of the canvases."""
        self.batch_size = batch_size
        classes, self._stream_of = torch.unique(targets.reshape(-1).cpu(), return_inverse=True)
        self._pools: List[Tensor] = []
        self._seed_of: List[int] = []
        for target in classes.tolist():
            pool = torch.arange(count) if labels is None else torch.nonzero(labels.cpu() != target).flatten()
            if pool.numel() == 0:
                raise ValueError(
                    f"the search set is empty for class {target} once its own images are excluded: "
                    "pass images of other classes as baselines."
                )
            self._pools.append(pool)
            # Seeded by class so that a canvas's stream does not depend on its neighbours.
            self._seed_of.append(seed * 1_000_003 + target)

    def pool_sizes(self) -> List[int]:
        """Number of other-class images available to each canvas."""
        return [int(self._pools[s].numel()) for s in self._stream_of.tolist()]

    def planned_steps(self, epochs: Optional[int], steps: Optional[int]) -> Tensor:
        """The number of steps each canvas will take (a 1-d tensor, one entry per canvas)."""
        if steps is not None:
            return torch.full((self._stream_of.numel(),), int(steps))
        if epochs is None:
            raise ValueError("a search needs either epochs or steps.")
        return torch.tensor([epochs * -(-n // self.batch_size) for n in self.pool_sizes()])

    def _index_stream(self, stream: int, epochs: Optional[int]) -> Iterator[Tensor]:
        pool = self._pools[stream]
        generator = torch.Generator().manual_seed(self._seed_of[stream])
        epoch = 0
        carry = pool[:0]
        while epochs is None or epoch < epochs:
            order = pool[torch.randperm(pool.numel(), generator=generator)]
            if epochs is None:
                # Step-count schedules run across epoch boundaries with full batches.
                order = torch.cat([carry, order])
                full = (order.numel() // self.batch_size) * self.batch_size
                # Slices one at a time: split() would hold a view per batch of the whole
                # epoch, which grows with the search set.
                for start in range(0, full, self.batch_size):
                    yield order[start : start + self.batch_size]
                carry = order[full:]
            else:
                for start in range(0, order.numel(), self.batch_size):
                    yield order[start : start + self.batch_size]
            epoch += 1

    def plan(self, epochs: Optional[int], steps: Optional[int]) -> Iterator[StepPlan]:
        """The rows of every step, before any image is read: ``(index, owner, per_canvas, active)``."""
        count = self._stream_of.numel()
        streams = [self._index_stream(s, epochs) for s in range(len(self._pools))]
        # While every stream yields a full batch (always, for step-count schedules), the
        # pairing of rows with canvases does not change: build it once, not every step.
        full_owner = torch.arange(count).repeat_interleave(self.batch_size)
        all_active = torch.ones(count, dtype=torch.bool)
        # Streams are ordered by class; when that is the canvases' order, no reordering is needed.
        in_order = torch.equal(self._stream_of, torch.arange(count))
        chunks: List[Optional[Tensor]] = [None] * len(streams)
        step = 0
        while steps is None or step < steps:
            for s, stream in enumerate(streams):
                if chunks[s] is not None or step == 0:
                    chunks[s] = next(stream, None)
            if all(c is not None and c.numel() == self.batch_size for c in chunks):
                index = torch.stack([c for c in chunks if c is not None])
                if not in_order:
                    index = index.index_select(0, self._stream_of)
                yield index.reshape(-1), full_owner, self.batch_size, all_active
            else:
                partial = self._partial_plan(chunks)
                if partial is None:
                    break
                yield partial
            step += 1

    def _partial_plan(self, chunks: List[Optional[Tensor]]) -> Optional[StepPlan]:
        """The step's rows when some streams are shorter or finished (end of an epoch)."""
        indices, owners = [], []
        active = torch.zeros(self._stream_of.numel(), dtype=torch.bool)
        for canvas, s in enumerate(self._stream_of.tolist()):
            chunk = chunks[s]
            if chunk is None:
                continue
            indices.append(chunk)
            owners.append(torch.full((chunk.numel(),), canvas, dtype=torch.long))
            active[canvas] = True
        if not indices:
            return None
        return torch.cat(indices), torch.cat(owners), None, active

    def steps(self, epochs: Optional[int], steps: Optional[int]) -> Iterator[Tuple[StepBatch, Tensor]]:
        """Yield ``(batch, active)`` pairs; ``active`` marks the canvases updated this step."""
        for index, owner, per_canvas, active in self.plan(epochs, steps):
            yield StepBatch(_rows(self.images, index), owner, per_canvas), active


class StreamSearchSet(TensorSearchSet):
    """A tensor's per-canvas streams over an :class:`ImageStream`, read a step at a time.

    The rows of each step are exactly those the same images in a tensor would give (same
    seed, same indices); a DataLoader reads them, with the stream's workers, a few steps
    ahead, so only those steps' images are in memory.
    """

    def __init__(
        self,
        stream: ImageStream,
        targets: Tensor,
        shape: Tuple[int, ...],
        batch_size: int,
        seed: int,
        num_classes: Optional[int] = None,
    ):
        if num_classes is not None:
            check_label_range(stream.labels, num_classes, "the ImageStream's labels")
        self.stream = stream
        self.shape = shape
        self._plan_pools(len(stream), stream.labels, targets, batch_size, seed)

    def steps(self, epochs: Optional[int], steps: Optional[int]) -> Iterator[Tuple[StepBatch, Tensor]]:
        """Yield ``(batch, active)`` pairs, the images of each step read by the stream's DataLoader."""
        sampler = _StepIndices(self, epochs, steps)
        loaded = iter(self.stream.loader(batch_sampler=sampler))
        for (_, owner, per_canvas, active), (images, _) in zip(self.plan(epochs, steps), loaded):
            _check_in_slices(images, "baselines")
            if tuple(images.shape[1:]) != self.shape:
                raise ValueError(
                    f"baseline images are {tuple(images.shape[1:])} but canvases are {self.shape}: "
                    "resize them to the canvas size (e.g. in the dataset's transform)."
                )
            yield StepBatch(images, owner, per_canvas), active


class _StepIndices:
    """The row indices of each search step, as a DataLoader's ``batch_sampler``."""

    def __init__(self, search_set: TensorSearchSet, epochs: Optional[int], steps: Optional[int]) -> None:
        self.search_set, self.epochs, self.steps = search_set, epochs, steps

    def __iter__(self) -> Iterator[List[int]]:
        for index, _, _, _ in self.search_set.plan(self.epochs, self.steps):
            yield index.tolist()


class IterableSearchSet:
    """Batches of an iterable of ``(images, labels)``, each batch one step for all canvases."""

    def __init__(self, source: Iterable, targets: Tensor, shape: Tuple[int, ...], num_classes: Optional[int] = None):
        self.source = source
        self.targets = targets
        self.shape = shape
        self.num_classes = num_classes

    def planned_steps(self, epochs: Optional[int], steps: Optional[int]) -> Optional[Tensor]:
        """Steps per canvas if known in advance: ``steps``, or ``epochs`` times the source's length.

        A canvas skips the batches that hold only its own class, so this is an upper
        bound; ``None`` when the source has no length.
        """
        if steps is not None:
            total = int(steps)
        else:
            length = getattr(self.source, "__len__", None)
            if length is None:
                return None
            if epochs is None:
                raise ValueError("a search needs either epochs or steps.")
            total = epochs * int(length())
        return torch.full((self.targets.numel(),), max(1, total))

    def _check_batch(self, images: Tensor, labels: Optional[Tensor]) -> None:
        """Refuse a batch whose labels the model cannot have or whose images do not fit the canvases."""
        if labels is not None and self.num_classes is not None:
            check_label_range(labels, self.num_classes, "the search set's batch labels")
        check_images(images, "a baseline batch")
        if tuple(images.shape[1:]) != self.shape:
            raise ValueError(
                f"baseline images are {tuple(images.shape[1:])} but canvases are {self.shape}: "
                "resize them to the canvas size."
            )

    def steps(self, epochs: Optional[int], steps: Optional[int]) -> Iterator[Tuple[StepBatch, Tensor]]:
        """Yield ``(batch, active)`` pairs, passing over the source ``epochs`` times or until ``steps``."""
        step, epoch, warned = 0, 0, False
        seen = torch.zeros(self.targets.numel(), dtype=torch.long)
        one_shot = is_one_shot(self.source)
        if one_shot and epochs is not None and epochs > 1:
            raise ValueError(
                _one_shot_message(self.source, f"the schedule passes over it {epochs} times (epochs={epochs})")
            )
        while (epochs is None or epoch < epochs) and (steps is None or step < steps):
            produced = False
            if one_shot and epoch > 0:
                # A consumed iterator yields nothing: the search would stop early without a word.
                raise ValueError(
                    _one_shot_message(
                        self.source, f"the schedule needs {steps} steps and it ran out after {step}, one pass"
                    )
                )
            for batch in self.source:
                images, labels = _split_batch(batch)
                self._check_batch(images, labels)
                if labels is None:
                    if not warned:
                        warnings.warn(UNLABELLED, UserWarning, stacklevel=5)
                        warned = True
                    valid = torch.ones(self.targets.numel(), images.shape[0], dtype=torch.bool)
                else:
                    valid = labels.reshape(1, -1).cpu() != self.targets.reshape(-1, 1)
                owner, column = torch.nonzero(valid, as_tuple=True)
                if owner.numel() == 0:
                    continue
                produced = True
                seen += valid.sum(1)
                active = valid.any(1)
                # nonzero() lists canvas 0's images first, so a batch with no image to exclude is uniform.
                per_canvas = images.shape[0] if bool(valid.all()) else None
                yield StepBatch(_rows(images, column), owner, per_canvas), active
                step += 1
                if steps is not None and step >= steps:
                    break
            if not produced:
                break
            epoch += 1
        empty = torch.nonzero(seen == 0).flatten()
        if empty.numel():
            raise ValueError(
                f"the search set is empty for class {int(self.targets[empty[0]])} once its own images are "
                "excluded: pass images of other classes as baselines."
            )


def _one_shot_message(source: Any, why: str) -> str:
    return (
        f"baselines is a one-shot iterator ({type(source).__name__}) that yields its batches only once, but {why}: "
        "pass a DataLoader or a list of batches, which can be read again (or a schedule of one pass)."
    )


UNLABELLED = (
    "the search set has no labels, so each canvas's own class cannot be excluded from it (a pattern "
    "then also has to flip images that already show its class): pass baseline_labels=labels with a "
    "tensor of baselines, or a DataLoader that yields (images, labels). If the set holds no image of "
    "the canvases' classes, the warning can be ignored."
)

NO_SEARCH_SET = (
    "no search set: pass baselines=images of other classes (a tensor or a DataLoader of "
    "(images, labels)), or bind them once with ClassPattern(model, baselines=...)."
)


def make_search_set(
    baselines: Optional[BaselineSource],
    baseline_labels: Optional[Tensor],
    targets: Tensor,
    canvas_shape: Tuple[int, ...],
    batch_size: int,
    seed: int,
    num_classes: Optional[int] = None,
) -> SearchSet:
    """Wrap ``baselines`` in the right search-set class after checking it fits the canvases.

    A map-style dataset (with ``baseline_labels``, or labels of its own in ``targets``) is
    read as an :class:`ImageStream`; an :class:`ImageStream` becomes a
    :class:`StreamSearchSet`, whose steps are those of the same images in a tensor. With
    ``num_classes`` (the model's output width) every label is checked to be a class of the
    model: a label the model cannot have never equals a target, so the canvas's own class
    would silently stay in the search set.

    Raises:
        ValueError: the baselines are missing, empty, hold NaN or do not match the canvas
            shape, labels at or above ``num_classes``, or a tensor has a multiple of its
            labels' count of images (as when Captum's ``NoiseTunnel`` or ``sensitivity_max`` repeated it).
        TypeError: the baselines are neither a tensor nor an iterable of batches.

    Warns:
        UserWarning: a tensor search set without labels, or an iterable whose batches
            carry none: each canvas's own class cannot be excluded.
    """
    if baselines is None:
        raise ValueError(NO_SEARCH_SET)
    if isinstance(baselines, Dataset) and not isinstance(baselines, IterableDataset):
        baselines, baseline_labels = ImageStream(baselines, baseline_labels), None
    if isinstance(baselines, ImageStream):
        if baseline_labels is not None:
            raise ValueError("an ImageStream carries its own labels: pass them to ImageStream, not as baseline_labels.")
        return StreamSearchSet(baselines, targets, tuple(canvas_shape), batch_size, seed, num_classes)
    if baseline_labels is not None and isinstance(baselines, tuple) and len(baselines) == 1:
        baselines = baselines[0]  # Captum's 1-tuple form of one tensor, as its wrappers pass it on
    if isinstance(baselines, Tensor):
        if baselines.dim() != 4 or tuple(baselines.shape[1:]) != tuple(canvas_shape):
            raise ValueError(
                f"baselines must be M x {' x '.join(map(str, canvas_shape))} like the canvases, "
                f"got {tuple(baselines.shape)}."
            )
        if baseline_labels is not None:
            _refuse_repeated_baselines(baselines, baseline_labels)
        search_set = TensorSearchSet(baselines, baseline_labels, targets, batch_size, seed, num_classes)
        if baseline_labels is None:
            warnings.warn(UNLABELLED, UserWarning, stacklevel=4)
        return search_set
    if isinstance(baselines, (str, bytes)) or not hasattr(baselines, "__iter__"):
        raise TypeError(
            "baselines must be a tensor of images or an iterable (e.g. DataLoader) of (images, labels), "
            f"got {type(baselines).__name__}."
        )
    if baseline_labels is not None:
        raise ValueError("baseline_labels is only used with a tensor of baselines; a DataLoader yields its own labels.")
    return IterableSearchSet(baselines, targets, tuple(canvas_shape), num_classes)


def _refuse_repeated_baselines(baselines: Tensor, labels: Any) -> None:
    """Explain a search set that a Captum wrapper repeated (NoiseTunnel, sensitivity_max).

    The wrappers expand a ``baselines`` tensor with as many images as the inputs, as they
    would a per-input baseline, but not ``baseline_labels``; the search set then has a
    multiple of the labels' count of images.
    """
    try:
        count = len(labels)
    except TypeError:
        return
    if 0 < count < baselines.shape[0] and baselines.shape[0] % count == 0:
        raise ValueError(
            f"the search set has {baselines.shape[0]} images but {count} baseline_labels "
            f"({baselines.shape[0] // count} times as many): Captum's NoiseTunnel and sensitivity_max repeat a "
            "baselines tensor that has as many images as the inputs. Under such a wrapper, bind the search set "
            "in the constructor instead: ClassPattern(model, baselines=images, baseline_labels=labels). "
            "Otherwise, give one label per image."
        )

"""The search set: the other-class images a pattern is pasted onto, streamed in batches.

Two sources are accepted:

* a tensor (optionally with labels): every canvas gets its own shuffled stream of the
  images not of its class, in batches of exactly ``batch_size`` (the last batch of an
  epoch may be smaller), so the paper's schedule is reproduced exactly. The shuffle is
  seeded per target class, so a canvas sees the same batches whether it is searched
  alone or together with others.
* an iterable of ``(images, labels)`` (a DataLoader): each of its batches is one step, and
  every canvas uses the images of that batch not of its class. Only one batch is held at
  a time, so memory does not grow with the search set.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, List, Optional, Tuple, Union

import torch
from torch import Tensor

from ._helpers import check_images

BaselineSource = Union[Tensor, Iterable]


@dataclass
class StepBatch:
    """The images of one search step.

    Attributes:
        images: the baseline images of this step, one row per (canvas, image) pair.
        owner: for each row, the index of the canvas it is paired with.
    """

    images: Tensor
    owner: Tensor


def _split_batch(batch) -> Tuple[Tensor, Optional[Tensor]]:
    if isinstance(batch, Tensor):
        return batch, None
    if isinstance(batch, (tuple, list)) and len(batch) >= 1 and isinstance(batch[0], Tensor):
        labels = batch[1] if len(batch) > 1 else None
        if labels is not None and not isinstance(labels, Tensor):
            labels = torch.as_tensor(labels)
        return batch[0], labels
    raise TypeError(
        "each item of an iterable search set must be an image tensor or an (images, labels) pair, "
        f"got {type(batch).__name__}."
    )


class TensorSearchSet:
    """Per-canvas shuffled batches of other-class images drawn from an in-memory tensor."""

    def __init__(self, images: Tensor, labels: Optional[Tensor], targets: Tensor, batch_size: int, seed: int):
        check_images(images, "baselines")
        if labels is not None:
            labels = torch.as_tensor(labels).reshape(-1).cpu()
            if labels.numel() != images.shape[0]:
                raise ValueError(f"baseline_labels has {labels.numel()} entries for {images.shape[0]} baseline images.")
        self.images = images
        self.batch_size = batch_size
        self._pools: List[Tensor] = []
        self._seed_of: List[int] = []
        for target in targets.tolist():
            pool = torch.arange(images.shape[0]) if labels is None else torch.nonzero(labels != target).flatten()
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
        return [int(p.numel()) for p in self._pools]

    def _index_stream(self, canvas: int, epochs: Optional[int]) -> Iterator[Tensor]:
        pool = self._pools[canvas]
        generator = torch.Generator().manual_seed(self._seed_of[canvas])
        epoch = 0
        carry = pool[:0]
        while epochs is None or epoch < epochs:
            order = pool[torch.randperm(pool.numel(), generator=generator)]
            if epochs is None:
                # Step-count schedules run across epoch boundaries with full batches.
                order = torch.cat([carry, order])
                full = (order.numel() // self.batch_size) * self.batch_size
                for start in range(0, full, self.batch_size):
                    yield order[start:start + self.batch_size]
                carry = order[full:]
            else:
                for start in range(0, order.numel(), self.batch_size):
                    yield order[start:start + self.batch_size]
            epoch += 1

    def steps(self, epochs: Optional[int], steps: Optional[int]) -> Iterator[Tuple[StepBatch, Tensor]]:
        """Yield ``(batch, active)`` pairs; ``active`` marks the canvases updated this step."""
        streams = [self._index_stream(i, epochs) for i in range(len(self._pools))]
        alive = [True] * len(streams)
        step = 0
        while any(alive) and (steps is None or step < steps):
            indices, owners = [], []
            for canvas, stream in enumerate(streams):
                if not alive[canvas]:
                    continue
                chunk = next(stream, None)
                if chunk is None:
                    alive[canvas] = False
                    continue
                indices.append(chunk)
                owners.append(torch.full((chunk.numel(),), canvas, dtype=torch.long))
            if not indices:
                break
            index = torch.cat(indices)
            owner = torch.cat(owners)
            active = torch.zeros(len(streams), dtype=torch.bool)
            active[owner.unique()] = True
            yield StepBatch(self.images[index], owner), active
            step += 1


class IterableSearchSet:
    """Batches of an iterable of ``(images, labels)``, each batch one step for all canvases."""

    def __init__(self, source: Iterable, targets: Tensor, shape: Tuple[int, ...]):
        self.source = source
        self.targets = targets
        self.shape = shape

    def steps(self, epochs: Optional[int], steps: Optional[int]) -> Iterator[Tuple[StepBatch, Tensor]]:
        """Yield ``(batch, active)`` pairs, passing over the source ``epochs`` times or until ``steps``."""
        step, epoch = 0, 0
        seen = torch.zeros(self.targets.numel(), dtype=torch.long)
        while (epochs is None or epoch < epochs) and (steps is None or step < steps):
            produced = False
            for batch in self.source:
                images, labels = _split_batch(batch)
                check_images(images, "a baseline batch")
                if tuple(images.shape[1:]) != self.shape:
                    raise ValueError(
                        f"baseline images are {tuple(images.shape[1:])} but canvases are {self.shape}: "
                        "resize them to the canvas size."
                    )
                if labels is None:
                    valid = torch.ones(self.targets.numel(), images.shape[0], dtype=torch.bool)
                else:
                    valid = labels.reshape(1, -1).cpu() != self.targets.reshape(-1, 1)
                owner, column = torch.nonzero(valid, as_tuple=True)
                if owner.numel() == 0:
                    continue
                produced = True
                seen += valid.sum(1)
                active = valid.any(1)
                yield StepBatch(images[column.to(images.device)], owner), active
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


def make_search_set(
    baselines: BaselineSource,
    baseline_labels: Optional[Tensor],
    targets: Tensor,
    canvas_shape: Tuple[int, ...],
    batch_size: int,
    seed: int,
):
    """Wrap ``baselines`` in the right search-set class after checking it fits the canvases.

    Raises:
        ValueError: the baselines are missing, empty, hold NaN or do not match the canvas shape.
        TypeError: the baselines are neither a tensor nor an iterable of batches.
    """
    if baselines is None:
        raise ValueError(
            "no search set: pass baselines=images of other classes (a tensor or a DataLoader of "
            "(images, labels)), or bind them once with ClassPattern(model, baselines=...)."
        )
    if isinstance(baselines, Tensor):
        if baselines.dim() != 4 or tuple(baselines.shape[1:]) != tuple(canvas_shape):
            raise ValueError(
                f"baselines must be M x {' x '.join(map(str, canvas_shape))} like the canvases, "
                f"got {tuple(baselines.shape)}."
            )
        return TensorSearchSet(baselines, baseline_labels, targets, batch_size, seed)
    if isinstance(baselines, (str, bytes)) or not hasattr(baselines, "__iter__"):
        raise TypeError(
            "baselines must be a tensor of images or an iterable (e.g. DataLoader) of (images, labels), "
            f"got {type(baselines).__name__}."
        )
    if baseline_labels is not None:
        raise ValueError("baseline_labels is only used with a tensor of baselines; a DataLoader yields its own labels.")
    return IterableSearchSet(baselines, targets, tuple(canvas_shape))

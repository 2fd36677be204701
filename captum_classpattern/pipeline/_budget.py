"""Predictive power at a budget: a seeded held-out subsample, several patterns per model call, an interval.

Measuring every class's pattern on every other-class held-out image costs classes x
images forward passes (about 50 million for ImageNet's validation set). A
:class:`PowerSample` measures on ``per_class`` images of each class instead, the same
images for every pattern, stamps several patterns onto each batch in one model call, and
reports each power with its Wilson confidence interval.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from .._utils import check_label_range, check_positive_int, evaluation_mode, output_width, tuned_threads
from ..attr import ImageStream, Pattern
from ..data import Split

HeldOut = Union[Split, ImageStream]
"""Held-out images: a :class:`~captum_classpattern.data.Split` or an :class:`~captum_classpattern.attr.ImageStream`."""

DEFAULT_PATTERNS_PER_FORWARD = 8


@dataclass(frozen=True)
class PowerSample:
    """Held-out images measured at a budget: ``per_class`` seeded images of each class.

    Pass it as ``held_out`` to :func:`~captum_classpattern.pipeline.search_classes`. The
    subsample is drawn once (per class, seeded by ``seed`` and the class), so every
    pattern of every class is measured on the same images, whichever chunk or process
    measures it. Each class's power is reported with its ``confidence`` interval
    (:func:`~captum_classpattern.metrics.wilson_interval`) and the number of images
    measured.

    Attributes:
        data: the held-out images (a :class:`~captum_classpattern.data.Split` or an
            :class:`~captum_classpattern.attr.ImageStream`).
        per_class: images drawn from each class; ``None`` measures on all of them (still
            with several patterns per model call and the interval).
        patterns_per_forward: patterns stamped onto each batch of images in one model
            call.
        confidence: coverage of the reported intervals, in (0, 1).
        seed: seeds the subsample.

    Raises:
        TypeError: ``data`` is neither a Split nor an ImageStream.
        ValueError: a setting out of range.

    Example:
        >>> budget = PowerSample(ImageStream(ImageFolder("imagenet/val", tf), num_workers=8), per_class=10)
        >>> outcome = search_classes(model, search, budget, range(1000), checkpoint_dir="ckpt")
        >>> outcome.report.classes[0].power_interval
    """

    data: HeldOut
    per_class: Optional[int] = None
    patterns_per_forward: int = DEFAULT_PATTERNS_PER_FORWARD
    confidence: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.data, (Split, ImageStream)):
            raise TypeError(f"PowerSample.data must be a Split or an ImageStream, got {type(self.data).__name__}.")
        if self.per_class is not None:
            check_positive_int(self.per_class, "per_class")
        check_positive_int(self.patterns_per_forward, "patterns_per_forward")
        if isinstance(self.confidence, bool) or not isinstance(self.confidence, numbers.Real):
            raise ValueError(f"confidence must be a number in (0, 1), got {self.confidence!r}.")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must lie in (0, 1), got {self.confidence}.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral):
            raise ValueError(f"seed must be an int, got {self.seed!r}.")

    @property
    def labels(self) -> Tensor:
        """The labels of all held-out images (CPU)."""
        return self.data.labels.cpu()

    def indices(self) -> Tensor:
        """Positions of the measured images in ``data``, sorted: ``per_class`` of each class (all if fewer)."""
        labels = self.labels
        if self.per_class is None:
            return torch.arange(len(labels))
        chosen = []
        for cls in torch.unique(labels).tolist():
            rows = torch.nonzero(labels == cls).flatten()
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + int(cls))
            chosen.append(rows[torch.randperm(rows.numel(), generator=generator)[: self.per_class]])
        return torch.sort(torch.cat(chosen)).values

    def describe(self) -> dict:
        """The settings that decide the measured numbers, for manifests and reports."""
        return {"per_class": self.per_class, "confidence": self.confidence, "seed": self.seed}


def sample_batches(data: HeldOut, indices: Tensor, batch: int, device: torch.device) -> Iterator[Tuple[Tensor, Tensor]]:
    """``(images, labels)`` of ``data`` at ``indices`` in batches of ``batch``, on ``device``."""
    if isinstance(data, Split):
        for start in range(0, indices.numel(), batch):
            rows = indices[start : start + batch]
            images = data.images.index_select(0, rows.to(data.images.device))
            yield images.to(device), data.labels.index_select(0, rows.to(data.labels.device)).to(device)
        return
    subset = data.subset(indices)
    runs = [list(range(start, min(start + batch, len(subset)))) for start in range(0, len(subset), batch)]
    for images, labels in subset.loader(batch_sampler=runs):
        yield images.to(device, non_blocking=True), labels.to(device, non_blocking=True)


@dataclass
class Tally:
    """Counts of a measurement: per pattern, images flipped and images measured; per class, the floor's counts."""

    hits: Tensor
    measured: Tensor
    floor_hits: Tensor
    floor_measured: Tensor


def measure_patterns(
    model: Callable,
    patterns: Sequence[Pattern],
    targets: Sequence[int],
    sample: PowerSample,
    classes: Sequence[int],
    forward_batch: int,
    device: torch.device,
) -> Tally:
    """Stamp every pattern onto the sample's images of other classes and count the flips.

    ``patterns_per_forward`` patterns go through the model together on a batch of
    ``forward_batch // patterns_per_forward`` images; the unstamped batch is classified
    once for the floors of ``classes``.

    Args:
        model: the classifier (its mode is left as found).
        patterns: the patterns to measure.
        targets: the class of each pattern.
        sample: the held-out images and their budget.
        classes: the classes whose floor is counted.
        forward_batch: the most images in one model call.
        device: where the images go.

    Returns:
        The counts (:class:`Tally`), on the CPU.
    """
    group = max(1, min(sample.patterns_per_forward, len(patterns), forward_batch))
    rows = max(1, forward_batch // group)
    masks = torch.stack([p.mask for p in patterns]).to(device)
    values = torch.stack([p.values for p in patterns]).to(device)
    wanted = torch.tensor(list(targets), device=device)
    floor_classes = torch.tensor(list(classes), device=device)
    hits = torch.zeros(len(patterns), dtype=torch.long, device=device)
    measured = torch.zeros_like(hits)
    floor_hits = torch.zeros(len(classes), dtype=torch.long, device=device)
    floor_measured = torch.zeros_like(floor_hits)
    with evaluation_mode(model, "search_classes"), torch.inference_mode():
        for number, (images, labels) in enumerate(sample_batches(sample.data, sample.indices(), rows, device)):
            with tuned_threads("predict", images, model):
                logits = model(images)
            if number == 0:  # a model without a class signal, or labels it cannot have, make every count wrong
                check_label_range(sample.data.labels, output_width(logits, "search_classes"), "held_out labels")
            plain = logits.argmax(1)
            others = labels.unsqueeze(0) != floor_classes.unsqueeze(1)
            floor_hits += (others & (plain.unsqueeze(0) == floor_classes.unsqueeze(1))).sum(1)
            floor_measured += others.sum(1)
            for first in range(0, len(patterns), group):
                part = slice(first, first + group)
                stamped = torch.where(masks[part, None, None], values[part, None].to(images.dtype), images.unsqueeze(0))
                flat = stamped.flatten(0, 1)
                with tuned_threads("predict", flat, model):
                    predicted = model(flat).argmax(1).view(stamped.shape[0], -1)
                other = labels.unsqueeze(0) != wanted[part].unsqueeze(1)
                hits[part] += (other & (predicted == wanted[part].unsqueeze(1))).sum(1)
                measured[part] += other.sum(1)
    return Tally(hits.cpu(), measured.cpu(), floor_hits.cpu(), floor_measured.cpu())


def rates(hits: Tensor, measured: Tensor, who: str) -> List[float]:
    """``hits / measured`` per entry, refusing an entry with nothing measured."""
    if bool((measured == 0).any()):
        raise ValueError(f"the held-out sample has no image of another class to measure {who} on.")
    return [h / m for h, m in zip(hits.tolist(), measured.tolist())]

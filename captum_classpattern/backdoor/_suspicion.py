"""Per-image suspicion: how strongly a tiny pattern of each training image flips other images to its label."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .._utils import check_class_list, check_images, check_labels, check_seed, evaluation_mode, predict
from ..attr import ClassPattern, SearchSchedule, pixel_budget, top_k_mask
from ._checks import budget_pixels, check_model, check_second_set, check_settings
from ._settings import SuspicionSettings

_DEFAULT_SUSPICION = SuspicionSettings()


@dataclass
class SuspicionResult:
    """Per-image suspicion scores from :func:`suspicion_scores`.

    Attributes:
        indices: indices (into the scored data set) of the scored images.
        scores: predictive power of each scored image's top-k pattern.
        threshold: the power above which an image is flagged.
        flagged: indices of the flagged images (sorted).
        k: the pattern size in pixels.
        maps: the searched map of each scored image (scored x H x W, CPU).
        seconds: wall time.
    """

    indices: Tensor
    scores: Tensor
    threshold: float
    flagged: Tensor
    k: int
    maps: Optional[Tensor] = None
    seconds: float = 0.0

    def recovered_trigger(self, k: int) -> Tensor:
        """The ``k`` pixels the flagged images' patterns use most: an estimate of the trigger.

        Args:
            k: number of pixels (e.g. the true trigger's area when measuring recovery).

        Returns:
            An H x W bool mask: the top-k pixels of the flagged images' mean map.

        Raises:
            ValueError: nothing was flagged, or the maps were not kept.
        """
        if self.maps is None or self.flagged.numel() == 0:
            raise ValueError("no flagged images to estimate a trigger from.")
        maps = self.maps[torch.isin(self.indices, self.flagged)].float()
        height, width = maps.shape[-2:]
        # How often each pixel is among an image's own top-k pixels (the pixels that made
        # it suspicious); the mean map (< 1) only breaks ties between equal counts.
        own = torch.stack([top_k_mask(one, self.k) for one in maps]).float().sum(0)
        return top_k_mask(own + maps.mean(0), pixel_budget(k, height, width))

    def precision_recall(self, poisoned_indices: Union[Tensor, Sequence[int]]) -> Tuple[float, float]:
        """Precision and recall of the flagged images against the truly poisoned ones.

        Args:
            poisoned_indices: the indices recorded by
                :class:`~captum_classpattern.backdoor.PoisonedDataset`.

        Returns:
            ``(precision, recall)``; precision is 1.0 when nothing is flagged and recall
            is 1.0 when nothing was poisoned.
        """
        truth = set(torch.as_tensor(poisoned_indices).reshape(-1).tolist())
        found = set(self.flagged.tolist())
        hits = len(truth & found)
        precision = hits / len(found) if found else 1.0
        recall = hits / len(truth) if truth else 1.0
        return precision, recall

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` rebuilds the result (tensors on the CPU)."""
        return {
            "indices": self.indices.tolist(),
            "scores": self.scores.tolist(),
            "threshold": self.threshold,
            "flagged": self.flagged.tolist(),
            "k": self.k,
            "seconds": self.seconds,
            "maps": None if self.maps is None else self.maps.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> SuspicionResult:
        """Rebuild a result from :meth:`to_dict`'s output.

        Args:
            data: the dict (e.g. read back from JSON).

        Returns:
            The :class:`SuspicionResult`.
        """
        maps = data.get("maps")
        return cls(
            indices=torch.tensor(data["indices"], dtype=torch.long),
            scores=torch.tensor(data["scores"], dtype=torch.float32),
            threshold=float(data["threshold"]),
            flagged=torch.tensor(data["flagged"], dtype=torch.long),
            k=int(data["k"]),
            maps=None if maps is None else torch.tensor(maps, dtype=torch.float32),
            seconds=float(data.get("seconds", 0.0)),
        )


def suspicion_scores(
    model: Callable,
    images: Tensor,
    labels: Tensor,
    settings: SuspicionSettings = _DEFAULT_SUSPICION,
    *,
    classes: Optional[Sequence[int]] = None,
    reference_images: Optional[Tensor] = None,
    reference_labels: Optional[Tensor] = None,
    seed: int = 0,
    show_progress: bool = False,
) -> SuspicionResult:
    """Score every image of a (suspect) data set by the power of its own class pattern.

    Each image is the canvas of a pattern for its own label, searched with
    :class:`~captum_classpattern.ClassPattern` (many canvases per batched call). Its top-k
    pixels are stamped on other-class reference images; the share classified as the
    image's label is its score. A poisoned image carries the trigger, so a tiny pattern
    of it flips nearly everything; a clean image's does not.

    Args:
        model: the classifier (left as found).
        images: the data set to score, N x C x H x W in [0, 1] (e.g. the training set).
        labels: its labels (as recorded, i.e. poisoned items carry the target label).
        settings: pattern size, flagging threshold and search settings
            (:class:`SuspicionSettings`).
        classes: score only images with these labels (e.g. the classes
            :func:`~captum_classpattern.backdoor.scan` flagged); default every image.
        reference_images: other-class images to search on and measure power on; default
            the data set itself.
        reference_labels: their labels.
        seed: seeds the search and the reference subsets.
        show_progress: show a tqdm progress bar over chunks.

    Returns:
        A :class:`SuspicionResult`.

    Raises:
        TypeError: a model that is not callable, settings of the wrong type, or
            images/labels of the wrong type.
        ValueError: bad shapes, a pattern size that does not fit the images, or no
            reference image outside a class.

    Example:
        >>> poisoned = PoisonedDataset((x, y), PatchTrigger(), target=0)
        >>> train_x, train_y = poisoned.tensors()
        >>> result = suspicion_scores(model, train_x, train_y)
        >>> result.precision_recall(poisoned.poisoned_indices)
    """
    started = time.perf_counter()
    seed = check_seed(seed)
    check_model(model)
    check_settings(settings, SuspicionSettings, "settings")
    labels, reference_images, reference_labels = _check_data(model, images, labels, reference_images, reference_labels)
    height, width = images.shape[-2:]
    count = budget_pixels(settings.k, "k", height, width)
    selected = _selected_images(labels, classes)
    reference_of = _reference_sets(labels[selected], reference_images, reference_labels, settings.max_reference, seed)
    explainer = ClassPattern(model)
    schedule = _suspicion_schedule(settings)
    with evaluation_mode(model, "suspicion_scores"):  # here: its warning names the caller of suspicion_scores
        scores, kept_maps = _score_images(
            model, explainer, schedule, images, labels, selected, reference_images, reference_labels, reference_of,
            settings.chunk, count, seed, show_progress,
        )  # fmt: skip
    flagged = selected[scores >= settings.threshold].sort().values
    return SuspicionResult(
        indices=selected,
        scores=scores,
        threshold=float(settings.threshold),
        flagged=flagged,
        k=count,
        maps=kept_maps,
        seconds=time.perf_counter() - started,
    )


def _check_data(
    model: Callable,
    images: Tensor,
    labels: Tensor,
    reference_images: Optional[Tensor],
    reference_labels: Optional[Tensor],
) -> Tuple[Tensor, Tensor, Tensor]:
    """Check the scored images and the reference set (default: the scored images); returns both sets' labels."""
    check_images(images, "images")
    labels = check_labels(images, labels, "images'")
    reference_images, reference_labels = check_second_set(
        model, images, labels, reference_images, reference_labels, "reference_images"
    )
    return labels, reference_images, reference_labels


def _selected_images(labels: Tensor, classes: Optional[Sequence[int]]) -> Tensor:
    """The indices of the images to score: those whose label is among ``classes`` (default every image)."""
    if classes is None:
        return torch.arange(labels.numel())
    wanted = torch.tensor(check_class_list(classes), dtype=torch.long)
    return torch.nonzero(torch.isin(labels, wanted)).flatten()


def _reference_sets(
    selected_labels: Tensor, reference_images: Tensor, reference_labels: Tensor, max_reference: int, seed: int
) -> Dict[int, Tensor]:
    """For each scored class, a seeded subset of at most ``max_reference`` reference images of other classes."""
    generator = torch.Generator().manual_seed(seed)
    reference_of: Dict[int, Tensor] = {}
    for cls in selected_labels.unique().tolist():
        pool = torch.nonzero(reference_labels != cls).flatten()
        if pool.numel() == 0:
            raise ValueError(f"no reference images outside class {cls}.")
        pick = pool[torch.randperm(pool.numel(), generator=generator)[:max_reference]]
        reference_of[cls] = reference_images[pick.to(reference_images.device)]
    return reference_of


def _suspicion_schedule(settings: SuspicionSettings) -> SearchSchedule:
    """The per-image search's schedule, every field spelled out."""
    # Signed steps annealed from step_size to a tenth of it, kept short: a trigger on the
    # canvas wins within a few steps, while longer searches saturate more pixels at 1.0 and
    # the top-k then picks among ties. Every field is spelled out so that a change of the
    # package's default schedule does not change these scores.
    return SearchSchedule(
        optimizer="sign",
        step_size=settings.step_size,
        final_step_size=settings.step_size / 10,
        alpha=0.2,
        init=0.5,
        batch_size=settings.batch_size,
        steps=settings.steps,
        epochs=None,
    )


def _score_images(
    model: Callable,
    explainer: ClassPattern,
    schedule: SearchSchedule,
    images: Tensor,
    labels: Tensor,
    selected: Tensor,
    reference_images: Tensor,
    reference_labels: Tensor,
    reference_of: Dict[int, Tensor],
    chunk: int,
    count: int,
    seed: int,
    show_progress: bool,
) -> Tuple[Tensor, Tensor]:
    """Search each selected image's pattern, ``chunk`` at a time; returns the patterns' powers and maps (CPU)."""
    scores = torch.zeros(selected.numel())
    kept_maps = torch.zeros(selected.numel(), *images.shape[-2:])
    for begin in tqdm(range(0, selected.numel(), chunk), desc="Per-image suspicion", disable=not show_progress):
        rows = selected[begin : begin + chunk]
        canvases = images[rows.to(images.device)]
        targets = labels[rows]
        maps = explainer.attribute(
            canvases,
            target=targets,
            baselines=reference_images,
            baseline_labels=reference_labels,
            schedule=schedule,
            seed=seed,
        )
        with torch.inference_mode():
            for j in range(rows.numel()):
                kept_maps[begin + j] = maps[j, 0].cpu()
                scores[begin + j] = _stamped_power(model, maps[j, 0], canvases[j], int(targets[j]), reference_of, count)
    return scores, kept_maps


def _stamped_power(
    model: Callable, one_map: Tensor, canvas: Tensor, cls: int, reference_of: Dict[int, Tensor], count: int
) -> Tensor:
    """The share of the class's reference images that the canvas's top-``count`` pixels flip to ``cls``."""
    mask = top_k_mask(one_map, count)
    stamped = torch.where(mask, canvas, reference_of[cls])
    # One model call for all of the class's reference images.
    predicted = predict(model, stamped, batch_size=stamped.shape[0], who="suspicion_scores")
    return (predicted == cls).float().mean()

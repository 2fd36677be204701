"""The units a class needs: rank each unit by the damage its removal does, then remove the top k."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor, nn

from .._utils import (
    JsonFile,
    Replaceable,
    accepts_older_keywords,
    check_class_list,
    check_keys,
    check_positive_int,
    check_seed,
    float_array,
    refuse_both,
)
from ._ablate import ablated_predictions, layer_width, unit_index
from ._balanced import balanced_from_predictions, check_labelled, check_model_width
from ._hooks import LayerSpec, resolve_layer, run_device


@dataclass
class UnitRanking(JsonFile):
    """How much each class's balanced accuracy drops when each unit is removed alone.

    Attributes:
        baseline: balanced accuracy per class with no unit removed (length K).
        drops: U x K, ``baseline - balanced accuracy with unit u removed``.
        log_prob_drops: U x K, drop of the mean log-probability that the images of each
            class get for their own class; breaks the ties of ``drops``, which are frequent
            when removing one unit flips no prediction of a small evaluation set.
        units: the units that were evaluated (rows of ``drops``).
        num_units: width of the layer.
    """

    baseline: np.ndarray
    drops: np.ndarray
    log_prob_drops: np.ndarray
    units: List[int]
    num_units: int

    def order(self, target: int) -> List[int]:
        """All evaluated units, most damaging to class ``target`` first.

        Sorted by balanced-accuracy drop, then by log-probability drop, then by unit index.
        """
        positions = np.lexsort((np.asarray(self.units), -self.log_prob_drops[:, target], -self.drops[:, target]))
        return [self.units[i] for i in positions]

    def top(self, target: int, k: int) -> List[int]:
        """The ``k`` units whose removal hurts class ``target`` most.

        Raises:
            ValueError: ``k`` exceeds the number of evaluated units.
        """
        if not 0 <= k <= len(self.units):
            raise ValueError(f"k must lie in 0..{len(self.units)}, got {k}.")
        return self.order(target)[:k]

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict of every field (arrays as nested lists)."""
        return {
            "units": list(self.units),
            "num_units": self.num_units,
            "baseline": self.baseline.tolist(),
            "drops": self.drops.tolist(),
            "log_prob_drops": self.log_prob_drops.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> UnitRanking:
        """Rebuild a ranking from :meth:`to_dict`'s output.

        Raises:
            ValueError: the dict is not a unit ranking.
        """
        check_keys(data, ("units", "num_units", "baseline", "drops", "log_prob_drops"), "UnitRanking")
        units = [int(u) for u in data["units"]]
        shape = (len(units), len(data["baseline"]))
        return cls(
            baseline=float_array(data["baseline"]),
            drops=float_array(data["drops"], shape),
            log_prob_drops=float_array(data["log_prob_drops"], shape),
            units=units,
            num_units=int(data["num_units"]),
        )


def rank_units_for_class(
    model: nn.Module,
    layer: LayerSpec,
    images: Tensor,
    labels: Tensor,
    num_classes: int,
    *,
    units: Optional[Sequence[int]] = None,
    batch_size: int = 256,
    head: Optional[Callable[[Tensor], Tensor]] = None,
    device: Optional[Union[str, torch.device]] = None,
    show_progress: bool = False,
) -> UnitRanking:
    """Rank the units of ``layer`` for every class by the damage their removal does.

    Each unit is removed alone (its channel zeroed) and the images are evaluated once; the
    balanced accuracy of all classes comes from that one evaluation. Several single-unit
    ablations share each model call (the images repeated, a different unit zeroed in each
    copy), so small evaluation sets still fill ``batch_size``.

    Args:
        model: the classifier (left as found).
        layer: the layer whose units are ranked (module or dotted name).
        images: held-out images N x C x H x W.
        labels: their class labels.
        num_classes: number of classes.
        units: units to evaluate (default all).
        batch_size: images per model call.
        head: optional, the rest of the network after ``layer`` as a callable from the
            layer's output to logits (e.g. ``nn.Sequential(model.pool, model.flatten,
            model.fc)``). The layer's output is then computed once per chunk of images and
            only ``head`` runs per ablation: much faster for late layers. The first chunk
            checks that ``head`` reproduces the model's logits.
        device: where to run; default the model's device.
        show_progress: show a tqdm progress bar.

    Returns:
        A :class:`UnitRanking`; ``ranking.top(c, 20)`` are class ``c``'s 20 top units.

    Raises:
        ValueError: units out of range, labels that do not fit, a ``head`` that does not
            finish the model, a bad ``batch_size``.
        TypeError: labels that are not integer classes.

    Example:
        >>> ranking = rank_units_for_class(model, "features.relu4", images, labels, 5)
        >>> ranking.top(2, 20)
    """
    name, module = resolve_layer(model, layer)
    labels = check_labelled(images, labels, num_classes)
    check_positive_int(batch_size, "batch_size")
    run_on = run_device(model, device)
    check_model_width(model, images, num_classes, run_on, "rank_units_for_class")
    width = layer_width(model, module, name, images, run_on)
    chosen = list(range(width)) if units is None else unit_index(units, width).tolist()
    ablations = [torch.empty(0, dtype=torch.long)] + [torch.tensor([u]) for u in chosen]
    predictions, log_probs = ablated_predictions(
        model, module, name, images, labels, ablations, width, run_on, batch_size, head, show_progress, "Ranking units"
    )
    scores = torch.stack([balanced_from_predictions(p, labels, num_classes) for p in predictions]).numpy()
    per_class = torch.zeros(len(ablations), num_classes, dtype=torch.float64)
    per_class.index_add_(1, labels, log_probs)
    per_class /= torch.bincount(labels, minlength=num_classes).clamp(min=1)
    log_prob = per_class.numpy()
    return UnitRanking(
        baseline=scores[0],
        drops=scores[0][None, :] - scores[1:],
        log_prob_drops=log_prob[0][None, :] - log_prob[1:],
        units=chosen,
        num_units=width,
    )


@dataclass
class AblationCurves(JsonFile):
    """Balanced accuracy of each class as its top-k units, the others, or k random units go.

    Attributes:
        ks: the numbers of units.
        classes: the classes (rows).
        baseline: balanced accuracy per class, nothing removed (len(classes)).
        top_removed: len(classes) x len(ks), the class's own top-k units removed.
        rest_removed: same shape, every unit except the class's top-k removed.
        random_removed: same shape, k random units removed (mean over the draws).
        num_units: width of the layer.
    """

    ks: List[int]
    classes: List[int]
    baseline: np.ndarray
    top_removed: np.ndarray
    rest_removed: np.ndarray
    random_removed: np.ndarray
    num_units: int

    def summary(self, k: int) -> Dict[str, float]:
        """Mean over classes at ``k`` units: baseline, top_removed, rest_removed, random_removed.

        Raises:
            ValueError: ``k`` is not one of ``ks``.
        """
        if k not in self.ks:
            raise ValueError(f"k={k} was not measured; measured: {self.ks}.")
        column = self.ks.index(k)
        return {
            "k": k,
            "baseline": float(np.nanmean(self.baseline)),
            "top_removed": float(np.nanmean(self.top_removed[:, column])),
            "rest_removed": float(np.nanmean(self.rest_removed[:, column])),
            "random_removed": float(np.nanmean(self.random_removed[:, column])),
        }

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict of every field (arrays as nested lists)."""
        return {
            "ks": list(self.ks),
            "classes": list(self.classes),
            "num_units": self.num_units,
            "baseline": self.baseline.tolist(),
            "top_removed": self.top_removed.tolist(),
            "rest_removed": self.rest_removed.tolist(),
            "random_removed": self.random_removed.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> AblationCurves:
        """Rebuild curves from :meth:`to_dict`'s output.

        Raises:
            ValueError: the dict is not a set of ablation curves.
        """
        keys = ("ks", "classes", "num_units", "baseline", "top_removed", "rest_removed", "random_removed")
        check_keys(data, keys, "AblationCurves")
        ks, classes = [int(k) for k in data["ks"]], [int(c) for c in data["classes"]]
        shape = (len(classes), len(ks))
        return cls(
            ks=ks,
            classes=classes,
            baseline=float_array(data["baseline"]),
            top_removed=float_array(data["top_removed"], shape),
            rest_removed=float_array(data["rest_removed"], shape),
            random_removed=float_array(data["random_removed"], shape),
            num_units=int(data["num_units"]),
        )


@dataclass(frozen=True)
class AblationSettings(Replaceable):
    """What :func:`ablation_curves` removes and measures.

    Attributes:
        ks: numbers of units to remove (each at most the number of ranked units; default
            1, 2, 5, 10, 20).
        classes: classes to measure (default all).
        random_trials: random draws of k units, averaged; the draws are shared by all
            classes (>= 1, default 3).
        seed: seeds the random draws.
        batch_size: images per model call (>= 1, default 256).

    Raises:
        ValueError: a count out of range or a bad seed.

    Example:
        >>> ablation_curves(model, "features.relu4", images, labels, 5, ranking, AblationSettings(ks=(1, 5)))
    """

    ks: Sequence[int] = (1, 2, 5, 10, 20)
    classes: Optional[Sequence[int]] = None
    random_trials: int = 3
    seed: int = 0
    batch_size: int = 256

    def __post_init__(self) -> None:
        check_positive_int(self.batch_size, "batch_size")
        check_positive_int(self.random_trials, "random_trials")
        object.__setattr__(self, "seed", check_seed(self.seed))


_DEFAULT_ABLATION = AblationSettings()


def _fold_ablation_keywords(older: Dict[str, Any], arguments: Dict[str, Any]) -> None:
    """Move ``ablation_curves``'s older keywords into its ``settings``."""
    refuse_both(older, arguments, _OLDER_ABLATION_KEYWORDS, "settings")
    arguments["settings"] = AblationSettings(**older)


_OLDER_ABLATION_KEYWORDS = ("ks", "classes", "random_trials", "seed", "batch_size")


@accepts_older_keywords(_OLDER_ABLATION_KEYWORDS, _fold_ablation_keywords)
def ablation_curves(
    model: nn.Module,
    layer: LayerSpec,
    images: Tensor,
    labels: Tensor,
    num_classes: int,
    ranking: UnitRanking,
    settings: AblationSettings = _DEFAULT_ABLATION,
    *,
    head: Optional[Callable[[Tensor], Tensor]] = None,
    device: Optional[Union[str, torch.device]] = None,
    show_progress: bool = False,
) -> AblationCurves:
    """Remove each class's top-k units, or all the others, or k random units.

    If a few units carry a class, removing its top k units hurts it far more than removing
    k random units, and keeping only its top k (removing all the others) hurts it little.

    Args:
        model: the classifier (left as found).
        layer: the ranked layer.
        images: held-out images (use other images than those that ranked the units for an
            unbiased curve).
        labels: their labels.
        num_classes: number of classes.
        ranking: from :func:`rank_units_for_class` on the same layer.
        settings: the numbers of units removed, the classes measured, the random draws,
            their seed and the batch size (:class:`AblationSettings`); the older keywords
            ``ks=``, ``classes=``, ``random_trials=``, ``seed=`` and ``batch_size=`` are
            still accepted.
        head: optional, the rest of the network after ``layer`` (see
            :func:`rank_units_for_class`).
        device: where to run; default the model's device.
        show_progress: show a tqdm progress bar.

    Returns:
        An :class:`AblationCurves`.

    Raises:
        ValueError: a k out of range, an unknown class, labels that do not fit, a bad
            ``random_trials`` or ``batch_size``.
        TypeError: labels that are not integer classes.

    Example:
        >>> curves = ablation_curves(model, "features.relu4", images, labels, 5, ranking)
        >>> curves.summary(20)
    """
    if not isinstance(settings, AblationSettings):
        raise TypeError(f"settings must be an AblationSettings, got {type(settings).__name__}.")
    ks, classes, random_trials, batch_size = settings.ks, settings.classes, settings.random_trials, settings.batch_size
    name, module = resolve_layer(model, layer)
    labels = check_labelled(images, labels, num_classes)
    width = ranking.num_units
    ks = [int(k) for k in ks]
    if not ks or any(k < 0 or k > len(ranking.units) for k in ks):
        raise ValueError(f"each k must lie in 0..{len(ranking.units)} (the ranked units), got {ks}.")
    classes = list(range(num_classes)) if classes is None else check_class_list(classes, "classes", num_classes)
    check_model_width(model, images, num_classes, run_device(model, device), "ablation_curves")
    generator = torch.Generator().manual_seed(settings.seed)
    ablations: List[Tensor] = [torch.empty(0, dtype=torch.long)]
    every = torch.arange(width)
    for c in classes:
        for k in ks:
            top = torch.tensor(ranking.top(c, k), dtype=torch.long)
            rest = every[~torch.isin(every, top)]
            ablations += [top, rest]
    for k in ks:
        ablations += [torch.randperm(width, generator=generator)[:k] for _ in range(random_trials)]
    predictions, _ = ablated_predictions(
        model,
        module,
        name,
        images,
        labels,
        ablations,
        width,
        run_device(model, device),
        batch_size,
        head,
        show_progress,
        "Ablation curves",
    )
    scores = torch.stack([balanced_from_predictions(p, labels, num_classes) for p in predictions]).numpy()
    per_class = scores[1 : 1 + 2 * len(classes) * len(ks)].reshape(len(classes), len(ks), 2, num_classes)
    rows = np.arange(len(classes))
    random_scores = scores[1 + 2 * len(classes) * len(ks) :].reshape(len(ks), random_trials, num_classes)
    return AblationCurves(
        ks=ks,
        classes=classes,
        baseline=scores[0][classes],
        top_removed=per_class[rows, :, 0, classes],
        rest_removed=per_class[rows, :, 1, classes],
        random_removed=random_scores.mean(1)[:, classes].T,
        num_units=width,
    )

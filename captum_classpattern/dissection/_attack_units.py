"""Units that adversarial attacks move: a targeted PGD attack toward class b, and each unit's activation change."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from captum.robust import PGD
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._utils import (
    JsonFile,
    Replaceable,
    check_class_index,
    check_images,
    check_keys,
    check_label_range,
    check_labels,
    check_positive_float,
    check_positive_int,
    check_seed,
    evaluation_mode,
    float_array,
    num_classes_of,
)
from ._hooks import LayerSpec, LayerTap, resolve_layer, run_device
from ._ranking import UnitRanking

_WHO = "attack_unit_shift"


@dataclass(frozen=True)
class AttackSettings(Replaceable):
    """Settings of the targeted L-inf PGD attack; frozen and validated when built.

    Attributes:
        eps: L-inf radius in pixel units (images in [0, 1]).
        step_size: size of each signed step.
        steps: number of PGD steps.
        random_start: start from a uniform random point in the ball.
        seed: seeds the random start (the global random state is left as it was).
        batch_size: images attacked per model call.

    Raises:
        ValueError: a non-positive radius, step size, number of steps or batch size.
    """

    eps: float = 8 / 255
    step_size: float = 2 / 255
    steps: int = 10
    random_start: bool = False
    seed: int = 0
    batch_size: int = 64

    def __post_init__(self) -> None:
        check_positive_float(self.eps, "eps")
        check_positive_float(self.step_size, "step_size")
        check_positive_int(self.steps, "steps")
        check_positive_int(self.batch_size, "batch_size")
        object.__setattr__(self, "seed", check_seed(self.seed, "AttackSettings.seed"))


@dataclass
class AttackUnitShift(JsonFile):
    """How a targeted attack toward one class moves each unit of a layer.

    Attributes:
        layer: the layer's dotted name.
        target: the class the images were pushed toward.
        sources: the classes of the attacked images.
        change: per unit, the mean over attacked images of (attacked minus clean)
            activation, each activation averaged over the spatial positions.
        clean_mean: per unit, the mean clean (spatially averaged) activation.
        clean_std: per unit, the standard deviation (over the attacked images, population
            formula) of the clean spatially averaged activation.
        success_rate: share of attacked images the model assigns to ``target`` afterwards.
        clean_rate: share assigned to ``target`` before the attack.
        target_logit_change: mean raise of the target logit.
        num_images: number of attacked images.
    """

    layer: str
    target: int
    sources: List[int]
    change: np.ndarray
    clean_mean: np.ndarray
    clean_std: np.ndarray
    success_rate: float
    clean_rate: float
    target_logit_change: float
    num_images: int

    @property
    def num_units(self) -> int:
        """The layer's width."""
        return int(self.change.shape[0])

    @property
    def standardized(self) -> np.ndarray:
        """``change`` in units of each unit's clean standard deviation (0 where that is 0)."""
        std = np.asarray(self.clean_std, dtype=np.float64)
        return np.divide(self.change, std, out=np.zeros_like(std), where=std > 0)

    def order(self, standardized: bool = True) -> List[int]:
        """All units, most raised first (ties by unit index).

        Args:
            standardized: rank by the change in clean standard deviations (default) or by
                the raw change.
        """
        score = self.standardized if standardized else np.asarray(self.change, dtype=np.float64)
        return [int(u) for u in np.lexsort((np.arange(self.num_units), -score))]

    def top(self, n: int, standardized: bool = True) -> List[int]:
        """The ``n`` units the attack raises most.

        Raises:
            ValueError: ``n`` outside 0..num_units.
        """
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= self.num_units:
            raise ValueError(f"n must be an int in 0..{self.num_units}, got {n!r}.")
        return self.order(standardized)[:n]

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict of every field (arrays as lists)."""
        return {
            "layer": self.layer,
            "target": self.target,
            "sources": list(self.sources),
            "change": self.change.tolist(),
            "clean_mean": self.clean_mean.tolist(),
            "clean_std": self.clean_std.tolist(),
            "success_rate": self.success_rate,
            "clean_rate": self.clean_rate,
            "target_logit_change": self.target_logit_change,
            "num_images": self.num_images,
        }

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> AttackUnitShift:
        """Rebuild a result from :meth:`to_dict`'s output.

        Raises:
            ValueError: the dict is not an attack unit shift.
        """
        keys = ("layer", "target", "sources", "change", "clean_mean", "clean_std", "success_rate")
        check_keys(data, (*keys, "clean_rate", "target_logit_change", "num_images"), "AttackUnitShift")
        return cls(
            layer=str(data["layer"]),
            target=int(data["target"]),
            sources=[int(s) for s in data["sources"]],
            change=float_array(data["change"]),
            clean_mean=float_array(data["clean_mean"]),
            clean_std=float_array(data["clean_std"]),
            success_rate=float(data["success_rate"]),
            clean_rate=float(data["clean_rate"]),
            target_logit_change=float(data["target_logit_change"]),
            num_images=int(data["num_images"]),
        )


def _forward(model: nn.Module, module: nn.Module, name: str, batch: Tensor) -> Tuple[Tensor, Tensor]:
    """Spatially averaged activations (N x C, float64) of the layer and the model's logits, without gradients."""
    with LayerTap(module, name, stop=False) as tap, torch.no_grad():
        logits = model(batch)
        output = tap.output
    if output is None:
        raise ValueError(f"layer {name!r} did not run during the forward pass; pick a layer the model uses.")
    if not isinstance(output, Tensor) or output.dim() < 2:
        raise TypeError(f"layer {name!r} must output one tensor N x C (x ...) to measure its units.")
    means = output.double().flatten(2).mean(2) if output.dim() > 2 else output.double()
    return means.cpu(), logits.detach().double().cpu()


def _attacked(attack: PGD, batch: Tensor, target: int, settings: AttackSettings) -> Tensor:
    """Targeted PGD images toward ``target`` (detached); the random start is seeded, the global RNG restored."""
    goal = torch.full((batch.shape[0],), target, dtype=torch.long, device=batch.device)
    devices = [batch.device] if batch.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), warnings.catch_warnings():
        torch.manual_seed(settings.seed)
        warnings.filterwarnings("ignore", message="Input Tensor .* did not already require gradients")
        adversarial = attack.perturb(
            batch.detach().clone(),  # Captum toggles requires_grad on the tensor it is given
            radius=settings.eps,
            step_size=settings.step_size,
            step_num=settings.steps,
            target=goal,
            targeted=True,
            random_start=settings.random_start,
        )
    return adversarial.detach()


def attack_unit_shift(
    model: nn.Module,
    layer: LayerSpec,
    images: Tensor,
    labels: Tensor,
    target: int,
    *,
    source: Optional[int] = None,
    settings: Optional[AttackSettings] = None,
    device: Optional[Union[str, torch.device]] = None,
    show_progress: bool = False,
) -> AttackUnitShift:
    """Attack images toward class ``target`` with targeted PGD and measure how each unit of ``layer`` moves.

    The attack is Captum's :class:`captum.robust.PGD` (L-inf, cross-entropy toward
    ``target``, pixels kept in [0, 1]). For each unit the activation is averaged over its
    spatial positions (layers N x C x ... ; an N x C layer is used as it is), on the clean
    and on the attacked image; the result holds the mean change per unit, also in units of
    the unit's clean standard deviation (:attr:`AttackUnitShift.standardized`). The model
    runs in eval mode and is left as found.

    Args:
        model: the classifier, returning logits.
        layer: the layer whose units are measured (module or dotted name).
        images: N x C x H x W images in [0, 1].
        labels: their class labels.
        target: the class ``b`` to push the images toward.
        source: attack only the images of class ``a``; default every image not of class
            ``target``.
        settings: the attack's :class:`AttackSettings` (default ``AttackSettings()``).
        device: where to run; default the model's device.
        show_progress: show a tqdm progress bar.

    Returns:
        An :class:`AttackUnitShift`; ``shift.top(10)`` are the 10 units raised most.

    Raises:
        ValueError: empty or malformed images, labels that do not fit, a class out of the
            model's range, ``source == target``, no image to attack, an unknown layer.
        TypeError: images, labels or classes of the wrong type, or a layer whose output
            is not one tensor N x C (x ...).

    Example:
        >>> shift = attack_unit_shift(model, "features.relu4", images, labels, target=2)
        >>> shift.success_rate, shift.top(10)
    """
    settings = AttackSettings() if settings is None else settings
    if not isinstance(settings, AttackSettings):
        raise TypeError(f"settings must be an AttackSettings, got {type(settings).__name__}.")
    check_images(images, "images")
    labels = check_labels(images, labels, "images")
    name, module = resolve_layer(model, layer)
    run_on = run_device(model, device)
    with evaluation_mode(model, _WHO):
        num_classes = num_classes_of(model, images[:1].to(run_on), who=_WHO)
        check_label_range(labels, num_classes, "labels")
        target = check_class_index(target, "target", num_classes)
        if source is not None and check_class_index(source, "source", num_classes) == target:
            raise ValueError(f"source and target are both class {target}; attack toward another class.")
        chosen = labels != target if source is None else labels == source
        if not bool(chosen.any()):
            raise ValueError(
                f"no image to attack: every image is of class {target}"
                if source is None
                else f"no image of class {source} among the labels; pass images of the source class."
            )
        selected = images[chosen]
        attack = PGD(model, loss_func=nn.CrossEntropyLoss(reduction="none"), lower_bound=0.0, upper_bound=1.0)
        clean, attacked, before, after = [], [], [], []
        for start in tqdm(range(0, selected.shape[0], settings.batch_size), disable=not show_progress, desc=_WHO):
            batch = selected[start : start + settings.batch_size].to(run_on)
            acts, logits = _forward(model, module, name, batch)
            clean.append(acts)
            before.append(logits)
            acts, logits = _forward(model, module, name, _attacked(attack, batch, target, settings))
            attacked.append(acts)
            after.append(logits)
    clean_acts, attacked_acts = torch.cat(clean), torch.cat(attacked)
    clean_logits, attacked_logits = torch.cat(before), torch.cat(after)
    return AttackUnitShift(
        layer=name,
        target=target,
        sources=sorted(int(c) for c in labels[chosen].unique()),
        change=(attacked_acts - clean_acts).mean(0).numpy(),
        clean_mean=clean_acts.mean(0).numpy(),
        clean_std=clean_acts.std(0, correction=0).numpy(),
        success_rate=float((attacked_logits.argmax(1) == target).double().mean()),
        clean_rate=float((clean_logits.argmax(1) == target).double().mean()),
        target_logit_change=float((attacked_logits[:, target] - clean_logits[:, target]).mean()),
        num_images=int(selected.shape[0]),
    )


def hypergeometric_pmf(width: int, reference: int, draws: int) -> np.ndarray:
    """P(overlap = k), k = 0..min(reference, draws), of ``draws`` random units with a fixed set of ``reference``."""
    total = math.comb(width, draws)
    return np.array(
        [
            math.comb(reference, k) * math.comb(width - reference, draws - k) / total
            for k in range(min(reference, draws) + 1)
        ]
    )


_OVERLAP_FIELDS = ("targets", "raised", "reference", "overlaps", "expected", "p_values", "random_overlaps", "num_units")


@dataclass
class UnitOverlap(JsonFile):
    """Overlap of the units an attack raises most with a reference set of units, per target class, against chance.

    Attributes:
        targets: the target classes (rows).
        raised: per target, the top-n units the attack raised most.
        reference: per target, the reference units (e.g. the class's top ablation units).
        overlaps: per target, how many raised units are reference units.
        expected: per target, the chance overlap ``n * m / num_units`` (hypergeometric mean).
        p_values: per target, ``P(overlap >= observed)`` for ``n`` random units (hypergeometric).
        random_overlaps: per target, the mean overlap of ``n`` random units with the reference
            (seeded draws).
        num_units: the layer's width.
    """

    targets: List[int]
    raised: List[List[int]]
    reference: List[List[int]]
    overlaps: List[int]
    expected: List[float]
    p_values: List[float]
    random_overlaps: List[float]
    num_units: int

    @property
    def p_value(self) -> float:
        """``P(total overlap >= observed total)`` with every target's top-n drawn at random (exact)."""
        distribution = np.ones(1)
        for raised, reference in zip(self.raised, self.reference):
            distribution = np.convolve(distribution, hypergeometric_pmf(self.num_units, len(reference), len(raised)))
        return float(min(1.0, distribution[sum(self.overlaps) :].sum()))

    def summary(self) -> Dict[str, float]:
        """Means over targets: overlap, chance overlap, random-units overlap, and the combined p-value."""
        return {
            "overlap": float(np.mean(self.overlaps)),
            "expected": float(np.mean(self.expected)),
            "random": float(np.mean(self.random_overlaps)),
            "p_value": self.p_value,
            "targets": len(self.targets),
        }

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict of every field, and the :meth:`summary`."""
        return {**{key: getattr(self, key) for key in _OVERLAP_FIELDS}, "summary": self.summary()}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> UnitOverlap:
        """Rebuild a result from :meth:`to_dict`'s output (the summary is recomputed).

        Raises:
            ValueError: the dict is not a unit overlap.
        """
        check_keys(data, _OVERLAP_FIELDS, "UnitOverlap")
        return cls(
            targets=[int(t) for t in data["targets"]],
            raised=[[int(u) for u in row] for row in data["raised"]],
            reference=[[int(u) for u in row] for row in data["reference"]],
            overlaps=[int(v) for v in data["overlaps"]],
            expected=[float(v) for v in data["expected"]],
            p_values=[float(v) for v in data["p_values"]],
            random_overlaps=[float(v) for v in data["random_overlaps"]],
            num_units=int(data["num_units"]),
        )


Reference = Union[UnitRanking, Mapping[int, Sequence[int]], Sequence[int]]
"""Reference units: a :class:`UnitRanking` (each target's top-m), a mapping target -> units, or one list for all."""


def _reference_units(reference: Reference, target: int, m: int, width: int) -> List[int]:
    if isinstance(reference, UnitRanking):
        if reference.num_units != width:
            raise ValueError(f"the ranking is of a layer with {reference.num_units} units, the shifts of {width}.")
        if not 0 <= target < reference.drops.shape[1]:
            raise ValueError(f"the ranking has no class {target}; rank the units for every target class.")
        units = reference.top(target, m)
    elif isinstance(reference, Mapping):
        if target not in reference:
            raise ValueError(f"reference has no units for target class {target}; give units for every target.")
        units = [int(u) for u in reference[target]]
    else:
        units = [int(u) for u in reference]
    if len(set(units)) != len(units) or any(not 0 <= u < width for u in units):
        raise ValueError(f"reference units must be distinct units in 0..{width - 1}, got {units}.")
    return units


def unit_overlap(
    shifts: Union[AttackUnitShift, Sequence[AttackUnitShift]],
    reference: Reference,
    n: int = 10,
    *,
    m: Optional[int] = None,
    standardized: bool = True,
    random_trials: int = 1000,
    seed: int = 0,
) -> UnitOverlap:
    """Compare the top-``n`` units each attack raises with a reference set of units, against chance.

    Chance is given two ways: the hypergeometric expectation ``n * m / width`` with the
    probability ``P(overlap >= observed)`` of ``n`` units drawn at random (per target, and
    exactly for the total over targets: :attr:`UnitOverlap.p_value`), and the mean overlap
    of ``random_trials`` random draws of ``n`` units from a seeded generator.

    Args:
        shifts: one :class:`AttackUnitShift` or several (one per target class, same layer).
        reference: a :class:`UnitRanking` (each target's top-``m`` ablation units), a mapping
            from target class to units (e.g. the units dissection labels with the class's
            concepts), or one list of units for every target.
        n: number of most-raised units per target.
        m: number of reference units taken from a ranking (default ``n``).
        standardized: rank raised units by the change in clean standard deviations (default)
            or by the raw change.
        random_trials: random draws for the random-units baseline.
        seed: seeds the random draws.

    Returns:
        A :class:`UnitOverlap`; ``overlap.summary()`` gives the means over targets.

    Raises:
        ValueError: no shifts, shifts of layers of different widths, ``n`` or ``m`` out of
            range, reference units out of range or missing for a target.
        TypeError: shifts that are not :class:`AttackUnitShift`.

    Example:
        >>> ranking = rank_units_for_class(model, "features.relu4", images, labels, 5)
        >>> shifts = [attack_unit_shift(model, "features.relu4", images, labels, b) for b in range(5)]
        >>> unit_overlap(shifts, ranking, n=10).summary()
    """
    items = [shifts] if isinstance(shifts, AttackUnitShift) else list(shifts)
    if not items:
        raise ValueError("shifts is empty; pass the results of attack_unit_shift.")
    if not all(isinstance(item, AttackUnitShift) for item in items):
        raise TypeError("shifts must be AttackUnitShift results (from attack_unit_shift).")
    width = items[0].num_units
    if any(item.num_units != width for item in items):
        raise ValueError("the shifts come from layers of different widths; compare shifts of one layer.")
    check_positive_int(random_trials, "random_trials")
    m = n if m is None else m
    if isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= width:
        raise ValueError(f"m must be an int in 1..{width}, got {m!r}.")
    generator = torch.Generator().manual_seed(int(seed))
    rows: Dict[str, list] = {key: [] for key in ("raised", "reference", "overlaps", "expected", "p_values", "random")}
    for item in items:
        raised = item.top(n, standardized)
        units = _reference_units(reference, item.target, m, width)
        overlap = len(set(raised) & set(units))
        draws = torch.rand(random_trials, width, generator=generator).argsort(1)[:, :n]
        rows["raised"].append(raised)
        rows["reference"].append(units)
        rows["overlaps"].append(overlap)
        rows["expected"].append(len(raised) * len(units) / width)
        rows["p_values"].append(float(min(1.0, hypergeometric_pmf(width, len(units), len(raised))[overlap:].sum())))
        rows["random"].append(float(torch.isin(draws, torch.tensor(units, dtype=torch.long)).sum(1).double().mean()))
    return UnitOverlap(
        targets=[item.target for item in items],
        raised=rows["raised"],
        reference=rows["reference"],
        overlaps=rows["overlaps"],
        expected=rows["expected"],
        p_values=rows["p_values"],
        random_overlaps=rows["random"],
        num_units=width,
    )

"""The link to class patterns: the units a pattern drives, and how much of its power they carry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Union

import numpy as np
import torch
from torch import Tensor, nn

from .._utils import (
    JsonFile,
    Replaceable,
    accepts_older_keywords,
    check_choice,
    check_keys,
    check_positive_int,
    check_seed,
    evaluation_mode,
    float_array,
    predict,
    refuse_both,
    share_predicted,
)
from ._ablate import ablate_units, layer_width
from ._balanced import check_labelled
from ._hooks import LayerSpec, LayerTap, resolve_layer, run_device

_RANK_BY = ("increase", "contribution")


@dataclass(frozen=True)
class PatternUnitsSettings(Replaceable):
    """How :func:`units_responding_to_pattern` picks the units and draws the control.

    Attributes:
        top: the number of units to keep and ablate (>= 1; at most the layer's width,
            checked against the layer).
        rank_by: ``"increase"`` (mean activation increase, stamped minus clean) or
            ``"contribution"`` (that increase weighed by the gradient of ``log p(target)``).
        random_trials: random unit sets averaged for the control (>= 1).
        seed: seeds the random sets.
        batch_size: images per model call (>= 1).

    Raises:
        ValueError: a count out of range, an unknown ``rank_by`` or a seed out of range.
        TypeError: a seed that is not an integer.

    Example:
        >>> units_responding_to_pattern(model, "features.relu4", pattern, images, labels, 2,
        ...                             PatternUnitsSettings(top=5, rank_by="contribution"))
    """

    top: int = 10
    rank_by: str = "increase"
    random_trials: int = 3
    seed: int = 0
    batch_size: int = 256

    def __post_init__(self) -> None:
        top = self.top
        if isinstance(top, (bool, np.bool_)) or not isinstance(top, (int, np.integer)) or top < 1:
            raise ValueError(f"top must be an int >= 1 (at most the layer's units), got {top!r}.")
        check_choice(self.rank_by, _RANK_BY, "rank_by")
        check_positive_int(self.random_trials, "random_trials")
        check_seed(self.seed)
        check_positive_int(self.batch_size, "batch_size")


_OLDER_KEYWORDS = ("top", "rank_by", "random_trials", "seed", "batch_size")
_DEFAULT_SETTINGS = PatternUnitsSettings()


def _fold_keywords(older: Dict[str, Any], arguments: Dict[str, Any]) -> None:
    """Move ``units_responding_to_pattern``'s older keywords into its ``settings``."""
    refuse_both(older, arguments, _OLDER_KEYWORDS, "settings")
    arguments["settings"] = PatternUnitsSettings(**older)


@dataclass
class PatternUnits(JsonFile):
    """The units a class pattern drives, and the pattern's power with them removed.

    Attributes:
        target: the pattern's class.
        units: the ``top`` units ranked first by ``rank_by``, first ones first.
        rank_by: ``"increase"`` or ``"contribution"``.
        increase: per-unit mean activation increase (stamped minus clean), length U.
        contribution: per-unit first-order contribution to the rise of ``log p(target)``
            (only with ``rank_by="contribution"``, else ``None``).
        power: predictive power of the pattern (share of other-class images classified
            as ``target`` once stamped).
        power_ablated: the same with ``units`` removed.
        power_random_ablated: the same with as many random units removed (mean over draws).
        floor: share of the unstamped other-class images already classified as ``target``.
        accuracy: top-1 accuracy on all the images.
        accuracy_ablated: top-1 accuracy with ``units`` removed.
    """

    target: int
    units: List[int]
    rank_by: str
    increase: np.ndarray
    contribution: Optional[np.ndarray]
    power: float
    power_ablated: float
    power_random_ablated: float
    floor: float
    accuracy: float
    accuracy_ablated: float

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict of every field (arrays as lists, ``contribution`` ``None`` if absent)."""
        return {
            "target": self.target,
            "units": list(self.units),
            "rank_by": self.rank_by,
            "increase": self.increase.tolist(),
            "contribution": None if self.contribution is None else self.contribution.tolist(),
            "power": self.power,
            "power_ablated": self.power_ablated,
            "power_random_ablated": self.power_random_ablated,
            "floor": self.floor,
            "accuracy": self.accuracy,
            "accuracy_ablated": self.accuracy_ablated,
        }

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> PatternUnits:
        """Rebuild a result from :meth:`to_dict`'s output.

        Raises:
            ValueError: the dict is not a pattern-units result.
        """
        numbers = ("power", "power_ablated", "power_random_ablated", "floor", "accuracy", "accuracy_ablated")
        check_keys(data, ("target", "units", "rank_by", "increase", "contribution", *numbers), "PatternUnits")
        contribution = data["contribution"]
        return cls(
            target=int(data["target"]),
            units=[int(u) for u in data["units"]],
            rank_by=str(data["rank_by"]),
            increase=float_array(data["increase"]),
            contribution=None if contribution is None else float_array(contribution),
            **{key: float(data[key]) for key in numbers},
        )


def _mean_channel_activation(
    model: nn.Module,
    module: nn.Module,
    name: str,
    images: Tensor,
    stamp: Optional[Callable[[Tensor], Tensor]],
    device: torch.device,
    batch_size: int,
) -> Tensor:
    """Per-image, per-unit activation (spatial mean for feature maps): N x U."""
    rows = []
    with evaluation_mode(model, "units_responding_to_pattern"), LayerTap(module, name) as tap, torch.inference_mode():
        for start in range(0, images.shape[0], batch_size):
            batch = images[start : start + batch_size].to(device)
            if stamp is not None:
                batch = stamp(batch)
            output = tap.run(model, batch)
            if not isinstance(output, Tensor) or output.dim() < 2:
                raise TypeError(f"layer {name!r} must output one tensor N x C (x ...).")
            rows.append(output.float().flatten(2).mean(2).cpu() if output.dim() > 2 else output.float().cpu())
    return torch.cat(rows)


def _pattern_contributions(
    model: nn.Module,
    module: nn.Module,
    others: Tensor,
    stamp: Callable[[Tensor], Tensor],
    target: int,
    device: torch.device,
    batch_size: int,
) -> Tensor:
    """Per unit, a first-order estimate of how much of the pattern's pull towards ``target`` passes through it.

    That is (stamped - clean activation) x d log p(target) / d activation, summed over
    positions and averaged over images.
    """
    captured: Dict[str, Tensor] = {}

    def hook(_module: nn.Module, _inputs: Any, output: Tensor) -> Tensor:
        # A fresh leaf: gradients stop here, and no parameter's .grad is touched.
        captured["leaf"] = output.detach().requires_grad_(True)
        return captured["leaf"]

    total: Optional[Tensor] = None
    handle = module.register_forward_hook(hook)
    try:
        with evaluation_mode(model, "units_responding_to_pattern"):
            for start in range(0, others.shape[0], batch_size):
                batch = others[start : start + batch_size].to(device)
                with torch.no_grad():
                    model(batch)
                clean = captured["leaf"].detach()
                with torch.enable_grad():
                    log_prob = model(stamp(batch)).log_softmax(1)[:, target].sum()
                    leaf = captured["leaf"]
                    (gradient,) = torch.autograd.grad(log_prob, leaf)
                share = (
                    ((leaf.detach() - clean) * gradient).flatten(2).sum(2)
                    if leaf.dim() > 2
                    else (leaf.detach() - clean) * gradient
                )
                batch_total = share.double().sum(0).cpu()
                total = batch_total if total is None else total + batch_total
    finally:
        handle.remove()
    assert total is not None
    return total / others.shape[0]


@accepts_older_keywords(_OLDER_KEYWORDS, _fold_keywords)
def units_responding_to_pattern(
    model: nn.Module,
    layer: LayerSpec,
    pattern: Any,
    images: Tensor,
    labels: Tensor,
    target: int,
    settings: PatternUnitsSettings = _DEFAULT_SETTINGS,
    *,
    device: Optional[Union[str, torch.device]] = None,
) -> PatternUnits:
    """Find the units a class pattern drives and measure how much of its power they carry.

    The pattern is stamped on the images whose label is not ``target``. With
    ``rank_by="increase"`` units are ranked by their mean activation increase (spatial
    mean, stamped minus clean). That also picks units the pattern excites but that vote for
    other classes; ``rank_by="contribution"`` weighs each unit's increase by the gradient
    of ``log p(target)`` with respect to it (at the stamped image) and so keeps the units
    through which the pattern pulls towards ``target``. The pattern's predictive power is
    then measured as is, with the ``top`` units removed, and with ``top`` random units
    removed (the control).

    Args:
        model: the classifier (left as found).
        layer: the layer whose units are examined (module or dotted name).
        pattern: any object with ``stamp(images) -> images``, such as
            :class:`captum_classpattern.attr.Pattern`.
        images: held-out images N x C x H x W in [0, 1].
        labels: their labels.
        target: the pattern's class.
        settings: the number of units kept and ablated (``top``), how they are ranked
            (``rank_by``, see above), the random sets of the control and their seed, and
            the batch size (:class:`PatternUnitsSettings`); the older keywords ``top=``,
            ``rank_by=``, ``random_trials=``, ``seed=`` and ``batch_size=`` are still accepted.
        device: where to run; default the model's device.

    Returns:
        A :class:`PatternUnits`.

    Raises:
        TypeError: ``pattern`` has no ``stamp`` method, or labels that are not integer classes.
        ValueError: no images of other classes, ``top``, ``rank_by``, ``random_trials`` or
            ``batch_size`` out of range.

    Example:
        >>> found = units_responding_to_pattern(model, "features.relu4", pattern, images, labels, 2)
        >>> found.power, found.power_ablated
    """
    if not callable(getattr(pattern, "stamp", None)):
        raise TypeError("pattern must have a stamp(images) -> images method, like captum_classpattern.Pattern.")
    if not isinstance(settings, PatternUnitsSettings):
        raise TypeError(f"settings must be a PatternUnitsSettings, got {type(settings).__name__}.")
    top, rank_by, random_trials, seed, batch_size = (
        settings.top, settings.rank_by, settings.random_trials, settings.seed, settings.batch_size,
    )  # fmt: skip
    name, module = resolve_layer(model, layer)
    labels = check_labelled(images, labels)
    run_on = run_device(model, device)
    others = images[(labels != target).to(images.device)]
    if others.shape[0] == 0:
        raise ValueError(f"no images of classes other than {target}: pass held-out images of several classes.")
    width = layer_width(model, module, name, others, run_on)
    if isinstance(top, (bool, np.bool_)) or not isinstance(top, (int, np.integer)) or not 1 <= top <= width:
        raise ValueError(f"top must be an int in 1..{width} (the layer's units), got {top!r}.")
    top = int(top)
    clean = _mean_channel_activation(model, module, name, others, None, run_on, batch_size)
    stamped = _mean_channel_activation(model, module, name, others, pattern.stamp, run_on, batch_size)
    increase = (stamped - clean).mean(0).double().numpy()
    contribution = None
    if rank_by == "contribution":
        contribution = _pattern_contributions(model, module, others, pattern.stamp, target, run_on, batch_size).numpy()
    scores = increase if contribution is None else contribution
    chosen = [int(u) for u in np.lexsort((np.arange(width), -scores))[:top]]

    def power(stamp: Optional[Callable[[Tensor], Tensor]] = pattern.stamp) -> float:
        # Other-class images only in the denominator, as metrics.predictive_power defines it;
        # computed here so that the ablation hooks apply and any object with stamp() works.
        return share_predicted(
            model,
            others,
            target,
            transform=stamp,
            device=run_on,
            batch_size=batch_size,
            who="units_responding_to_pattern",
            labels=labels,
        )

    def accuracy() -> float:
        predictions = predict(model, images, device=run_on, batch_size=batch_size, who="units_responding_to_pattern")
        return int((predictions == labels).sum()) / images.shape[0]

    base_power, base_accuracy = power(), accuracy()
    with ablate_units(model, module, chosen):
        ablated_power = power()
        ablated_accuracy = accuracy()
    generator = torch.Generator().manual_seed(seed)
    random_powers = []
    for _ in range(random_trials):
        with ablate_units(model, module, torch.randperm(width, generator=generator)[:top]):
            random_powers.append(power())
    floor = power(None)
    return PatternUnits(
        target=int(target),
        units=chosen,
        rank_by=rank_by,
        increase=increase,
        contribution=contribution,
        power=base_power,
        power_ablated=ablated_power,
        power_random_ablated=float(np.mean(random_powers)),
        floor=floor,
        accuracy=base_accuracy,
        accuracy_ablated=ablated_accuracy,
    )

"""The grouped arguments of :func:`~captum_classpattern.backdoor.scan`, its older keywords, what its recovery found."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple, Union

from torch import Tensor

from .._utils import refuse_both
from ._settings import ScanConfig, ScanSettings, ScoringSettings, TriggerRecoverySettings

OLDER_SCAN_KEYWORDS = ("scoring", "recovery", "eval_images", "eval_labels", "trigger_mask", "trigger_target")
"""``scan``'s keywords before they were grouped: ``settings``, ``held_out`` and ``known_trigger`` take them now."""


@dataclass(frozen=True)
class KnownTrigger:
    """The true trigger of a model under evaluation, when it is known (a planted backdoor).

    Attributes:
        mask: the trigger's H x W mask: the result's ``trigger_jaccard`` compares it with
            the recovered top pixels.
        target: the class the Jaccard is measured on (default: the most suspicious class).

    Example:
        >>> result = scan(model, images, labels, known_trigger=KnownTrigger(PatchTrigger().mask(16, 16), 0))
    """

    mask: Optional[Tensor] = None
    target: Optional[int] = None


HeldOut = Union[Tuple[Tensor, Tensor], Any]
"""Held-out images and their labels: a pair, or an object with ``images`` and ``labels`` (a ``Split``)."""


def as_scan_config(settings: Union[ScanSettings, ScanConfig]) -> ScanConfig:
    """``settings`` as a :class:`ScanConfig` (a :class:`ScanSettings` with the default scoring and recovery).

    Raises:
        TypeError: neither a ScanSettings nor a ScanConfig.
    """
    return settings if isinstance(settings, ScanConfig) else ScanConfig(search=settings)


def held_out_pair(held_out: Optional[HeldOut]) -> Tuple[Optional[Tensor], Optional[Tensor]]:
    """``(images, labels)`` of the held-out set, ``(None, None)`` without one.

    Raises:
        TypeError: neither a pair nor an object with ``images`` and ``labels``.
    """
    if held_out is None:
        return None, None
    if isinstance(held_out, (tuple, list)):
        if len(held_out) == 2:
            return held_out[0], held_out[1]
    elif hasattr(held_out, "images") and hasattr(held_out, "labels"):
        return held_out.images, held_out.labels
    raise TypeError(
        f"held_out must be a pair (images, labels) or a Split, got {type(held_out).__name__}: "
        "pass held_out=(eval_images, eval_labels)."
    )


def fold_scan_keywords(older: Dict[str, Any], arguments: Dict[str, Any]) -> None:
    """Move ``scan``'s older keywords into ``settings``, ``held_out`` and ``known_trigger``.

    Raises:
        TypeError: a grouped argument given both ways, or settings of the wrong type.
    """
    refuse_both(older, arguments, ("eval_images", "eval_labels"), "held_out")
    refuse_both(older, arguments, ("trigger_mask", "trigger_target"), "known_trigger")
    if "scoring" in older or "recovery" in older:
        base = arguments.get("settings", ScanSettings())
        if isinstance(base, ScanConfig):
            raise TypeError("settings is a ScanConfig: put the scoring and recovery in it, not in scoring=/recovery=.")
        scoring = older.get("scoring", ScoringSettings())
        arguments["settings"] = ScanConfig(base, scoring, older.get("recovery", TriggerRecoverySettings()))
    if "eval_images" in older or "eval_labels" in older:
        arguments["held_out"] = (older.get("eval_images"), older.get("eval_labels"))
    if "trigger_mask" in older or "trigger_target" in older:
        arguments["known_trigger"] = KnownTrigger(older.get("trigger_mask"), older.get("trigger_target"))


@dataclass(frozen=True)
class TriggerFindings:
    """What trigger recovery found, carried into a :class:`ScanResult` unchanged by the scoring.

    Attributes:
        maps: the recovered trigger map (H x W) of each class that has one.
        values: the pasted values (C x H x W) of those triggers.
        jaccard: the Jaccard index with the true trigger mask, when one was given.
        jaccard_class: the class ``jaccard`` was measured on.
        success: the held-out success of each recovered trigger (see
            :attr:`ScanResult.trigger_success`).
        elsewhere: the share of other places at which each recovered trigger works too
            (see :attr:`ScanResult.trigger_elsewhere`).
        mirrored: the held-out success of each recovered trigger flipped left to right
            (see :attr:`ScanResult.trigger_mirrored`).
    """

    maps: Dict[int, Tensor] = field(default_factory=dict)
    values: Dict[int, Tensor] = field(default_factory=dict)
    jaccard: Optional[float] = None
    jaccard_class: Optional[int] = None
    success: Dict[int, float] = field(default_factory=dict)
    elsewhere: Dict[int, float] = field(default_factory=dict)
    mirrored: Dict[int, float] = field(default_factory=dict)

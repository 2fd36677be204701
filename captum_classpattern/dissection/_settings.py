"""Dissection's settings: what counts as a unit's region and a detector, and the thresholds' memory budget."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

from .._utils import Replaceable, refuse_both


@dataclass(frozen=True)
class ThresholdSettings(Replaceable):
    """Memory budget of the per-unit top-quantile thresholds of :func:`dissect`.

    Thresholds are exact while the values that decide them fit in ``max_exact_values``;
    beyond that the data are read again in histogram passes that narrow each threshold's
    interval until the values inside fit, so the result is exact again. Only when
    ``max_refine_passes`` runs out first is a threshold interpolated inside its last bin.

    Attributes:
        exact: ``None`` (exact thresholds from one pass while the values fit, else the
            bounded-memory refinement), ``True`` (keep every value: exact, memory grows with
            the data), ``False`` (always the bounded-memory refinement).
        max_exact_values: most activation values kept in memory for exact thresholds (>= 0).
        refine_bins: histogram bins per unit in a refinement pass (>= 2).
        max_refine_passes: most histogram passes before thresholds are interpolated (>= 1).

    Raises:
        TypeError: ``exact`` is not ``None``, ``True`` or ``False``.
        ValueError: a count out of range.

    Example:
        >>> dissect(model, "features.4", data, DissectionSettings(thresholds=ThresholdSettings(exact=False)))
    """

    exact: Optional[bool] = None
    max_exact_values: int = 2**24
    refine_bins: int = 2048
    max_refine_passes: int = 3

    def __post_init__(self) -> None:
        if self.exact not in (None, True, False):
            raise TypeError(f"exact must be None, True or False, got {self.exact!r}.")
        for name, least in (("max_exact_values", 0), ("refine_bins", 2), ("max_refine_passes", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"ThresholdSettings.{name} must be an int >= {least}, got {value!r}.")


@dataclass(frozen=True)
class DissectionSettings(Replaceable):
    """What :func:`dissect` and :func:`dissect_generator` count as a unit's region and as a detector.

    Attributes:
        quantile: top share of each unit's activations above its threshold, in (0, 1)
            (e.g. 0.005 for the top 0.5%).
        iou_threshold: IoU from which a unit counts as a detector, in [0, 1].
        thresholds: the memory budget of the per-unit thresholds (:class:`ThresholdSettings`).

    Raises:
        ValueError: ``quantile`` or ``iou_threshold`` out of range.
        TypeError: ``thresholds`` is not a :class:`ThresholdSettings`.

    Example:
        >>> dissect(model, "features.4", data, DissectionSettings(quantile=0.01, iou_threshold=0.05))
    """

    quantile: float = 0.005
    iou_threshold: float = 0.04
    thresholds: ThresholdSettings = ThresholdSettings()

    def __post_init__(self) -> None:
        quantile, iou = self.quantile, self.iou_threshold
        if isinstance(quantile, bool) or not isinstance(quantile, (int, float)) or not 0.0 < quantile < 1.0:
            raise ValueError(f"quantile must lie in (0, 1), e.g. 0.005 for the top 0.5%, got {quantile!r}.")
        if isinstance(iou, bool) or not isinstance(iou, (int, float)) or not 0 <= iou <= 1:
            raise ValueError(f"iou_threshold must lie in [0, 1] (e.g. 0.04), got {iou!r}.")
        if not isinstance(self.thresholds, ThresholdSettings):
            raise TypeError(f"threshold_settings must be a ThresholdSettings, got {type(self.thresholds).__name__}.")


OLDER_DISSECTION_KEYWORDS = ("quantile", "iou_threshold", "threshold_settings")
"""The keywords of :func:`dissect` and :func:`dissect_generator` grouped into ``settings``."""


def fold_dissection_keywords(older: Dict[str, Any], arguments: Dict[str, Any]) -> None:
    """Move the older ``quantile=``, ``iou_threshold=`` and ``threshold_settings=`` into ``settings``.

    Raises:
        TypeError: ``settings`` given as well, or ``threshold_settings`` of the wrong type.
        ValueError: an older keyword out of range.
    """
    refuse_both(older, arguments, OLDER_DISSECTION_KEYWORDS, "settings")
    grouped = {("thresholds" if name == "threshold_settings" else name): value for name, value in older.items()}
    arguments["settings"] = DissectionSettings(**grouped)


def check_dissection_settings(settings: Any) -> DissectionSettings:
    """``settings`` if it is a :class:`DissectionSettings`.

    Raises:
        TypeError: anything else.
    """
    if not isinstance(settings, DissectionSettings):
        raise TypeError(f"settings must be a DissectionSettings, got {type(settings).__name__}.")
    return settings

"""How dissection finds each unit's threshold when the activations do not fit in memory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .._utils import Replaceable


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
        >>> dissect(model, "features.4", data, threshold_settings=ThresholdSettings(exact=False, refine_bins=512))
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

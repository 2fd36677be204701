"""Confidence intervals for rates measured on a sample (a predictive power on a subsample of images)."""

from __future__ import annotations

import math
import numbers
from statistics import NormalDist
from typing import Tuple


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> Tuple[float, float]:
    """Wilson score interval for a binomial rate ``successes / trials``.

    Unlike the normal approximation it stays inside [0, 1] and is not empty at a rate of
    0 or 1, so it suits predictive powers near either end measured on a few hundred images.

    Args:
        successes: images flipped (an int in ``0..trials``).
        trials: images measured (an int >= 1).
        confidence: the interval's coverage, in (0, 1).

    Returns:
        ``(low, high)`` with ``0 <= low <= successes / trials <= high <= 1``.

    Raises:
        ValueError: counts out of range or a confidence outside (0, 1).
        TypeError: counts that are not integers.

    Example:
        >>> low, high = wilson_interval(40, 100)
        >>> round(low, 3), round(high, 3)
        (0.309, 0.498)
    """
    for name, value in (("successes", successes), ("trials", trials)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}.")
    if trials < 1 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials and trials >= 1, got {successes} of {trials}.")
    if isinstance(confidence, bool) or not isinstance(confidence, numbers.Real) or not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}.")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    rate = successes / trials
    denominator = 1 + z * z / trials
    centre = (rate + z * z / (2 * trials)) / denominator
    spread = z * math.sqrt(rate * (1 - rate) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, min(rate, centre - spread)), min(1.0, max(rate, centre + spread))

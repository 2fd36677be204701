"""The median-absolute-deviation anomaly index and one-sided outlier flags (Neural Cleanse's rule)."""

from __future__ import annotations

from typing import List, Sequence, Tuple, Union

import numpy as np

from .._utils import check_choice


def anomaly_index(scores: Union[Sequence[float], np.ndarray], min_spread: float = 0.0) -> np.ndarray:
    """Median-absolute-deviation anomaly index of each score (Neural Cleanse's rule).

    ``A_c = |s_c - median(s)| / (1.4826 * median(|s - median(s)|))``; a score is an
    outlier when ``A_c > 2``. Callers pick the suspicious direction.

    Args:
        scores: one score per class (at least three).
        min_spread: the denominator is at least this: a known noise level of the scores
            (e.g. how much they vary between clean models), so that classes that happen
            to agree closely do not make a small difference look anomalous (default 0).

    Raises:
        ValueError: fewer than three scores, or a negative or non-finite ``min_spread``.
    """
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1 or values.size < 3:
        raise ValueError("anomaly_index needs at least three scores (one per class).")
    try:
        floor = float(min_spread)  # numpy scalars too
    except (TypeError, ValueError):
        floor = float("nan")
    if not (np.isfinite(floor) and floor >= 0):
        raise ValueError(f"min_spread must be a finite number >= 0, got {min_spread!r}.")
    median = np.median(values)
    spread = max(1.4826 * np.median(np.abs(values - median)), floor)
    return np.abs(values - median) / max(spread, 1e-12)


def suspicious_side(scores: Union[Sequence[float], np.ndarray], direction: str) -> np.ndarray:
    """Which scores lie strictly on the suspicious side of their median.

    Args:
        scores: one score per class.
        direction: ``"low"`` (below the median is suspicious) or ``"high"`` (above it).

    Returns:
        A boolean array, one entry per score.

    Example:
        >>> suspicious_side([1.0, 2.0, 9.0], "high").tolist()
        [False, False, True]
    """
    check_choice(direction, ("low", "high"), "direction")
    values = np.asarray(scores, dtype=np.float64)
    median = np.median(values)
    return values < median if direction == "low" else values > median


def flag_outliers(
    scores: Sequence[float], direction: str = "low", threshold: float = 2.0, min_spread: float = 0.0
) -> Tuple[np.ndarray, List[int]]:
    """MAD anomaly index of each score, and the positions that are one-sided outliers.

    Args:
        scores: one score per class (at least three).
        direction: ``"low"`` when small scores are suspicious (pattern size, mask norm),
            ``"high"`` when large ones are (predictive power at a fixed size).
        threshold: a class is flagged when its index exceeds this (Neural Cleanse: 2).
        min_spread: the smallest spread the index divides by (see :func:`anomaly_index`).

    Returns:
        ``(index, flagged)``: the anomaly index of every score (a float array) and the
        positions of the flagged scores, most anomalous first.

    Raises:
        ValueError: fewer than three scores, NaN, or an unknown direction.

    Example:
        >>> index, flagged = flag_outliers([40, 38, 5, 44, 41], direction="low")
        >>> flagged
        [2]
    """
    check_choice(direction, ("low", "high"), "direction")
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1 or not np.all(np.isfinite(values)):
        raise ValueError("scores must be a 1-d sequence of finite numbers.")
    index = anomaly_index(values, min_spread)
    flagged = [int(i) for i in np.flatnonzero(suspicious_side(values, direction) & (index > threshold))]
    flagged.sort(key=lambda i: -index[i])
    return index, flagged

"""The scan's accuracy check against clean references: a class the model recognises far less often than they do.

A clean-label attack teaches the model its trigger on correctly labelled images of the
target class. When it poisons every such image the model stops recognising the class at
all (the collapse check, :func:`collapsed_rows`); when it poisons only part of them the
class is still recognised, but less often than a clean model of the same design recognises
it, since part of what the model learned for the class is the trigger. Clean models of one
design agree closely on how well they recognise each class (CIFAR-10's cat is hard for all
of them), so the suspect's per-class accuracy is compared with the references' class by
class, not with its own other classes.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

from ..metrics import flag_outliers, suspicious_side
from ._scan_scores import reference_spread


def weakened_classes(
    accuracy: Sequence[float],
    reference_accuracy: Sequence[Sequence[float]],
    threshold: float,
    use_spread: bool = True,
) -> Tuple[np.ndarray, List[int]]:
    """The classes the suspect recognises markedly less often than the references do.

    Each class's accuracy minus the references' mean accuracy of the class is its relative
    accuracy; a class is *weakened* when its relative accuracy is a low outlier among the
    classes (MAD anomaly index above ``threshold``), the index dividing by at least the
    references' spread (how much a class's accuracy varies between references,
    :func:`reference_spread`) when ``use_spread``. Shares, not log-odds: near an accuracy
    of 1 log-odds swing with one image more or less, and clean models differ most there.
    It needs two references or more: with one, nothing tells a weakened class from a class
    the two models merely disagree on.

    Args:
        accuracy: the suspect's held-out accuracy of each class (empty: not measured).
        reference_accuracy: each reference's accuracies of the same classes on the same
            held-out images (an empty one, from a scan that did not measure them: no check).
        threshold: the anomaly-index threshold.
        use_spread: floor the index's spread by the references' spread.

    Returns:
        ``(index, rows)``: each class's one-sided anomaly index (0 for a class the suspect
        recognises at least as well, relative to the references, as the median class;
        empty when the check cannot run: no accuracies, fewer than two references, or one
        without them) and the weakened rows, most anomalous first.

    Raises:
        ValueError: a reference's accuracies that do not cover the suspect's classes.
    """
    references = [list(row) for row in reference_accuracy]
    if not len(accuracy) or len(references) < 2 or not all(references):
        return np.zeros(0), []
    if any(len(row) != len(accuracy) for row in references):
        raise ValueError(
            f"a reference's class accuracies cover {[len(row) for row in references]} classes, the suspect's "
            f"{len(accuracy)}: scan the references with the same classes and held-out images."
        )
    reference_shares = np.array(references, dtype=np.float64)
    relative = np.asarray(accuracy, dtype=np.float64) - reference_shares.mean(axis=0)
    spread = reference_spread(reference_shares) if use_spread else 0.0
    index, rows = flag_outliers(relative.tolist(), "low", threshold, spread)
    return np.where(suspicious_side(relative, "low"), np.asarray(index, dtype=np.float64), 0.0), rows

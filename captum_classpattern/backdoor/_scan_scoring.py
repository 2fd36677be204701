"""The scan's scoring, a pure function of the search's maps and power tables: scores, flags and patterns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from ..attr import Pattern, pixel_budget, top_k_mask
from ..metrics import flag_outliers, suspicious_side
from ._accuracy_check import weakened_classes
from ._blend_probe import BlendProbe
from ._scan_scores import DIRECTION, PowerTable, reference_raw, reference_spread, shown_scores
from ._settings import ScoringSettings
from ._warp_probe import WarpProbe


@dataclass(frozen=True)
class ScanScores:
    """What :func:`score_classes` computes: the scored half of a :class:`ScanResult`.

    Attributes:
        scoring: the scoring settings with ``k`` and ``auc_k`` as pixel counts.
        scores: each class's score (relative to the references' mean with references).
        suspect_scores: the suspect model's own scores.
        reference_scores: the references' mean score of each class (empty without references).
        anomaly_index: each class's MAD anomaly index.
        reference_spread: the references' spread the relative index divides by at least, or ``None``.
        pattern_flagged: the classes the top-k patterns flag, most anomalous first.
        blend_scores: each class's blend-probe score (empty without the probe).
        blend_anomaly_index: each blend score's anomaly index (empty without the probe).
        blend_reference_spread: the blend scores' reference spread, or ``None``.
        blend_flagged: the classes the blend probe flags.
        warp_scores: each class's warp-probe score (empty without the probe).
        warp_anomaly_index: each warp score's anomaly index (empty without the probe).
        warp_reference_spread: the warp scores' reference spread, or ``None``.
        warp_flagged: the classes the warp probe flags.
        collapsed: the classes the model hardly recognises on held-out images (see
            ``ScoringSettings.collapse_ratio``).
        accuracy_index: each class's one-sided anomaly index of its accuracy relative to
            the references' (empty with fewer than two references' accuracies).
        weakened: the classes the model recognises markedly less often than the
            references do (``ScoringSettings.accuracy_threshold``).
        flagged: the classes any check flags: the detectors' most anomalous first, then
            the collapsed and the weakened classes.
        patterns: each class's recovered pattern.
        powers: each recovered pattern's predictive power.
    """

    scoring: ScoringSettings
    scores: List[float]
    suspect_scores: List[float]
    reference_scores: List[float]
    anomaly_index: List[float]
    reference_spread: Optional[float]
    pattern_flagged: List[int]
    blend_scores: List[float]
    blend_anomaly_index: List[float]
    blend_reference_spread: Optional[float]
    blend_flagged: List[int]
    warp_scores: List[float]
    warp_anomaly_index: List[float]
    warp_reference_spread: Optional[float]
    warp_flagged: List[int]
    collapsed: List[int]
    accuracy_index: List[float]
    weakened: List[int]
    flagged: List[int]
    patterns: List[Pattern]
    powers: List[float]


def score_classes(
    classes: List[int],
    maps: Tensor,
    values: Tensor,
    table: PowerTable,
    scoring: ScoringSettings,
    reference_tables: Sequence[PowerTable],
    blend: Optional[BlendProbe],
    class_accuracy: Sequence[float] = (),
    warp: Optional[WarpProbe] = None,
    reference_accuracy: Sequence[Sequence[float]] = (),
) -> ScanScores:
    """Score each class from the power table, flag the outliers and cut the recovered patterns.

    Nothing given is changed; the same inputs always give the same scores.

    Args:
        classes: the scanned classes, in order.
        maps: K x H x W learned maps.
        values: K x C x H x W pasted values.
        table: the power of each class's top-k patterns.
        scoring: the scoring settings (``k`` and ``auc_k`` in any form the scan accepts).
        reference_tables: the power tables of the same search on each reference model.
        blend: the blend probe, or ``None``.
        class_accuracy: each class's held-out accuracy (empty: not measured, no
            collapse check).
        warp: the warp probe, or ``None``.
        reference_accuracy: each reference's held-out accuracy of each class (the
            accuracy check runs with two or more).

    Returns:
        The :class:`ScanScores`.

    Raises:
        ValueError: a ``scoring.k`` that was not evaluated, a score that needs powers the
            scan did not measure, ``"mask_l1"`` with references, or reference tables that
            do not fit the suspect's.
    """
    ks, height, width = table.ks, maps.shape[-2], maps.shape[-1]
    fixed_k = scoring.k if isinstance(scoring.k, int) else pixel_budget(scoring.k, height, width)
    if fixed_k not in ks:
        raise ValueError(f"k={scoring.k} was not evaluated; choose one of {ks}.")
    scoring = scoring.replace(k=fixed_k, auc_k=table.auc_size(scoring.auc_k, height, width))
    score = scoring.score
    sizes = table.smallest_sizes(scoring.power_threshold)
    suspect = table.class_scores(score, maps, sizes, fixed_k, int(scoring.auc_k))
    reference = _reference_raw(classes, reference_tables, scoring, height, width)
    raw, index, spread, flagged_rows = flag_against_references(
        suspect, reference, DIRECTION[score], scoring.threshold, scoring.reference_spread
    )
    patterns, powers = _recovered_patterns(maps, values, table, sizes, fixed_k if score == "power_at_k" else None)
    blend_raw, blend_index, blend_spread, blend_rows = _probe_flags(blend, scoring.blend_threshold, scoring)
    warp_raw, warp_index, warp_spread, warp_rows = _probe_flags(warp, scoring.warp_threshold, scoring)
    # Any detector's flag counts; the most anomalous class by any index comes first.
    strongest = np.asarray(index)
    for probe_index in (blend_index, warp_index):
        strongest = np.maximum(strongest, probe_index) if probe_index.size else strongest
    either = sorted(set(flagged_rows) | set(blend_rows) | set(warp_rows), key=lambda r: -strongest[r])
    collapsed = collapsed_rows(class_accuracy, scoring.collapse_ratio)
    accuracy_index, weakened = weakened_classes(
        class_accuracy, reference_accuracy, scoring.accuracy_threshold, scoring.reference_spread
    )
    later = [r for r in collapsed + weakened if r not in either]
    return ScanScores(
        scoring=scoring,
        scores=shown_scores(score, raw),
        suspect_scores=shown_scores(score, suspect),
        reference_scores=[] if reference is None else shown_scores(score, reference.mean(axis=0)),
        anomaly_index=[float(a) for a in index],
        reference_spread=spread,
        pattern_flagged=[classes[r] for r in flagged_rows],
        blend_scores=[float(v) for v in blend_raw],
        blend_anomaly_index=[float(a) for a in blend_index],
        blend_reference_spread=blend_spread,
        blend_flagged=[classes[r] for r in blend_rows],
        warp_scores=[float(v) for v in warp_raw],
        warp_anomaly_index=[float(a) for a in warp_index],
        warp_reference_spread=warp_spread,
        warp_flagged=[classes[r] for r in warp_rows],
        collapsed=[classes[r] for r in collapsed],
        accuracy_index=[float(a) for a in accuracy_index],
        weakened=[classes[r] for r in weakened],
        flagged=[classes[r] for r in either + list(dict.fromkeys(later))],
        patterns=patterns,
        powers=powers,
    )


def collapsed_rows(accuracy: Sequence[float], ratio: float) -> List[int]:
    """The rows whose accuracy is below ``ratio`` times the median row's, lowest first (none when empty or ratio 0)."""
    values = np.asarray(accuracy, dtype=np.float64)
    below = np.flatnonzero(collapse_suspicion(accuracy, ratio) > 1.0)
    return sorted((int(r) for r in below), key=lambda r: values[r])


def collapse_suspicion(accuracy: Sequence[float], ratio: float) -> np.ndarray:
    """Each row's collapse bar over its accuracy, ``ratio x median / accuracy``, at most 10 (zeros when off).

    Above 1 exactly for the rows :func:`collapsed_rows` gives: the scale of the other
    detectors' index over threshold, so that one per-model score ranks all of them.
    """
    values = np.asarray(accuracy, dtype=np.float64)
    if values.size == 0 or ratio == 0:
        return np.zeros(values.size)
    bar = ratio * float(np.median(values))
    return bar / np.maximum(values, bar / 10.0) if bar > 0 else np.zeros(values.size)


def _recovered_patterns(
    maps: Tensor, values: Tensor, table: PowerTable, sizes: Sequence[float], fixed_k: Optional[int]
) -> Tuple[List[Pattern], List[float]]:
    """Each class's pattern and its power: the smallest evaluated size reaching the power threshold.

    The largest size if none does, or ``fixed_k`` when given (``score="power_at_k"``).
    """
    ks = table.ks
    if fixed_k is not None:
        pattern_sizes = [fixed_k] * len(sizes)
    else:
        pattern_sizes = [next((k for k in ks if k >= size), ks[-1]) for size in sizes]
    patterns, powers = [], []
    for row, size in enumerate(pattern_sizes):
        mask = top_k_mask(maps[row], size)
        patterns.append(Pattern(mask, torch.where(mask, values[row], torch.zeros_like(values[row]))))
        powers.append(float(table.powers[row, ks.index(size)]))
    return patterns, powers


def _probe_flags(
    probe: Optional[Union[BlendProbe, WarpProbe]], threshold: float, scoring: ScoringSettings
) -> Tuple[np.ndarray, np.ndarray, Optional[float], List[int]]:
    """A dense probe's scores, anomaly indices, reference spread and flagged rows (empty without the probe)."""
    if probe is None:
        return np.zeros(0), np.zeros(0), None, []
    references = probe.reference_tables
    if any(t.powers.shape != probe.table.powers.shape for t in references):
        raise ValueError(
            "a reference probe table has another shape than the suspect's "
            f"{probe.table.powers.shape}: scan the references with the same classes and settings."
        )
    reference = np.array([t.class_scores() for t in references]) if references else None
    return flag_against_references(probe.table.class_scores(), reference, "high", threshold, scoring.reference_spread)


def _reference_raw(
    classes: List[int], tables: Sequence[PowerTable], scoring: ScoringSettings, height: int, width: int
) -> Optional[np.ndarray]:
    """The references' raw scores (n x K), or ``None`` without reference tables."""
    if not tables:
        return None
    if scoring.score == "mask_l1":
        raise ValueError("score='mask_l1' cannot be compared with a reference: use a power score.")
    raws = []
    for table in tables:
        if table.powers.shape[0] != len(classes) or (scoring.score == "power_at_k" and scoring.k not in table.ks):
            raise ValueError(
                f"a reference table has {table.powers.shape[0]} classes and sizes {table.ks}: it must come "
                f"from the same search over the classes {classes} with size k={scoring.k}."
            )
        raws.append(reference_raw(table, scoring, height, width))
    return np.array(raws)


def flag_against_references(
    raw: np.ndarray, references: Optional[np.ndarray], direction: str, threshold: float, use_spread: bool
) -> Tuple[np.ndarray, np.ndarray, Optional[float], List[int]]:
    """Flag the one-sided outliers of ``raw``, and with references only those that stay outliers relative to them.

    A class stays flagged only if it is also an outlier once each class is measured against
    the references' mean: the references can clear a flag, never raise one. With two or
    more references and ``use_spread``, the relative scores' anomaly index divides by at
    least the references' spread (:func:`reference_spread`): a class cannot stand out by
    less than clean models differ among themselves.

    Args:
        raw: the suspect's K raw scores.
        references: an n x K array of the references' raw scores, or ``None``.
        direction: ``"high"`` or ``"low"``, the suspicious end of the score.
        threshold: the anomaly-index threshold.
        use_spread: floor the relative index's spread by the references' spread.

    Returns:
        ``(scores, index, spread, rows)``: the scores the flags are reported on (relative to
        the references' mean when there are references), each class's anomaly index (the
        smaller of the two with references), the references' spread (``None`` when it was
        not used) and the flagged rows, most anomalous first.
    """
    index, rows = flag_outliers(raw.tolist(), direction, threshold)
    if references is None:
        return raw, index, None, rows
    relative_raw = raw - references.mean(axis=0)
    spread = reference_spread(references) if use_spread and references.shape[0] >= 2 else None
    relative, relative_rows = flag_outliers(relative_raw.tolist(), direction, threshold, spread or 0.0)
    index = np.minimum(index, relative)
    return relative_raw, index, spread, sorted(set(rows) & set(relative_rows), key=lambda row: -index[row])


def suspicion_of_classes(
    scores: Sequence[float],
    anomaly_index: Sequence[float],
    probes: Sequence[Tuple[Sequence[float], Sequence[float], float]],
    scoring: ScoringSettings,
    class_accuracy: Sequence[float] = (),
    accuracy_index: Sequence[float] = (),
) -> np.ndarray:
    """Each class's anomaly index over its threshold, patterns, a dense probe or accuracy, 0 on the harmless side.

    Args:
        scores: the patterns' score of each class.
        anomaly_index: their anomaly indices.
        probes: ``(scores, anomaly_index, threshold)`` of each dense probe that ran
            (blend, warp; high scores are suspicious).
        scoring: the patterns' threshold, the score's direction and the collapse ratio.
        class_accuracy: each class's held-out accuracy (empty: no collapse check).
        accuracy_index: the one-sided anomaly index of each class's accuracy relative to
            the references' (empty: no accuracy check).

    Returns:
        One value per class: the largest of the detectors' one-sided index over threshold,
        the collapse bar over the accuracy (:func:`collapse_suspicion`) and the accuracy
        index over ``scoring.accuracy_threshold``.
    """
    pattern_side = suspicious_side(scores, DIRECTION[scoring.score])
    suspicion = np.where(pattern_side, np.asarray(anomaly_index), 0.0) / scoring.threshold
    for probe_scores, probe_index, threshold in probes:
        if len(probe_scores):
            side = suspicious_side(probe_scores, "high")
            suspicion = np.maximum(suspicion, np.where(side, np.asarray(probe_index), 0.0) / threshold)
    if len(class_accuracy):
        suspicion = np.maximum(suspicion, collapse_suspicion(class_accuracy, scoring.collapse_ratio))
    if len(accuracy_index):
        suspicion = np.maximum(suspicion, np.asarray(accuracy_index) / scoring.accuracy_threshold)
    return suspicion

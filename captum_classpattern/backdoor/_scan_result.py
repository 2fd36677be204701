"""What a backdoor scan found: :class:`ScanResult`, scored from the search's maps and power table."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from .._utils import JsonFile, check_choice
from ..attr import Pattern, pixel_budget, top_k_mask
from ..metrics import flag_outliers, trigger_jaccard
from ._blend_probe import BlendProbe
from ._scan_scores import DIRECTION, PowerTable, reference_raw, shown_scores
from ._settings import SCORES, ScanSettings, ScoringSettings, TriggerRecoverySettings


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


def reference_spread(references: np.ndarray) -> float:
    """How much a class's score varies between clean models, as seen by a suspect compared with their mean.

    The standard deviation of each class's score over the ``n`` references, pooled over the
    classes (the root of the mean per-class variance), times ``sqrt(1 + 1/n)`` because the
    suspect is compared with the mean of only ``n`` references.

    Args:
        references: an n x K array (n >= 2) of the references' raw scores.

    Returns:
        The spread, on the scores' scale.
    """
    count = references.shape[0]
    return math.sqrt(float(references.var(axis=0, ddof=1).mean())) * math.sqrt(1.0 + 1.0 / count)


@dataclass
class ScanResult(JsonFile):
    """What :func:`~captum_classpattern.backdoor.scan` found.

    The scores, anomaly indices, flags and recovered patterns are computed from the power
    table and :attr:`scoring` when the result is built (:meth:`rescore` builds another one).

    Attributes:
        classes: the scanned classes, in order; every per-class list follows it.
        maps: K x H x W learned maps (pixel importance of each class's pattern).
        values: K x C x H x W pasted values (learned, or the fixed canvases).
        table: the predictive power of each class's top-k patterns (:class:`PowerTable`).
        scoring: the scoring settings, ``k`` and ``auc_k`` as pixel counts.
        settings: the search settings the scan ran with.
        recovery: the trigger-recovery settings it ran with.
        seed: the seed it ran with.
        trigger_maps: the recovered trigger of each class the patterns flag (and of the class the
            Jaccard is measured on): an H x W map from a second search whose size penalty
            also counts the map's total variation (see :class:`TriggerRecoverySettings`).
        trigger_values: the pasted values C x H x W of those triggers.
        trigger_jaccard: Jaccard index between the recovered top-k trigger pixels (k =
            trigger area) and the true trigger mask, when one was given; ``None`` otherwise.
        jaccard_class: the class whose pattern ``trigger_jaccard`` was measured on.
        seconds: wall time of the scan (with the reference models' searches, when the scan
            ran them).
        reference_tables: the power tables of the same search on each reference model
            (empty without a reference): what a model trained on clean data of the same
            task does with each class.
        blend: what the blend probe found (:class:`BlendProbe`: its patterns, their power at
            each blend strength, and the same on each reference); ``None`` when the probe
            was off (``ScanSettings(blend_steps=0)``).
        scores: the score of each class (see :attr:`score`): mean log-odds of the power for
            ``"power_auc"``, a pattern size in pixels for ``"min_k"``, a power for
            ``"power_at_k"``, the map's L1 norm for ``"mask_l1"``. With reference tables, the
            suspect's score relative to the references' mean: the difference of the
            log-odds or powers, the ratio of the sizes.
        suspect_scores: the suspect model's own scores (equal to ``scores`` without a
            reference).
        reference_scores: the references' mean score of each class (empty without a
            reference).
        anomaly_index: the MAD anomaly index of each class's score; with reference tables,
            the smaller of the suspect's own index and the index of the relative score.
        reference_spread: how much a class's score varies between the references
            (:func:`reference_spread`), the least spread the relative index divides by;
            ``None`` with fewer than two reference tables or ``scoring.reference_spread``
            off.
        pattern_flagged: classes flagged by the top-k patterns (one-sided outliers with
            index above the threshold), most anomalous first; with reference tables, only
            classes that are outliers both by the suspect's own scores and by the scores
            relative to the references.
        blend_scores: each class's blend-probe score (mean log-odds of its power over the
            strengths up to where a typical class reaches 0.5; high is suspicious),
            relative to the references' mean when there are references; empty without the
            probe.
        blend_anomaly_index: the MAD anomaly index of each blend score (with references,
            the smaller of the suspect's own index and the relative one); empty without
            the probe.
        blend_reference_spread: the same for the blend scores; ``None`` without the probe.
        blend_flagged: classes flagged by the blend probe, by the same rule as
            ``pattern_flagged`` with the threshold ``scoring.blend_threshold``.
        flagged: the classes flagged by either detector, most anomalous first.
        patterns: the recovered :class:`~captum_classpattern.Pattern` of each class: its
            top-k pixels with the searched values, ``k`` the smallest evaluated size that
            reaches the power threshold (``k`` itself for ``score="power_at_k"``).
        powers: predictive power of each recovered pattern on the held-out images.

    Raises:
        ValueError: a ``scoring.k`` that was not evaluated, or a score that needs powers
            the scan did not measure (scan with ``ScoringSettings(full_table=True)``).
    """

    classes: List[int]
    maps: Tensor
    values: Tensor
    table: PowerTable
    scoring: ScoringSettings = field(default_factory=ScoringSettings)
    settings: ScanSettings = field(default_factory=ScanSettings)
    recovery: TriggerRecoverySettings = field(default_factory=TriggerRecoverySettings)
    seed: int = 0
    trigger_maps: Dict[int, Tensor] = field(default_factory=dict)
    trigger_values: Dict[int, Tensor] = field(default_factory=dict)
    trigger_jaccard: Optional[float] = None
    jaccard_class: Optional[int] = None
    reference_tables: List[PowerTable] = field(default_factory=list)
    blend: Optional[BlendProbe] = None
    # Set by the scan once it has finished, not an input of the scoring.
    seconds: float = field(default=0.0, init=False)
    scores: List[float] = field(init=False)
    suspect_scores: List[float] = field(init=False)
    reference_scores: List[float] = field(init=False)
    anomaly_index: List[float] = field(init=False)
    reference_spread: Optional[float] = field(init=False)
    pattern_flagged: List[int] = field(init=False)
    blend_scores: List[float] = field(init=False)
    blend_anomaly_index: List[float] = field(init=False)
    blend_reference_spread: Optional[float] = field(init=False)
    blend_flagged: List[int] = field(init=False)
    flagged: List[int] = field(init=False)
    patterns: List[Pattern] = field(init=False)
    powers: List[float] = field(init=False)

    def __post_init__(self) -> None:
        """Score the classes from the power table, flag outliers and cut the recovered patterns."""
        ks, height, width = self.table.ks, self.maps.shape[-2], self.maps.shape[-1]
        k = self.scoring.k
        fixed_k = k if isinstance(k, int) else pixel_budget(k, height, width)
        if fixed_k not in ks:
            raise ValueError(f"k={k} was not evaluated; choose one of {ks}.")
        self.scoring = self.scoring.replace(k=fixed_k, auc_k=self.table.auc_size(self.scoring.auc_k, height, width))
        score = self.scoring.score
        sizes = self.table.smallest_sizes(self.scoring.power_threshold)
        raw = self.table.class_scores(score, self.maps, sizes, fixed_k, int(self.scoring.auc_k))
        suspect = raw
        reference = self._reference_raw(height, width)
        raw, index, spread, flagged_rows = flag_against_references(
            raw, reference, DIRECTION[score], self.scoring.threshold, self.scoring.reference_spread
        )
        # The recovered pattern: the smallest evaluated size reaching the power threshold (the
        # largest size if none does), or the fixed size for score="power_at_k".
        if score == "power_at_k":
            pattern_sizes = [fixed_k] * len(sizes)
        else:
            pattern_sizes = [next((k for k in ks if k >= size), ks[-1]) for size in sizes]
        self.patterns, self.powers = [], []
        for row, size in enumerate(pattern_sizes):
            mask = top_k_mask(self.maps[row], size)
            self.patterns.append(Pattern(mask, torch.where(mask, self.values[row], torch.zeros_like(self.values[row]))))
            self.powers.append(float(self.table.powers[row, ks.index(size)]))
        self.scores = shown_scores(score, raw)
        self.suspect_scores = shown_scores(score, suspect)
        self.reference_scores = [] if reference is None else shown_scores(score, reference.mean(axis=0))
        self.anomaly_index = [float(a) for a in index]
        self.reference_spread = spread
        self.pattern_flagged = [self.classes[r] for r in flagged_rows]
        blend_index, blend_rows = self._blend_flags()
        self.blend_flagged = [self.classes[r] for r in blend_rows]
        # Either detector's flag counts; the most anomalous class by either index comes first.
        strongest = np.maximum(index, blend_index) if blend_index.size else np.asarray(index)
        either = sorted(set(flagged_rows) | set(blend_rows), key=lambda r: -strongest[r])
        self.flagged = [self.classes[r] for r in either]

    def _blend_flags(self) -> Tuple[np.ndarray, List[int]]:
        """Score the blend probe and flag its outliers, as the patterns are flagged; sets ``blend_scores``."""
        self.blend_scores, self.blend_anomaly_index, self.blend_reference_spread = [], [], None
        if self.blend is None:
            return np.zeros(0), []
        references = self.blend.reference_tables
        if any(t.powers.shape != self.blend.table.powers.shape for t in references):
            raise ValueError(
                "a reference blend table has another shape than the suspect's "
                f"{self.blend.table.powers.shape}: scan the references with the same classes and settings."
            )
        reference = np.array([t.class_scores() for t in references]) if references else None
        raw, index, spread, rows = flag_against_references(
            self.blend.table.class_scores(),
            reference,
            "high",
            self.scoring.blend_threshold,
            self.scoring.reference_spread,
        )
        self.blend_scores = [float(v) for v in raw]
        self.blend_anomaly_index = [float(a) for a in index]
        self.blend_reference_spread = spread
        return index, rows

    def _reference_raw(self, height: int, width: int) -> Optional[np.ndarray]:
        """The references' raw scores (n x K), or ``None`` without reference tables."""
        if not self.reference_tables:
            return None
        if self.scoring.score == "mask_l1":
            raise ValueError("score='mask_l1' cannot be compared with a reference: use a power score.")
        raws = []
        for table in self.reference_tables:
            if table.powers.shape[0] != len(self.classes) or (
                self.scoring.score == "power_at_k" and self.scoring.k not in table.ks
            ):
                raise ValueError(
                    f"a reference table has {table.powers.shape[0]} classes and sizes {table.ks}: it must come "
                    f"from the same search over the classes {self.classes} with size k={self.scoring.k}."
                )
            raws.append(reference_raw(table, self.scoring, height, width))
        return np.array(raws)

    @property
    def score(self) -> str:
        """The score used: ``"power_auc"``, ``"min_k"``, ``"power_at_k"`` or ``"mask_l1"``."""
        return self.scoring.score

    @property
    def direction(self) -> str:
        """``"low"`` or ``"high"``: which end of the score is suspicious."""
        return DIRECTION[self.scoring.score]

    def most_suspicious(self) -> int:
        """The class with the largest anomaly index on the suspicious side, by either detector."""
        values = np.asarray(self.scores)
        median = np.median(values)
        side = values < median if self.direction == "low" else values > median
        index = np.where(side, np.asarray(self.anomaly_index), -1.0)
        if self.blend_scores:
            blend = np.asarray(self.blend_scores)
            index = np.maximum(index, np.where(blend > np.median(blend), np.asarray(self.blend_anomaly_index), -1.0))
        return self.classes[int(np.argmax(index))]

    def recovered_trigger(self, cls: int, k: Optional[int] = None) -> Pattern:
        """The recovered trigger of class ``cls`` as a pattern with its learned values.

        Args:
            cls: a class with a recovered trigger (a flagged class, or the Jaccard class).
            k: keep the top ``k`` pixels of the trigger map; by default the pixels the
                search selected (map >= 0.5).

        Returns:
            The trigger as a :class:`~captum_classpattern.Pattern`.

        Raises:
            ValueError: no trigger was recovered for ``cls``.
        """
        if cls not in self.trigger_maps:
            raise ValueError(
                f"no trigger was recovered for class {cls}; recovered: {sorted(self.trigger_maps)} "
                "(triggers are recovered for the classes the patterns flag and the trigger_target; a class the "
                "blend probe flags has its blended trigger in result.blend.patterns)."
            )
        trigger_map, values = self.trigger_maps[cls], self.trigger_values[cls]
        mask = trigger_map >= 0.5 if k is None else top_k_mask(trigger_map, pixel_budget(k, *trigger_map.shape))
        return Pattern(mask, torch.where(mask, values, torch.zeros_like(values)))

    def jaccard(self, true_mask: Tensor, cls: int, source: str = "trigger") -> float:
        """Jaccard index of class ``cls``'s top-k pixels (k = mask area) with ``true_mask``.

        Args:
            true_mask: the true H x W trigger mask.
            cls: the class to compare.
            source: ``"trigger"`` (default): the recovered trigger map when ``cls`` has one,
                else the detection search's map; ``"search"``: always the detection map.

        Returns:
            The Jaccard index, in [0, 1].

        Raises:
            ValueError: ``cls`` was not scanned, the mask does not fit the images, or an
                unknown ``source``.
        """
        check_choice(source, ("trigger", "search"), "source")
        if cls not in self.classes:
            raise ValueError(f"class {cls} was not scanned (scanned: {self.classes}).")
        if not isinstance(true_mask, Tensor) or tuple(true_mask.shape) != tuple(self.maps.shape[1:]):
            raise ValueError(f"true_mask must be an H x W tensor of shape {tuple(self.maps.shape[1:])}.")
        area = int(true_mask.bool().sum())
        if area == 0:
            raise ValueError("true_mask is empty.")
        if source == "trigger" and cls in self.trigger_maps:
            scores = self.trigger_maps[cls]
        else:
            scores = self.maps[self.classes.index(cls)]
        return trigger_jaccard(top_k_mask(scores.cpu(), area), true_mask)

    def rescore(
        self,
        score: str,
        *,
        power_threshold: Optional[float] = None,
        k: Optional[int] = None,
        auc_k: Union[int, float, str, None] = None,
        threshold: Optional[float] = None,
        reference: bool = True,
        blend_threshold: Optional[float] = None,
        reference_spread: Optional[bool] = None,
    ) -> ScanResult:
        """The same search scored another way (no new search).

        Args:
            score: ``"power_auc"``, ``"min_k"``, ``"power_at_k"`` or ``"mask_l1"``.
            power_threshold: the power ``"min_k"`` asks for (default: the scan's).
            k: the size of ``"power_at_k"``, one of the table's sizes (default: the scan's).
            auc_k: the largest size ``"power_auc"`` averages over: pixels, a fraction of
                the image or ``"median"`` (default: the size the scan used).
            threshold: the anomaly-index threshold (default: the scan's).
            reference: compare with the reference tables, if the scan has any (default);
                ``False`` scores the suspect alone, as a scan without a reference does.
            blend_threshold: the blend probe's anomaly-index threshold (default: the scan's).
            reference_spread: floor the relative index's spread by the references' spread
                (default: the scan's).

        Returns:
            A new :class:`ScanResult` sharing this one's maps and values.

        Raises:
            ValueError: an unknown score, a ``k`` that was not evaluated, powers the scan
                stopped computing early (scan with ``ScoringSettings(full_table=True)``), or
                ``"mask_l1"`` with reference tables.
            TypeError: ``reference`` is not a bool.
        """
        check_choice(score, SCORES, "score")
        if not isinstance(reference, bool):
            raise TypeError(f"reference must be a bool, got {type(reference).__name__}.")
        changes: Dict[str, Any] = {"score": score}
        named = (("power_threshold", power_threshold), ("k", k), ("auc_k", auc_k), ("threshold", threshold))
        for name, value in named + (("blend_threshold", blend_threshold), ("reference_spread", reference_spread)):
            if value is not None:
                changes[name] = value
        blend = self.blend
        if blend is not None and not reference:
            blend = dataclasses.replace(blend, reference_tables=[])
        # The triggers were recovered for this scan's flags; they are kept as they are.
        again = dataclasses.replace(
            self,
            scoring=self.scoring.replace(**changes),
            trigger_maps=dict(self.trigger_maps),
            trigger_values=dict(self.trigger_values),
            reference_tables=list(self.reference_tables) if reference else [],
            blend=blend,
        )
        again.seconds = self.seconds
        return again

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict: the summary first, then the power table, maps and values.

        :meth:`from_dict` rebuilds the result exactly (tensors on the CPU); NaN entries of
        the power table are written as ``None``.
        """
        return {
            "classes": list(self.classes),
            "score": self.score,
            "direction": self.direction,
            "scores": list(self.scores),
            "suspect_scores": list(self.suspect_scores),
            "reference_scores": list(self.reference_scores),
            "anomaly_index": list(self.anomaly_index),
            "reference_spread": self.reference_spread,
            "flagged": list(self.flagged),
            "pattern_flagged": list(self.pattern_flagged),
            "blend_flagged": list(self.blend_flagged),
            "blend_scores": list(self.blend_scores),
            "blend_anomaly_index": list(self.blend_anomaly_index),
            "blend_reference_spread": self.blend_reference_spread,
            "pattern_sizes": [p.k for p in self.patterns],
            "powers": list(self.powers),
            "trigger_classes": sorted(self.trigger_maps),
            "trigger_sizes": {str(c): int((m >= 0.5).sum()) for c, m in sorted(self.trigger_maps.items())},
            "trigger_jaccard": self.trigger_jaccard,
            "jaccard_class": self.jaccard_class,
            "seconds": self.seconds,
            "scoring": self.scoring.to_dict(),
            "settings": self.settings.to_dict(),
            "recovery": self.recovery.to_dict(),
            "seed": self.seed,
            "table": self.table.to_dict(),
            "reference_tables": [table.to_dict() for table in self.reference_tables],
            "dtype": str(self.maps.dtype).replace("torch.", ""),
            "maps": self.maps.tolist(),
            "values": self.values.tolist(),
            "trigger_maps": {str(c): m.tolist() for c, m in sorted(self.trigger_maps.items())},
            "trigger_values": {str(c): v.tolist() for c, v in sorted(self.trigger_values.items())},
            "blend": None if self.blend is None else self.blend.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> ScanResult:
        """Rebuild a result from :meth:`to_dict`'s output.

        The scores, flags and patterns are computed again from the table and the scoring
        settings, so they come out as they were.

        Args:
            data: the dict (e.g. read back from JSON).

        Returns:
            The :class:`ScanResult`, its tensors on the CPU.
        """
        dtype = getattr(torch, data.get("dtype", "float32"))
        blend = data.get("blend")
        result = cls(
            classes=[int(c) for c in data["classes"]],
            maps=torch.tensor(data["maps"], dtype=dtype),
            values=torch.tensor(data["values"], dtype=dtype),
            table=PowerTable.from_dict(data["table"]),
            scoring=ScoringSettings.from_dict(_scoring_as_written(data.get("scoring", {}))),
            settings=ScanSettings.from_dict(data.get("settings", {})),
            recovery=TriggerRecoverySettings.from_dict(data.get("recovery", {})),
            seed=int(data.get("seed", 0)),
            trigger_maps={int(c): torch.tensor(m, dtype=dtype) for c, m in data.get("trigger_maps", {}).items()},
            trigger_values={int(c): torch.tensor(v, dtype=dtype) for c, v in data.get("trigger_values", {}).items()},
            trigger_jaccard=data.get("trigger_jaccard"),
            jaccard_class=data.get("jaccard_class"),
            reference_tables=[PowerTable.from_dict(table) for table in data.get("reference_tables", [])],
            blend=None if blend is None else BlendProbe.from_dict(blend, dtype),
        )
        result.seconds = float(data.get("seconds", 0.0))
        return result


def _scoring_as_written(scoring: Dict[str, Any]) -> Dict[str, Any]:
    """Scoring settings read from a file; files without ``reference_spread`` were flagged without it."""
    return scoring if "reference_spread" in scoring else {**scoring, "reference_spread": False}

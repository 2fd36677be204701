"""What a backdoor scan found: :class:`ScanResult`, scored from the search's maps and power table."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from .._utils import JsonFile, check_choice
from ..attr import Pattern, pixel_budget, top_k_mask
from ..metrics import trigger_jaccard
from ._blend_probe import BlendProbe
from ._checks import check_reference_scan
from ._scan_arguments import TriggerFindings
from ._scan_record import config_as_written, scan_record, set_every_field, triggers_as_written
from ._scan_scores import DIRECTION, PowerTable
from ._scan_scoring import flag_against_references, score_classes, suspicion_of_classes  # noqa: F401 (tests import it from here)
from ._settings import SCORES, ScanConfig, ScanSettings, ScoringSettings, TriggerRecoverySettings
from ._warp_probe import WarpProbe


@dataclass(frozen=True, init=False)
class ScanResult(JsonFile):
    """What :func:`~captum_classpattern.backdoor.scan` found.

    A frozen record: :func:`score_scan` computes the scores, anomaly indices, flags and
    recovered patterns from the power table and :attr:`scoring` and builds it with every
    field given (:meth:`rescore` and :meth:`from_dict` build another one the same way).

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
        trigger_success: the share of the held-out images of other classes that each
            recovered trigger (its selected pixels with their values) sends to its class:
            how far it can be trusted without knowing the true trigger (see
            :attr:`reported_triggers`).
        trigger_elsewhere: the share of eight other places over the image at which each
            recovered trigger, moved whole, works as well (:func:`trigger_elsewhere`): from
            0.5 its pattern is the finding, not its place (a pooling model answers to it
            anywhere); empty in records written before it was measured.
        trigger_mirrored: the held-out success of each recovered trigger flipped left to
            right (:func:`trigger_mirror_success`): a model trained on flipped images answers
            at both places; empty in records written before it was measured.
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
        blend_scores, blend_anomaly_index, blend_reference_spread, blend_flagged: the blend
            probe's scores (mean log-odds of the power over the strengths up to where a
            typical class reaches 0.5; high is suspicious), indices, reference spread and
            flags, by the patterns' rule with ``scoring.blend_threshold``; empty or ``None``
            without the probe.
        warp: what the warp probe found (:class:`WarpProbe`: its fields, their power at each
            displacement length, and the same on each reference); ``None`` when it was off.
        warp_scores, warp_anomaly_index, warp_reference_spread, warp_flagged: the warp
            probe's scores, indices, reference spread and flags, by the blend probe's rule
            with the threshold ``scoring.warp_threshold``; empty or ``None`` without it.
        class_accuracy: the share of each class's held-out images the model classifies
            as the class (empty in records written before it was measured).
        collapsed: classes whose accuracy is below ``scoring.collapse_ratio`` times the
            median class's: the model does not recognise them without a trigger (a
            clean-label attack on every image of the class); lowest first.
        reference_accuracy, accuracy_index, weakened: each reference's class accuracies, each
            class's one-sided anomaly index of its accuracy relative to theirs (empty with
            fewer than two), and the classes recognised markedly less often than the
            references recognise them (index above ``scoring.accuracy_threshold``).
        flagged: the classes flagged by any detector (most anomalous first), then the
            collapsed and the weakened classes.
        patterns: the recovered :class:`~captum_classpattern.Pattern` of each class: its
            top-k pixels with the searched values, ``k`` the smallest evaluated size that
            reaches the power threshold (``k`` itself for ``score="power_at_k"``).
        powers: predictive power of each recovered pattern on the held-out images.

    """

    classes: List[int]
    maps: Tensor
    values: Tensor
    table: PowerTable
    scoring: ScoringSettings
    settings: ScanSettings
    recovery: TriggerRecoverySettings
    seed: int
    trigger_maps: Dict[int, Tensor]
    trigger_values: Dict[int, Tensor]
    trigger_success: Dict[int, float]
    trigger_elsewhere: Dict[int, float]
    trigger_mirrored: Dict[int, float]
    trigger_jaccard: Optional[float]
    jaccard_class: Optional[int]
    reference_tables: List[PowerTable]
    blend: Optional[BlendProbe]
    seconds: float
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
    warp: Optional[WarpProbe]
    warp_scores: List[float]
    warp_anomaly_index: List[float]
    warp_reference_spread: Optional[float]
    warp_flagged: List[int]
    flagged: List[int]
    patterns: List[Pattern]
    powers: List[float]
    class_accuracy: List[float]
    collapsed: List[int]
    reference_accuracy: List[List[float]]
    accuracy_index: List[float]
    weakened: List[int]

    def __init__(self, **fields: Any) -> None:
        """The record from every one of its fields, by name (:func:`score_scan` computes and gives them).

        Raises:
            TypeError: a field missing or unknown.
        """
        set_every_field(self, [f.name for f in dataclasses.fields(self)], fields)

    @property
    def score(self) -> str:
        """The score used: ``"power_auc"``, ``"min_k"``, ``"power_at_k"`` or ``"mask_l1"``."""
        return self.scoring.score

    @property
    def direction(self) -> str:
        """``"low"`` or ``"high"``: which end of the score is suspicious."""
        return DIRECTION[self.scoring.score]

    def class_suspicion(self) -> np.ndarray:
        """Each class's anomaly index over its threshold (in :attr:`classes` order), 0 on the harmless side.

        The largest of the patterns' index over ``scoring.threshold``, the blend and warp
        probes' over theirs (each 0 when the class is harder to flip than that detector's
        median class), the collapse bar over the class's accuracy (at most 10) and the
        accuracy index over ``scoring.accuracy_threshold``.
        """
        probes = [
            (self.blend_scores, self.blend_anomaly_index, self.scoring.blend_threshold),
            (self.warp_scores, self.warp_anomaly_index, self.scoring.warp_threshold),
        ]
        accuracy, accuracy_index = self.class_accuracy, self.accuracy_index
        return suspicion_of_classes(self.scores, self.anomaly_index, probes, self.scoring, accuracy, accuracy_index)

    def model_score(self) -> float:
        """The model's backdoor score, the largest :meth:`class_suspicion` (rank models with it, e.g. for an AUROC)."""
        return float(np.max(self.class_suspicion()))

    def most_suspicious(self) -> int:
        """The class with the largest :meth:`class_suspicion`, by either detector."""
        return self.classes[int(np.argmax(self.class_suspicion()))]

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

    @property
    def reported_triggers(self) -> List[int]:
        """The flagged classes whose recovered trigger works on held-out images, in order of :attr:`flagged`.

        A trigger is reported when it sends at least ``recovery.min_success`` of the
        held-out images of other classes to its class (:attr:`trigger_success`). That says
        the region works, not that it is the attacker's trigger: a large region with
        learned values can flip as many images as the true patch (see the trigger-recovery
        benchmark in the docs).
        """
        bar = self.recovery.min_success
        return [c for c in self.flagged if self.trigger_success.get(c, -1.0) >= bar]

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
        scoring = self.scoring.replace(**changes)
        if reference:
            return self._scored_again(scoring, self.reference_tables, self.blend, self.warp, self.reference_accuracy)
        blend = self.blend and dataclasses.replace(self.blend, reference_tables=[])
        warp = self.warp and dataclasses.replace(self.warp, reference_tables=[])
        return self._scored_again(scoring, [], blend, warp, [])

    def with_references(self, references: Sequence[ScanResult]) -> ScanResult:
        """This scan compared with reference scans, without searching again.

        The same as :func:`scan` with ``reference=references`` (results of the same search
        on clean models), for a scan already run alone: scan each suspect and each
        reference once, compare afterwards. The scores, anomaly indices and flags come
        out as ``scan`` with the references gives them; the recovered triggers are this
        scan's, recovered for the classes it flagged alone.

        Args:
            references: scans of clean reference models with this scan's settings,
                classes, image size, search images and held-out images (the last two
                cannot be checked: scan them with the same ones).

        Returns:
            A new :class:`ScanResult` with the references' tables.

        Raises:
            TypeError: a reference that is not a :class:`ScanResult`.
            ValueError: no reference, a reference with other classes, image size, settings
                or ``max_eval``, or without the blend probe this scan ran.

        Example:
            >>> alone = scan(suspect, images, labels, held_out=(eval_images, eval_labels))
            >>> refs = [scan(m, images, labels, held_out=(eval_images, eval_labels)) for m in clean_models]
            >>> alone.with_references(refs).flagged
        """
        references = list(references)
        if not references:
            raise ValueError("references is empty: pass the scans of one or more clean reference models.")
        for position, item in enumerate(references):
            if not isinstance(item, ScanResult):
                raise TypeError(f"reference {position} must be a ScanResult, got {type(item).__name__}.")
            size = self.maps.shape[-2:]
            probes = (bool(self.blend), bool(self.warp))
            check_reference_scan(
                item, f"reference {position}", self.classes, size, self.settings, probes, self.scoring.max_eval
            )
        blend, warp = self.blend, self.warp
        if blend is not None:
            blend = dataclasses.replace(blend, reference_tables=[r.blend.table for r in references])  # type: ignore[union-attr]
        if warp is not None:
            warp = dataclasses.replace(warp, reference_tables=[r.warp.table for r in references])  # type: ignore[union-attr]
        accuracy = [list(r.class_accuracy) for r in references]
        return self._scored_again(self.scoring, [r.table for r in references], blend, warp, accuracy)

    def _scored_again(
        self,
        scoring: ScoringSettings,
        reference_tables: List[PowerTable],
        blend: Optional[BlendProbe],
        warp: Optional[WarpProbe],
        reference_accuracy: List[List[float]],
    ) -> ScanResult:
        """This search scored with other settings or references (no new search)."""
        # The triggers were recovered for this scan's flags; they are kept as they are.
        triggers = (self.trigger_maps, self.trigger_values, self.trigger_jaccard, self.jaccard_class)
        found = TriggerFindings(*triggers, self.trigger_success, self.trigger_elsewhere, self.trigger_mirrored)
        return score_scan(
            self.classes, self.maps, self.values, self.table, ScanConfig(self.settings, scoring, self.recovery),
            seed=self.seed, reference_tables=reference_tables, blend=blend, warp=warp, triggers=found,
            seconds=self.seconds, class_accuracy=self.class_accuracy, reference_accuracy=reference_accuracy,
        )  # fmt: skip

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict: the summary first, then the power table, maps and values.

        :meth:`from_dict` rebuilds the result exactly (tensors on the CPU); NaN entries of
        the power table are written as ``None``.
        """
        return scan_record(self)

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
        blend, warp = data.get("blend"), data.get("warp")
        config = config_as_written(data)
        return score_scan(
            [int(c) for c in data["classes"]],
            torch.tensor(data["maps"], dtype=dtype),
            torch.tensor(data["values"], dtype=dtype),
            PowerTable.from_dict(data["table"]),
            config,
            seed=int(data.get("seed", 0)),
            reference_tables=[PowerTable.from_dict(table) for table in data.get("reference_tables", [])],
            blend=None if blend is None else BlendProbe.from_dict(blend, dtype),
            warp=None if warp is None else WarpProbe.from_dict(warp, dtype),
            triggers=triggers_as_written(data, dtype),
            seconds=float(data.get("seconds", 0.0)),
            class_accuracy=[float(a) for a in data.get("class_accuracy", [])],
            reference_accuracy=data.get("reference_accuracy", []),
        )


def score_scan(
    classes: List[int],
    maps: Tensor,
    values: Tensor,
    table: PowerTable,
    config: ScanConfig,
    *,
    seed: int = 0,
    reference_tables: Sequence[PowerTable] = (),
    blend: Optional[BlendProbe] = None,
    warp: Optional[WarpProbe] = None,
    triggers: Optional[TriggerFindings] = None,
    seconds: float = 0.0,
    class_accuracy: Sequence[float] = (),
    reference_accuracy: Sequence[Sequence[float]] = (),
) -> ScanResult:
    """Score a scan's search (:func:`score_classes`) and build its frozen :class:`ScanResult`, every field given.

    A pure function: the inputs are not changed, and equal inputs give equal results.

    Args:
        classes: the scanned classes, in order.
        maps: K x H x W learned maps.
        values: K x C x H x W pasted values.
        table: the power of each class's top-k patterns (:class:`PowerTable`).
        config: the search, scoring and trigger-recovery settings (:class:`ScanConfig`);
            the result keeps the scoring with ``k`` and ``auc_k`` as pixel counts.
        seed: the seed the scan ran with.
        reference_tables: the power tables of the same search on each reference model.
        blend: the blend probe (:class:`BlendProbe`), or ``None`` when it was off.
        warp: the warp probe (:class:`WarpProbe`), or ``None`` when it was off.
        triggers: the recovered triggers and the Jaccard with a known trigger (none by default).
        seconds: the scan's wall time.
        class_accuracy: each class's held-out accuracy (empty: not measured).
        reference_accuracy: each reference's accuracy of each class (empty: none).

    Returns:
        The :class:`ScanResult`.

    Raises:
        ValueError: a ``scoring.k`` that was not evaluated, a score that needs powers the
            scan did not measure, ``"mask_l1"`` with references, or reference tables that
            do not fit.
    """
    reference_tables = list(reference_tables)
    triggers = TriggerFindings() if triggers is None else triggers
    class_accuracy = [float(a) for a in class_accuracy]
    reference_accuracy = [[float(a) for a in row] for row in reference_accuracy]
    scored = score_classes(
        classes, maps, values, table, config.scoring, reference_tables, blend, class_accuracy, warp, reference_accuracy
    )
    return ScanResult(
        classes=classes,
        maps=maps,
        values=values,
        table=table,
        settings=config.search,
        recovery=config.recovery,
        seed=seed,
        trigger_maps=dict(triggers.maps),
        trigger_values=dict(triggers.values),
        trigger_success=dict(triggers.success),
        trigger_elsewhere=dict(triggers.elsewhere),
        trigger_mirrored=dict(triggers.mirrored),
        trigger_jaccard=triggers.jaccard,
        jaccard_class=triggers.jaccard_class,
        reference_tables=reference_tables,
        blend=blend,
        warp=warp,
        seconds=seconds,
        class_accuracy=class_accuracy,
        reference_accuracy=reference_accuracy,
        **{f.name: getattr(scored, f.name) for f in dataclasses.fields(scored)},
    )

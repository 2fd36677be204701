"""Settings of the backdoor searches: frozen, validated on creation, changed with ``.replace``."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Dict, Type, TypeVar, Union, cast

from .._utils import Replaceable, check_choice, check_positive_float, check_positive_int
from ..attr import SearchSchedule
from ._checks import check_budget, check_number, check_settings

VALUE_MODES = ("learned", "canvas")
INITS = ("image", "grey")
SCORES = ("power_auc", "min_k", "power_at_k", "mask_l1")
"""The class scores a scan can rank classes by (:attr:`ScoringSettings.score`)."""

_S = TypeVar("_S", bound="_Settings")

_SCAN_SCHEDULE = SearchSchedule(step_size=0.05, alpha=0.2, batch_size=24, steps=150, final_step_size=None)
"""The detection search's default schedule: 150 constant signed steps of 0.05 on batches of 24, ``alpha = 0.2``."""

# The blend probe's step is cosine-annealed from ScanSettings.value_step down to this share of it.
_BLEND_FINAL_STEP_SHARE = 0.2


class _Settings(Replaceable):
    """``to_dict`` and ``from_dict`` (and the shared ``replace``) for the frozen settings dataclasses below."""

    def to_dict(self) -> Dict[str, Any]:
        """The fields as a plain, JSON-ready dict."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: Type[_S], data: Dict[str, Any]) -> _S:
        """Settings from :meth:`to_dict`'s output (missing fields take their defaults).

        Raises:
            TypeError: an unknown field.
            ValueError: a field that fails its check.
        """
        return cls(**data)


def _check_bool(value: Any, name: str) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}.")


@dataclass(frozen=True)
class ScanSettings(_Settings):
    """Settings of the pattern search of :func:`~captum_classpattern.backdoor.scan`.

    Every field is checked when the settings are created (or changed with :meth:`replace`);
    a bad value raises a ``ValueError`` or ``TypeError`` naming the field. How the searched
    patterns are scored is set by :class:`ScoringSettings`.

    Attributes:
        values: ``"learned"`` (default: the pasted values are optimised with the map) or
            ``"canvas"`` (the paper's search: values copied from a clean canvas).
        init: the starting values: ``"grey"`` (default: 0.5 everywhere; only with
            ``values="learned"``) or ``"image"`` (the class's most confidently classified
            image).
        steps: optimisation steps, all classes stepping together (default 150).
        batch_size: other-class images per class per step (default 24).
        step_size: signed step on the map (default 0.05).
        value_step: signed step on the values with ``values="learned"`` (default 0.05).
        alpha: weight of the cross-entropy; ``1 - alpha`` weighs the map's size (default 0.2).
            These four are the search's :class:`~captum_classpattern.attr.SearchSchedule`
            (:attr:`schedule`): constant signed steps, no annealing.
        harden: share of the steps, at the end, in which the composite uses the binarised
            map, so that the searched composite is a real top-k stamp (default 0.5; 0 keeps
            the map soft throughout).
        blend_steps: steps of the dense blend probe, which finds blended triggers that no
            small stamp reproduces (default 60; 0 switches the probe off). For each class
            it learns one full-image pattern ``t`` whose blend ``(1 - a) x + a t`` with
            ``a = blend_strength`` makes other-class images classify as the class, and
            measures how many images it flips at blend strengths 0.02 to 0.3.
        blend_strength: the blend strength ``a`` the probe searches at (default 0.1).
        blend_batch_size: other-class images per class per step of the probe (default 8).
        warp_steps: steps of the warp probe, which finds warping triggers (WaNet) that
            neither a stamp nor a blend reproduces (default 60; 0 switches it off). For
            each class it learns one smooth displacement field, ``warp_grid`` x
            ``warp_grid`` control points upsampled over the image, at most
            ``warp_pixels`` pixels long, that makes ``warp_batch_size`` other-class images
            per step classify as the class, and measures how many images it flips at
            lengths 0.25 to 2 pixels.
        warp_batch_size: other-class images per class per step of the warp probe
            (default 8; scans recorded before this setting learned on ``batch_size``).
        warp_grid: control points per side of the warp probe's field (default 4).
        warp_pixels: the largest displacement, in pixels, the warp probe searches at
            (default 1.0).

    Example:
        >>> quick = ScanSettings(steps=60)
        >>> result = scan(model, images, labels, quick.replace(init="image"))
    """

    values: str = "learned"
    init: str = "grey"
    steps: int = cast(int, _SCAN_SCHEDULE.steps)
    batch_size: int = _SCAN_SCHEDULE.batch_size
    step_size: float = _SCAN_SCHEDULE.step_size
    value_step: float = 0.05
    alpha: float = _SCAN_SCHEDULE.alpha
    harden: float = 0.5
    blend_steps: int = 60
    blend_strength: float = 0.1
    blend_batch_size: int = 8
    warp_steps: int = 60
    warp_batch_size: int = 8
    warp_grid: int = 4
    warp_pixels: float = 1.0

    def __post_init__(self) -> None:
        check_choice(self.values, VALUE_MODES, "values")
        check_choice(self.init, INITS, "init")
        if self.values == "canvas" and self.init == "grey":
            raise ValueError("a fixed grey canvas carries no class information: use init='image' with values='canvas'.")
        for name in ("steps", "batch_size"):
            check_positive_int(getattr(self, name), name)
        for name in ("step_size", "value_step"):
            check_positive_float(getattr(self, name), name)
        check_number(self.alpha, "alpha", 0.0, 1.0)
        check_number(self.harden, "harden", 0.0, 1.0)
        for name in ("blend_steps", "warp_steps"):
            steps = getattr(self, name)
            if isinstance(steps, bool) or not isinstance(steps, int):
                raise TypeError(f"{name} must be an int, got {type(steps).__name__}.")
            if steps < 0:
                raise ValueError(f"{name} must be 0 (no probe) or more, got {steps}.")
        if isinstance(self.warp_grid, bool) or not isinstance(self.warp_grid, int) or self.warp_grid < 2:
            raise ValueError(f"warp_grid must be an int of at least 2, got {self.warp_grid!r}.")
        check_positive_float(self.warp_pixels, "warp_pixels")
        check_number(self.blend_strength, "blend_strength", 0.0, 1.0, low_open=True)
        check_positive_int(self.blend_batch_size, "blend_batch_size")
        check_positive_int(self.warp_batch_size, "warp_batch_size")

    @property
    def schedule(self) -> SearchSchedule:
        """The detection search's schedule: ``steps`` constant signed steps of ``step_size``, ``batch_size`` images."""
        return _SCAN_SCHEDULE.replace(
            steps=self.steps, batch_size=self.batch_size, step_size=self.step_size, alpha=self.alpha
        )

    @property
    def blend_schedule(self) -> SearchSchedule:
        """The blend probe's schedule: ``blend_steps`` signed steps on ``blend_batch_size`` images.

        The step is cosine-annealed from ``value_step`` to a fifth of it.

        Raises:
            ValueError: ``blend_steps`` is 0 (the probe is off).
        """
        return SearchSchedule(
            step_size=self.value_step,
            final_step_size=self.value_step * _BLEND_FINAL_STEP_SHARE,
            batch_size=self.blend_batch_size,
            steps=self.blend_steps,
        )


@dataclass(frozen=True)
class ScoringSettings(_Settings):
    """How :func:`~captum_classpattern.backdoor.scan` measures and scores the searched patterns, and flags classes.

    Each class's top-k patterns are stamped on held-out images of the other classes; the
    share classified as the class is the pattern's predictive power. The score turns the
    powers (or the map) into one number per class, and classes whose score is a one-sided
    outlier of the MAD anomaly index are flagged.
    :meth:`~captum_classpattern.backdoor.ScanResult.rescore` scores a finished scan again.

    Attributes:
        score: how a class is scored (default ``"power_auc"``): ``"power_auc"`` (mean
            log-odds of the predictive power of the top-k patterns over sizes 1 to
            ``auc_k`` pixels; high is suspicious), ``"min_k"`` (smallest size whose power
            reaches ``power_threshold``, log scale; low is suspicious), ``"power_at_k"``
            (power at size ``k``; high is suspicious) or ``"mask_l1"`` (L1 norm of the
            learned map, log scale; low is suspicious).
        power_threshold: the power ``"min_k"`` and the recovered patterns ask for (default 0.8).
        k: the pattern size of ``"power_at_k"``: pixels, or a fraction of the image
            (default 0.02).
        auc_k: the largest pattern size ``"power_auc"`` averages over: pixels, a fraction
            of the image, or ``"median"`` (default): the median over the classes of the
            smallest size whose power reaches 0.5, where a typical class starts to flip
            images.
        max_fraction: the largest pattern size evaluated, as a fraction of the image
            (default 1.0).
        max_eval: at most this many held-out images per class measure the powers of the
            patterns and the probes (default 150).
        threshold: the anomaly-index threshold of the top-k patterns (default 3.0; Neural
            Cleanse's convention is 2.0). A scan flags a class when either detector does, and
            two tests per class raise the chance that a clean class crosses one of them.
        blend_threshold: the anomaly-index threshold of the blend probe (default 3.0).
        reference_spread: with two or more reference models, the anomaly index of the
            scores relative to the references divides by at least the references' spread
            (how much a class's score varies from one clean reference to another, pooled
            over the classes), so that a class is not an outlier for differing from the
            references by no more than clean models differ among themselves (default
            ``True``).
        full_table: measure the power of every size for every class, and the probes at
            every strength (slower; default ``False``: what no score uses is skipped);
            needed to rescore with scores that use large sizes.
        warp_threshold: the anomaly-index threshold of the warp probe (default 3.0).
        collapse_ratio: a class is flagged as *collapsed* when the model classifies fewer
            of its own held-out images correctly than this share of the median class's
            accuracy (default 0.25; 0 turns the check off). A clean-label attack that
            poisons every training image of its target class leaves the model unable to
            recognise the class without the trigger.
        accuracy_threshold: with two or more references, a class is flagged as *weakened*
            when its held-out accuracy minus the references' accuracy of the same class is
            a low outlier among the classes, with an anomaly index above this (default
            3.0): a clean-label attack on part of its target class leaves the class
            recognised, but less often than clean models of the same design do.

    Example:
        >>> scan(model, images, labels, scoring=ScoringSettings(score="min_k", max_eval=150))
    """

    score: str = "power_auc"
    power_threshold: float = 0.8
    k: Union[int, float] = 0.02
    auc_k: Union[int, float, str] = "median"
    max_fraction: float = 1.0
    max_eval: int = 150
    threshold: float = 3.0
    full_table: bool = False
    blend_threshold: float = 3.0
    reference_spread: bool = True
    collapse_ratio: float = 0.25
    warp_threshold: float = 3.0
    accuracy_threshold: float = 3.0

    def __post_init__(self) -> None:
        check_choice(self.score, SCORES, "score")
        check_number(self.collapse_ratio, "collapse_ratio", 0.0, 1.0)
        check_number(self.power_threshold, "power_threshold", 0.0, 1.0, low_open=True)
        check_budget(self.k, "k")
        if self.auc_k != "median":
            check_budget(self.auc_k, "auc_k")
        check_number(self.max_fraction, "max_fraction", 0.0, 1.0, low_open=True)
        check_positive_int(self.max_eval, "max_eval")
        check_positive_float(self.threshold, "threshold")
        check_positive_float(self.blend_threshold, "blend_threshold")
        check_positive_float(self.warp_threshold, "warp_threshold")
        check_positive_float(self.accuracy_threshold, "accuracy_threshold")
        _check_bool(self.reference_spread, "reference_spread")
        _check_bool(self.full_table, "full_table")


@dataclass(frozen=True)
class TriggerRecoverySettings(_Settings):
    """Settings of the second search :func:`~captum_classpattern.backdoor.scan` runs for each flagged class.

    The detection search stops at the fewest pixels that work; this search recovers the
    trigger as one compact region by adding the map's total variation to its size
    penalty. It runs with the detection search's steps, batch size, step sizes and
    ``harden`` (:class:`ScanSettings`), only with ``values="learned"``.

    Attributes:
        smoothness: the multiple of the map's total variation added to its size penalty
            (default 2.0); 0 skips the second search.
        alpha: the weight of the cross-entropy in this search (default 0.5); a larger
            value than the detection search's keeps pushing the region to where the model
            responds most once it already works.
        max_shift: the recovered region is then slid by up to this many pixels (rows and
            columns) to where it raises the class's margin most on the clean images
            (:func:`locate_trigger`; default 4, 0 keeps it where the search left it).
        min_success: a recovered trigger is reported (:attr:`ScanResult.reported_triggers`,
            ``classpattern scan``) only when it sends at least this share of the held-out
            images of other classes to its class (default 0.8); the others are kept, with
            their success, but not reported.

    Example:
        >>> scan(model, images, labels, recovery=TriggerRecoverySettings(smoothness=0.0))  # no second search
    """

    smoothness: float = 2.0
    alpha: float = 0.5
    max_shift: int = 4
    min_success: float = 0.8

    def __post_init__(self) -> None:
        check_number(self.smoothness, "smoothness", 0.0, math.inf, high_open=True)
        check_number(self.alpha, "alpha", 0.0, 1.0)
        if isinstance(self.max_shift, bool) or not isinstance(self.max_shift, int) or self.max_shift < 0:
            raise ValueError(f"max_shift must be an int >= 0, got {self.max_shift!r}.")
        check_number(self.min_success, "min_success", 0.0, 1.0)


@dataclass(frozen=True)
class SuspicionSettings(_Settings):
    """Settings of :func:`~captum_classpattern.backdoor.suspicion_scores`.

    Attributes:
        k: the pattern size: pixels, or a fraction of the image (default 0.015: 4 of 256
            pixels, a part of a 3 x 3 trigger, too few for a clean image to flip most
            others).
        threshold: images whose score (a predictive power) reaches this are flagged; in
            (0, 1] (default 0.8).
        steps: search steps per canvas (default 10; a trigger is found fast).
        step_size: the first signed step on the map, annealed to a tenth of it (default 0.1).
        batch_size: reference images per canvas per step (default 8).
        chunk: canvases searched per batched call, which bounds memory (default 128).
        max_reference: reference images per class the power is measured on, a seeded
            random subset that bounds the cost (default 128).

    Example:
        >>> suspicion_scores(model, images, labels, SuspicionSettings(k=9, threshold=0.9))
    """

    k: Union[int, float] = 0.015
    threshold: float = 0.8
    steps: int = 10
    step_size: float = 0.1
    batch_size: int = 8
    chunk: int = 128
    max_reference: int = 128

    def __post_init__(self) -> None:
        check_budget(self.k, "k")
        check_number(self.threshold, "threshold", 0.0, 1.0, low_open=True)
        for name in ("steps", "batch_size", "chunk", "max_reference"):
            check_positive_int(getattr(self, name), name)
        check_positive_float(self.step_size, "step_size")


@dataclass(frozen=True)
class NeuralCleanseSettings(_Settings):
    """Settings of :func:`~captum_classpattern.backdoor.neural_cleanse` (the authors' values by default).

    Attributes:
        steps: optimisation steps, all classes stepping together (default 300).
        steps_per_epoch: steps per "epoch", the unit over which the attack success is
            averaged and ``lambda`` adjusted (default 10).
        batch_size: other-class images per class per step (default 32).
        lr: Adam's learning rate (default 0.1).
        init_cost: the first non-zero ``lambda`` (default 1e-3).
        cost_multiplier: ``lambda`` is multiplied by this to go up and divided by its power
            1.5 to go down; above 1 (default 1.5).
        patience: epochs of success (or failure) before ``lambda`` moves (default 5).
        success_threshold: the attack success a mask must reach to be kept, in (0, 1]
            (default 0.99).
        threshold: the anomaly-index threshold for flagging (default 2.0).

    Example:
        >>> neural_cleanse(model, images, labels, NeuralCleanseSettings(steps=150))
    """

    steps: int = 300
    steps_per_epoch: int = 10
    batch_size: int = 32
    lr: float = 0.1
    init_cost: float = 1e-3
    cost_multiplier: float = 1.5
    patience: int = 5
    success_threshold: float = 0.99
    threshold: float = 2.0

    def __post_init__(self) -> None:
        for name in ("steps", "steps_per_epoch", "batch_size", "patience"):
            check_positive_int(getattr(self, name), name)
        for name in ("lr", "init_cost", "threshold"):
            check_positive_float(getattr(self, name), name)
        check_number(self.cost_multiplier, "cost_multiplier", 1.0, math.inf, low_open=True)
        check_number(self.success_threshold, "success_threshold", 0.0, 1.0, low_open=True)


@dataclass(frozen=True)
class ScanConfig(_Settings):
    """Everything :func:`~captum_classpattern.backdoor.scan` is set with, in one object.

    Attributes:
        search: the pattern searches (:class:`ScanSettings`).
        scoring: how the patterns are measured and scored, and when a class is flagged
            (:class:`ScoringSettings`).
        recovery: the trigger-recovery search (:class:`TriggerRecoverySettings`).

    Raises:
        TypeError: a part of the wrong type.

    Example:
        >>> config = ScanConfig(ScanSettings(steps=60), ScoringSettings(max_eval=150))
        >>> result = scan(model, images, labels, config.replace(recovery=TriggerRecoverySettings(smoothness=0.0)))
    """

    search: ScanSettings = ScanSettings()
    scoring: ScoringSettings = ScoringSettings()
    recovery: TriggerRecoverySettings = TriggerRecoverySettings()

    def __post_init__(self) -> None:
        check_settings(self.search, ScanSettings, "settings")
        check_settings(self.scoring, ScoringSettings, "scoring")
        check_settings(self.recovery, TriggerRecoverySettings, "recovery")

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> ScanConfig:
        """The config from :meth:`to_dict`'s output (a missing part takes its defaults)."""
        return cls(
            ScanSettings.from_dict(data.get("search", {})),
            ScoringSettings.from_dict(data.get("scoring", {})),
            TriggerRecoverySettings.from_dict(data.get("recovery", {})),
        )

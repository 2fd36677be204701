"""The class-pattern backdoor scan: one pattern per class, scored and compared with the MAD anomaly index."""

from __future__ import annotations

import dataclasses
import time
from functools import partial
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from .._utils import (
    accepts_older_keywords,
    channels_last_inputs,
    check_images,
    check_labels,
    check_seed,
    evaluation_mode,
    predict,
    thread_scope,
)
from ._blend_probe import BlendProbe, BlendTable, learn_blend_patterns, measure_blend_powers
from ._checks import (
    budget_pixels,
    check_model,
    check_second_set,
    check_settings,
    check_trigger_mask,
    scanned_classes,
)
from ._scan_arguments import (
    OLDER_SCAN_KEYWORDS,
    HeldOut,
    KnownTrigger,
    as_scan_config,
    fold_scan_keywords,
    held_out_pair,
)
from ._scan_references import Reference, as_references, reference_tables
from ._scan_result import ScanResult, score_scan
from ._scan_scores import AUC_POWER, PowerTable, budget_grid, measure_powers
from ._scan_search import learn_patterns, pick_canvases
from ._settings import ScanConfig, ScanSettings, ScoringSettings, TriggerRecoverySettings
from ._trigger_check import locate_trigger, trigger_elsewhere, trigger_mirror_success, trigger_success
from ._warp_probe import WarpProbe, learn_warp_fields, measure_warp_powers

_DEFAULT_CONFIG = ScanConfig()
_NO_RECOVERY = TriggerRecoverySettings(smoothness=0.0)


@accepts_older_keywords(OLDER_SCAN_KEYWORDS, fold_scan_keywords)
def scan(
    model: Callable,
    images: Tensor,
    labels: Tensor,
    settings: Union[ScanSettings, ScanConfig] = _DEFAULT_CONFIG,
    *,
    held_out: Optional[HeldOut] = None,
    classes: Optional[Sequence[int]] = None,
    reference: Union[Reference, Sequence[Reference], None] = None,
    known_trigger: Optional[KnownTrigger] = None,
    seed: int = 0,
    show_progress: bool = False,
) -> ScanResult:
    """Scan a classifier for backdoors with one class pattern per class.

    One pattern per class is searched on clean images (all classes in one batched
    optimisation): a map ``m`` and, by default, pasted values ``v`` in [0, 1], composite
    ``m * v + (1 - m) * x``, loss ``alpha * CE + (1 - alpha) * sum(m) / (H W / 2)``,
    signed gradient steps. Each class is scored by how easily small top-k stamps of its
    pattern make held-out images of other classes classify as it, and classes whose score
    is a one-sided outlier (MAD anomaly index above ``scoring.threshold``) are flagged.
    For each class the patterns flag a second search recovers the trigger as one compact
    region (``recovery``).

    A blended trigger changes every pixel a little, and no small stamp reproduces it. A
    second, dense detector (the blend probe, ``settings.blend_steps``) learns one
    full-image pattern per class, blends it into other-class images at strength
    ``settings.blend_strength`` and measures the share of held-out images it flips at
    strengths 0.02 to 0.3; a class that flips them at much lower strengths than the others
    is flagged by the same anomaly rule. A warping trigger moves pixels instead of changing
    them: the warp probe (``settings.warp_steps``) learns one smooth displacement field per
    class, at most ``settings.warp_pixels`` long, and measures the share of held-out images
    each flips at lengths 0.25 to 2 pixels, flagged by the same rule. A class the model
    no longer recognises on its own held-out images (``scoring.collapse_ratio``) is flagged
    as collapsed. A class is flagged when any of these flags it.

    A clean-data scan alone cannot tell a poisoned class from a class with a *natural*
    backdoor: a few learned pixels that flip most images to it without any poisoning.
    Such a flag is true about the model (the pattern is a usable trigger) and a false
    alarm only about poisoning. With ``reference`` models, trained by the defender on
    clean data of the same task, the same search runs on each reference, every class is
    also scored relative to the references' mean, and a class stays flagged only if it is
    an outlier by that relative score too: a class that is just as easy to flip on a
    clean model is natural, a planted trigger works on the suspect only. With two or more
    references, that relative index divides by at least the references' own spread (how
    much a class's score varies between clean models; ``ScoringSettings.reference_spread``),
    so that a class cannot stand out by less than clean models differ. Two or more
    references also check each class's held-out accuracy against theirs: a class the
    model recognises far less often than they do (``scoring.accuracy_threshold``), the
    mark of a clean-label attack on part of the class, is flagged as *weakened*.

    Args:
        model: the classifier, returning N x num_classes logits for images in [0, 1]. Its
            mode, parameters, buffers and gradients are left as found.
        images: clean images N x C x H x W in [0, 1] the patterns are searched on (no
            trigger needed: a defender's held-out set).
        labels: their labels.
        settings: a :class:`ScanConfig`: the pattern searches' settings
            (:class:`ScanSettings`), how the patterns are measured and scored and when a
            class is flagged (:class:`ScoringSettings`), and the trigger-recovery search
            (:class:`TriggerRecoverySettings`); a :class:`ScanSettings` alone takes the
            default scoring and recovery.
        held_out: held-out images the patterns' predictive power is measured on, with
            their labels: a pair ``(images, labels)`` or a ``Split``; defaults to
            ``images``.
        classes: the classes to scan (default: every output class; at least three).
        reference: one or more reference models (clean models of the same task, on the
            images' device, left as found), or :class:`ScanResult` s of earlier scans of
            them with the same ``settings`` and ``classes`` (scan each reference once and
            pass its result to every suspect's scan). ``None`` (default) scores the suspect
            alone.
        known_trigger: the true trigger, when known (evaluation, :class:`KnownTrigger`):
            the result's ``trigger_jaccard`` compares its mask with the recovered top
            pixels of its target (default: the most suspicious class).
        seed: seeds the order of the search images and the held-out subsets.
        show_progress: show a tqdm progress bar.

    The older keywords ``scoring=``, ``recovery=`` (now in ``settings``),
    ``eval_images=``, ``eval_labels=`` (``held_out``), ``trigger_mask=`` and
    ``trigger_target=`` (``known_trigger``) are still accepted.

    Returns:
        A :class:`ScanResult`.

    Raises:
        TypeError: a model or reference that is not callable, settings of the wrong type,
            or images/labels of the wrong type.
        ValueError: bad shapes, pixels outside [0, 1], fewer than three classes, a class
            without images, a pattern size that does not fit the images, or a reference
            with another number of classes, on another device, returning probabilities,
            or scanned with other settings or another ``max_eval``.

    Example:
        >>> result = scan(model, clean.images, clean.labels, held_out=(held.images, held.labels))
        >>> result.flagged          # e.g. [0]: class 0 looks backdoored
        >>> result.patterns[0].stamp(images)
        >>> quick = scan(model, clean.images, clean.labels, ScanConfig(ScanSettings(steps=60),
        ...              ScoringSettings(max_eval=150)))
        >>> own = scan(reference_model, clean.images, clean.labels)  # once per reference
        >>> compared = scan(model, clean.images, clean.labels, reference=own)
        >>> compared.rescore("power_auc", reference=False).flagged  # the suspect alone
    """
    started = time.perf_counter()
    seed, config = _check_arguments(model, settings, seed)
    settings, scoring, recovery = config.search, config.scoring, config.recovery
    eval_images, eval_labels = held_out_pair(held_out)
    trigger_mask, trigger_target = (None, None) if known_trigger is None else (known_trigger.mask, known_trigger.target)
    labels, eval_images, eval_labels = _check_data(model, images, labels, eval_images, eval_labels)
    height, width = images.shape[-2:]
    fixed_k = _check_sizes(scoring, trigger_mask, height, width)
    references = as_references(reference)

    with evaluation_mode(model, "scan"), thread_scope():  # the loops' thread counts hold between their steps
        model = channels_last_inputs(model)
        targets = _scanned_targets(model, images, labels, eval_labels, classes, trigger_target, settings)
        run_reference = _reference_scan(images, labels, settings, scoring, eval_images, eval_labels, targets, seed)
        kept = reference_tables(references, run_reference, settings, model, targets.tolist(), images, scoring.max_eval)
        maps, learned = _search_patterns(model, images, labels, targets, settings, seed, show_progress)
        eval_labels = eval_labels.to(eval_images.device)
        table, auc_pixels = _measure_patterns(
            model, maps, learned, targets, eval_images, eval_labels, scoring, fixed_k, seed, show_progress
        )
        blend = _blend_probe(
            model, targets, images, labels, eval_images, eval_labels, settings, scoring, seed, show_progress,
            kept.blend,
        )  # fmt: skip
        warp = None
        if settings.warp_steps:
            fields = learn_warp_fields(model, targets, images, labels, settings, seed=seed, show_progress=show_progress)
            warp_table = measure_warp_powers(
                model, fields, targets, eval_images, eval_labels, max_images=scoring.max_eval, seed=seed,
                full_table=scoring.full_table,
            )  # fmt: skip
            warp = WarpProbe(fields, warp_table, list(kept.warp))
        scored = score_scan(
            targets.tolist(), maps, learned, table,
            config.replace(scoring=scoring.replace(k=fixed_k, auc_k=auc_pixels)),
            seed=seed, reference_tables=kept.patterns, blend=blend, warp=warp,
            class_accuracy=_class_accuracy(model, targets, eval_images, eval_labels),
            reference_accuracy=kept.accuracy,
        )  # fmt: skip
        jaccard_class = _jaccard_class(scored, trigger_mask, trigger_target)
        trigger_maps, trigger_values = _recover_triggers(
            scored, model, images, labels, targets, settings, recovery, jaccard_class, seed, show_progress
        )
        success = _trigger_success(model, trigger_maps, trigger_values, eval_images, eval_labels)
        elsewhere = _trigger_elsewhere(model, trigger_maps, trigger_values, (eval_images, eval_labels), recovery)
        mirrored = _trigger_mirrored(model, trigger_maps, trigger_values, eval_images, eval_labels)

    # The scores depend on neither the triggers nor the time: new records carry them over.
    found = dataclasses.replace(
        scored, trigger_maps=trigger_maps, trigger_values=trigger_values, trigger_success=success,
        trigger_elsewhere=elsewhere, trigger_mirrored=mirrored,
    )  # fmt: skip
    jaccard = None
    if jaccard_class is not None and trigger_mask is not None:
        jaccard = found.jaccard(trigger_mask.cpu(), jaccard_class)
    seconds = time.perf_counter() - started
    return dataclasses.replace(found, trigger_jaccard=jaccard, jaccard_class=jaccard_class, seconds=seconds)


def _check_arguments(model: Callable, settings: Union[ScanSettings, ScanConfig], seed: int) -> Tuple[int, ScanConfig]:
    """Refuse a bad seed, a model that cannot be called or settings of the wrong type; returns the seed and config."""
    seed = check_seed(seed)
    check_model(model)
    if not isinstance(settings, ScanConfig):
        check_settings(settings, ScanSettings, "settings")
    return seed, as_scan_config(settings)


def _check_data(
    model: Callable,
    images: Tensor,
    labels: Tensor,
    eval_images: Optional[Tensor],
    eval_labels: Optional[Tensor],
) -> Tuple[Tensor, Tensor, Tensor]:
    """Check the search images and the held-out set (default: the search images); returns both sets' labels."""
    check_images(images, "images")
    labels = check_labels(images, labels, "images'")
    eval_images, eval_labels = check_second_set(
        model, images, labels, eval_images, eval_labels, "eval_images", check_shape=True
    )
    return labels, eval_images, eval_labels


def _check_sizes(scoring: ScoringSettings, trigger_mask: Optional[Tensor], height: int, width: int) -> int:
    """Check the pattern sizes and the true trigger mask against the images; returns ``k`` in pixels."""
    fixed_k = budget_pixels(scoring.k, "k", height, width)
    if scoring.auc_k != "median":
        budget_pixels(scoring.auc_k, "auc_k", height, width)  # checked now, used after the search
    check_trigger_mask(trigger_mask, height, width)
    return fixed_k


def _scanned_targets(
    model: Callable,
    images: Tensor,
    labels: Tensor,
    eval_labels: Tensor,
    classes: Optional[Sequence[int]],
    trigger_target: Optional[int],
    settings: ScanSettings,
) -> Tensor:
    """The classes to scan, each checked to have a canvas image and held-out images of other classes."""
    targets = scanned_classes(model, images, classes, "scan", [(labels, "labels"), (eval_labels, "eval_labels")])
    if trigger_target is not None and int(trigger_target) not in targets.tolist():
        raise ValueError(f"trigger_target {trigger_target} is not among the scanned classes {targets.tolist()}.")
    for target in targets.tolist():
        if not bool((labels == target).any()) and settings.init == "image":
            raise ValueError(f"class {target} has no images to take a canvas from: pass init='grey'.")
        if not bool((eval_labels != target).any()):
            raise ValueError(f"no held-out images outside class {target} to measure the pattern on.")
    return targets


def _reference_scan(
    images: Tensor,
    labels: Tensor,
    settings: ScanSettings,
    scoring: ScoringSettings,
    eval_images: Tensor,
    eval_labels: Tensor,
    targets: Tensor,
    seed: int,
) -> Callable:
    """The scan of a reference model: this scan's images, settings, classes and seed, without trigger recovery."""
    config = ScanConfig(settings, scoring, _NO_RECOVERY)
    return partial(
        scan, images=images, labels=labels, settings=config, held_out=(eval_images, eval_labels),
        classes=targets.tolist(), seed=seed,
    )  # fmt: skip


def _search_patterns(
    model: Callable,
    images: Tensor,
    labels: Tensor,
    targets: Tensor,
    settings: ScanSettings,
    seed: int,
    show_progress: bool,
) -> Tuple[Tensor, Tensor]:
    """Search one pattern per class, all classes in one batched optimisation: its maps and learned values."""
    canvases = pick_canvases(model, images, labels, targets.tolist(), settings.init)
    return learn_patterns(
        model,
        canvases,
        targets,
        images,
        labels,
        settings,
        learn_values=settings.values == "learned",
        alpha=settings.alpha,
        seed=seed,
        show_progress=show_progress,
    )


def _measure_patterns(
    model: Callable,
    maps: Tensor,
    learned: Tensor,
    targets: Tensor,
    eval_images: Tensor,
    eval_labels: Tensor,
    scoring: ScoringSettings,
    fixed_k: int,
    seed: int,
    show_progress: bool,
) -> Tuple[PowerTable, int]:
    """Measure the patterns' power at the sizes the scores need; returns the table and power_auc's range."""
    height, width = eval_images.shape[-2:]
    ks = sorted(set(budget_grid(height, width, scoring.max_fraction)) | {fixed_k})
    # Each class needs its sizes up to where its power reaches both thresholds ...
    stop_at = None if scoring.full_table else max(scoring.power_threshold, AUC_POWER)
    measure = partial(
        measure_powers, model, maps, learned, targets, eval_images, eval_labels, ks,
        max_images=scoring.max_eval, seed=seed, show_progress=show_progress,
    )  # fmt: skip
    table = measure(stop_at=stop_at, always={fixed_k})
    # ... and power_auc needs every size up to its range, known only now.
    auc_pixels = table.auc_size(scoring.auc_k, height, width)
    table = measure(stop_at=0.0, always={size for size in ks if size <= auc_pixels}, known=table)
    return table, auc_pixels


def _blend_probe(
    model: Callable,
    targets: Tensor,
    images: Tensor,
    labels: Tensor,
    eval_images: Tensor,
    eval_labels: Tensor,
    settings: ScanSettings,
    scoring: ScoringSettings,
    seed: int,
    show_progress: bool,
    reference_tables: List[BlendTable],
) -> Optional[BlendProbe]:
    """Learn and measure the blend probe's full-image patterns (``None`` when ``settings.blend_steps`` is 0)."""
    if not settings.blend_steps:
        return None
    blend_patterns = learn_blend_patterns(
        model, targets, images, labels, settings, seed=seed, show_progress=show_progress
    )
    blend_table = measure_blend_powers(
        model, blend_patterns, targets, eval_images, eval_labels, max_images=scoring.max_eval, seed=seed,
        full_table=scoring.full_table,
    )  # fmt: skip
    return BlendProbe(blend_patterns, blend_table, reference_tables)


def _class_accuracy(model: Callable, targets: Tensor, eval_images: Tensor, eval_labels: Tensor) -> List[float]:
    """Each scanned class's held-out accuracy; empty (no collapse check) when a class has no held-out image."""
    if not all(bool((eval_labels == target).any()) for target in targets.tolist()):
        return []
    predicted = predict(model, eval_images, who="scan").to(eval_labels.device)
    return [float((predicted[eval_labels == t] == t).double().mean()) for t in targets.tolist()]


def _jaccard_class(result: ScanResult, trigger_mask: Optional[Tensor], trigger_target: Optional[int]) -> Optional[int]:
    """The class the true trigger mask is compared with (``None`` without a mask)."""
    if trigger_mask is None:
        return None
    return result.most_suspicious() if trigger_target is None else int(trigger_target)


def _recover_triggers(
    result: ScanResult,
    model: Callable,
    images: Tensor,
    labels: Tensor,
    targets: Tensor,
    settings: ScanSettings,
    recovery: TriggerRecoverySettings,
    jaccard_class: Optional[int],
    seed: int,
    show_progress: bool,
) -> Tuple[Dict[int, Tensor], Dict[int, Tensor]]:
    """Recover the trigger of each class the patterns flag (and the Jaccard class) as one compact region.

    Returns:
        The recovered trigger maps and pasted values, by class (empty when none is recovered).
    """
    # A class the blend probe flags has its trigger in result.blend.patterns: a compact
    # region would misdescribe a blend, so only the patterns' flags are recovered.
    wanted = list(dict.fromkeys(result.pattern_flagged + ([] if jaccard_class is None else [jaccard_class])))
    if not (wanted and recovery.smoothness > 0 and settings.values == "learned"):
        return {}, {}
    # A second, smaller search for the suspicious classes only: the detection search
    # stops at the fewest pixels that work; a total-variation penalty makes the
    # recovered trigger one compact region, which is what an attacker stamps.
    trigger_maps, trigger_values = learn_patterns(
        model,
        pick_canvases(model, images, labels, wanted, settings.init),
        torch.tensor(wanted, dtype=targets.dtype),
        images,
        labels,
        settings,
        learn_values=True,
        alpha=recovery.alpha,
        seed=seed,
        show_progress=show_progress,
        smoothness=recovery.smoothness,
        description="Trigger recovery",
    )
    maps, values = {}, {}
    for row, cls in enumerate(wanted):
        # The penalties pull the region to wherever it is cheapest; move it to where the
        # model answers to it most (a pooling model answers a few pixels off almost as well).
        located = locate_trigger(
            model, trigger_maps[row], trigger_values[row], images, labels, cls, max_shift=recovery.max_shift
        )
        maps[cls], values[cls] = located.map, located.values
    return maps, values


def _trigger_success(
    model: Callable, maps: Dict[int, Tensor], values: Dict[int, Tensor], images: Tensor, labels: Tensor
) -> Dict[int, float]:
    """The held-out success of each recovered trigger: its selected pixels (map >= 0.5) with their values."""
    return {cls: trigger_success(model, maps[cls] >= 0.5, values[cls], images, labels, cls) for cls in maps}


def _trigger_mirrored(
    model: Callable, maps: Dict[int, Tensor], values: Dict[int, Tensor], images: Tensor, labels: Tensor
) -> Dict[int, float]:
    """The held-out success of each recovered trigger flipped left to right."""
    return {cls: trigger_mirror_success(model, maps[cls] >= 0.5, values[cls], images, labels, cls) for cls in maps}


def _trigger_elsewhere(
    model: Callable,
    maps: Dict[int, Tensor],
    values: Dict[int, Tensor],
    held_out: Tuple[Tensor, Tensor],
    recovery: TriggerRecoverySettings,
) -> Dict[int, float]:
    """The share of other places at which each recovered trigger works too (at ``recovery.min_success``)."""
    return {
        cls: trigger_elsewhere(model, maps[cls] >= 0.5, values[cls], *held_out, cls, min_success=recovery.min_success)
        for cls in maps
    }

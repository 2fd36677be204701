"""A finished scan's patterns and probes measured again, on other held-out images or at another precision."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Optional

import torch

from .._utils import channels_last_inputs, check_device, check_images, check_labels, evaluation_mode, thread_scope
from ._blend_probe import BlendProbe, measure_blend_powers
from ._checks import check_model, check_settings
from ._scan import (
    _check_sizes,
    _class_accuracy,
    _measure_patterns,
    _trigger_elsewhere,
    _trigger_mirrored,
    _trigger_success,
)
from ._scan_arguments import HeldOut, held_out_pair
from ._scan_result import ScanResult, score_scan
from ._settings import ScanConfig, ScoringSettings
from ._warp_probe import WarpProbe, measure_warp_powers


def remeasure(
    result: ScanResult,
    model: Callable,
    held_out: HeldOut,
    scoring: Optional[ScoringSettings] = None,
    *,
    show_progress: bool = False,
) -> ScanResult:
    """Measure a finished scan's patterns and probes again, and score them; no new search.

    Everything :func:`scan` measures on held-out images (the top-k patterns' predictive
    power, the blend and warp probes' tables, each class's accuracy, the recovered
    triggers' success) is measured again on ``held_out`` with ``scoring``, and the scan is
    scored alone; the learned maps, values, probe patterns and fields and the recovered
    triggers are the result's. The search does not depend on the held-out images or the
    scoring, so this is what :func:`scan` with the same search settings and seed would
    return with these held-out images and this scoring (but for which classes' triggers
    were recovered, and the seconds, which stay the result's). Compare it with references
    measured alike by :meth:`ScanResult.with_references`.

    Args:
        result: a scan of ``model``.
        model: the scanned classifier, on the held-out images' device (left as found).
        held_out: the images to measure on, with their labels: a pair or a ``Split``.
        scoring: how to measure and score (default: :class:`ScoringSettings`' defaults),
            e.g. ``ScoringSettings(max_eval=1000)`` for more precise powers.
        show_progress: show a tqdm progress bar.

    Returns:
        A new :class:`ScanResult`, scored without references.

    Raises:
        TypeError: a result that is not a :class:`ScanResult`, a model that cannot be
            called, or scoring that is not a :class:`ScoringSettings`.
        ValueError: held-out images of another size than the scan's, or without images
            outside one of the scanned classes.

    Example:
        >>> found = scan(model, images, labels, held_out=(few_images, few_labels))
        >>> precise = remeasure(found, model, (more_images, more_labels), ScoringSettings(max_eval=1000))
        >>> precise.flagged
    """
    if not isinstance(result, ScanResult):
        raise TypeError(f"result must be a ScanResult, got {type(result).__name__}.")
    check_model(model)
    scoring = ScoringSettings() if scoring is None else scoring
    check_settings(scoring, ScoringSettings, "scoring")
    eval_images, eval_labels = held_out_pair(held_out)
    if eval_images is None:
        raise ValueError("held_out is None: pass the images to measure on and their labels.")
    check_images(eval_images, "held-out images")
    eval_labels = check_labels(eval_images, eval_labels, "held-out images'")
    check_device(model, eval_images, "held-out images")
    height, width = result.maps.shape[-2:]
    if tuple(eval_images.shape[-2:]) != (height, width):
        raise ValueError(
            f"the held-out images are {tuple(eval_images.shape[-2:])} pixels, the scan's patterns {(height, width)}: "
            "measure on images of the size the scan searched."
        )
    for cls in result.classes:
        if not bool((eval_labels != cls).any()):
            raise ValueError(f"no held-out images outside class {cls} to measure the pattern on.")
    fixed_k = _check_sizes(scoring, None, height, width)
    device = eval_images.device
    targets = torch.tensor(result.classes)
    eval_labels = eval_labels.to(device)
    maps, values = result.maps.to(device), result.values.to(device)
    trigger_maps = {cls: found.to(device) for cls, found in result.trigger_maps.items()}
    trigger_values = {cls: found.to(device) for cls, found in result.trigger_values.items()}
    with evaluation_mode(model, "remeasure"), thread_scope():
        model = channels_last_inputs(model)
        table, auc_pixels = _measure_patterns(
            model, maps, values, targets, eval_images, eval_labels, scoring, fixed_k, result.seed, show_progress
        )
        held = (eval_images, eval_labels)
        measured: Dict[str, Any] = dict(max_images=scoring.max_eval, seed=result.seed, full_table=scoring.full_table)
        blend = warp = None
        if result.blend is not None:
            patterns = result.blend.patterns
            blend_table = measure_blend_powers(model, patterns.to(device), targets, *held, **measured)
            blend = BlendProbe(patterns, blend_table)
        if result.warp is not None:
            fields = result.warp.fields
            warp_table = measure_warp_powers(model, fields.to(device), targets, *held, **measured)
            warp = WarpProbe(fields, warp_table)
        accuracy = _class_accuracy(model, targets, eval_images, eval_labels)
        success = _trigger_success(model, trigger_maps, trigger_values, eval_images, eval_labels)
        elsewhere = _trigger_elsewhere(model, trigger_maps, trigger_values, held, result.recovery)
        mirrored = _trigger_mirrored(model, trigger_maps, trigger_values, *held)
    config = ScanConfig(result.settings, scoring.replace(k=fixed_k, auc_k=auc_pixels), result.recovery)
    scored = score_scan(
        list(result.classes), result.maps, result.values, table, config, seed=result.seed, blend=blend, warp=warp,
        seconds=result.seconds, class_accuracy=accuracy,
    )  # fmt: skip
    return dataclasses.replace(
        scored,
        trigger_maps=dict(result.trigger_maps),
        trigger_values=dict(result.trigger_values),
        trigger_success=success,
        trigger_elsewhere=elsewhere,
        trigger_mirrored=mirrored,
        trigger_jaccard=result.trigger_jaccard,
        jaccard_class=result.jaccard_class,
    )

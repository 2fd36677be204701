"""Settings objects of the backdoor searches: defaults, validation, ``replace`` and serialisation."""

import dataclasses
import inspect
import json

import pytest

from captum_classpattern import backdoor
from captum_classpattern.backdoor import (
    BackdoorMetrics,
    NeuralCleanseSettings,
    ScanConfig,
    ScanSettings,
    ScoringSettings,
    SuspicionSettings,
    TriggerRecoverySettings,
    neural_cleanse,
    scan,
    suspicion_scores,
)

# The defaults of the keyword arguments scan, suspicion_scores and neural_cleanse took before
# they took settings objects; the settings must keep every one of them.
KEYWORD_DEFAULTS = {
    ScanSettings: dict(
        values="learned", init="grey", steps=150, batch_size=24, step_size=0.05, value_step=0.05, alpha=0.2, harden=0.5
    ),
    ScoringSettings: dict(
        score="power_auc",
        power_threshold=0.8,
        k=0.02,
        auc_k="median",
        max_fraction=1.0,
        max_eval=150,  # 300 before the dev zoo showed 150 flags the same classes
        threshold=3.0,  # 2.0 before version 0.4
        full_table=False,
    ),
    TriggerRecoverySettings: dict(smoothness=2.0, alpha=0.5),
    SuspicionSettings: dict(
        k=0.015, threshold=0.8, steps=10, step_size=0.1, batch_size=8, chunk=128, max_reference=128
    ),
    NeuralCleanseSettings: dict(
        steps=300,
        steps_per_epoch=10,
        batch_size=32,
        lr=0.1,
        init_cost=1e-3,
        cost_multiplier=1.5,
        patience=5,
        success_threshold=0.99,
        threshold=2.0,
    ),
}
# Fields added since, for the blend probe, the references' spread, placing and reporting a recovered trigger.
ADDED_DEFAULTS = {
    ScanSettings: dict(
        blend_steps=60,
        blend_strength=0.1,
        blend_batch_size=8,
        warp_steps=60,
        warp_batch_size=8,
        warp_grid=4,
        warp_pixels=1.0,
    ),
    ScoringSettings: dict(
        blend_threshold=3.0, reference_spread=True, collapse_ratio=0.25, warp_threshold=3.0, accuracy_threshold=3.0
    ),
    TriggerRecoverySettings: dict(max_shift=4, min_success=0.8),
}


@pytest.mark.parametrize("kind", list(KEYWORD_DEFAULTS), ids=lambda kind: kind.__name__)
def test_defaults_are_the_keyword_defaults(kind):
    assert kind().to_dict() == {**KEYWORD_DEFAULTS[kind], **ADDED_DEFAULTS.get(kind, {})}
    assert kind(**KEYWORD_DEFAULTS[kind]) == kind()
    assert kind.from_dict(json.loads(json.dumps(kind().to_dict()))) == kind()


def test_entry_points_default_to_the_default_settings():
    config = inspect.signature(scan).parameters["settings"].default
    assert config == ScanConfig()
    assert (config.search, config.scoring, config.recovery) == (
        ScanSettings(),
        ScoringSettings(),
        TriggerRecoverySettings(),
    )
    assert inspect.signature(suspicion_scores).parameters["settings"].default == SuspicionSettings()
    assert inspect.signature(neural_cleanse).parameters["settings"].default == NeuralCleanseSettings()
    for function in (scan, suspicion_scores, neural_cleanse):
        assert len(inspect.signature(function).parameters) <= 10, function.__name__


def test_scan_config_round_trips_and_refuses_parts_of_the_wrong_type():
    config = ScanConfig(ScanSettings(steps=60), ScoringSettings(max_eval=150), TriggerRecoverySettings(alpha=0.4))
    assert ScanConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert config.replace(search=ScanSettings()).scoring == ScoringSettings(max_eval=150)
    with pytest.raises(TypeError, match="scoring must be a ScoringSettings"):
        ScanConfig(scoring={"max_eval": 10})


def test_the_search_fields_are_one_search_schedule():
    settings = ScanSettings(steps=40, batch_size=5, step_size=0.03, alpha=0.3)
    schedule = settings.schedule
    assert (schedule.steps, schedule.batch_size, schedule.step_size, schedule.alpha) == (40, 5, 0.03, 0.3)
    assert schedule.optimizer == "sign" and not schedule.anneals and schedule.init == 0.5
    blend = ScanSettings(blend_steps=30, blend_batch_size=4, value_step=0.05).blend_schedule
    assert (blend.steps, blend.batch_size, blend.step_size) == (30, 4, 0.05)
    assert blend.final_step_size == pytest.approx(0.01)  # annealed to a fifth


@pytest.mark.parametrize(
    "kind, changes, error, field",
    [
        (ScanSettings, dict(values="stamp"), ValueError, "values"),
        (ScanSettings, dict(init="white"), ValueError, "init"),
        (ScanSettings, dict(steps=0), ValueError, "steps"),
        (ScanSettings, dict(steps=1.5), ValueError, "steps"),
        (ScanSettings, dict(batch_size=True), ValueError, "batch_size"),
        (ScanSettings, dict(step_size=0.0), ValueError, "step_size"),
        (ScanSettings, dict(value_step=-0.1), ValueError, "value_step"),
        (ScanSettings, dict(alpha=1.5), ValueError, "alpha"),
        (ScanSettings, dict(alpha="0.2"), TypeError, "alpha"),
        (ScanSettings, dict(harden=-0.1), ValueError, "harden"),
        (ScoringSettings, dict(score="loudness"), ValueError, "score"),
        (ScoringSettings, dict(power_threshold=1.5), ValueError, "power_threshold"),
        (ScoringSettings, dict(power_threshold=0.0), ValueError, "power_threshold"),
        (ScoringSettings, dict(k=0), ValueError, "k"),
        (ScoringSettings, dict(k=1.5), ValueError, "k"),
        (ScoringSettings, dict(k="5"), TypeError, "k"),
        (ScoringSettings, dict(auc_k="mean"), TypeError, "auc_k"),
        (ScoringSettings, dict(auc_k=0.0), ValueError, "auc_k"),
        (ScoringSettings, dict(max_fraction=0.0), ValueError, "max_fraction"),
        (ScoringSettings, dict(max_eval=0), ValueError, "max_eval"),
        (ScoringSettings, dict(threshold=0), ValueError, "threshold"),
        (ScoringSettings, dict(full_table=1), TypeError, "full_table"),
        (TriggerRecoverySettings, dict(smoothness=-1.0), ValueError, "smoothness"),
        (TriggerRecoverySettings, dict(smoothness=float("inf")), ValueError, "smoothness"),
        (TriggerRecoverySettings, dict(smoothness=float("nan")), ValueError, "smoothness"),
        (TriggerRecoverySettings, dict(alpha=2), ValueError, "alpha"),
        (SuspicionSettings, dict(k=-3), ValueError, "k"),
        (SuspicionSettings, dict(threshold=0.0), ValueError, "threshold"),
        (SuspicionSettings, dict(steps=0), ValueError, "steps"),
        (SuspicionSettings, dict(step_size=0), ValueError, "step_size"),
        (SuspicionSettings, dict(chunk=0), ValueError, "chunk"),
        (SuspicionSettings, dict(max_reference=-1), ValueError, "max_reference"),
        (NeuralCleanseSettings, dict(steps=0), ValueError, "steps"),
        (NeuralCleanseSettings, dict(steps_per_epoch=0), ValueError, "steps_per_epoch"),
        (NeuralCleanseSettings, dict(lr=0), ValueError, "lr"),
        (NeuralCleanseSettings, dict(init_cost=-1e-3), ValueError, "init_cost"),
        (NeuralCleanseSettings, dict(cost_multiplier=1.0), ValueError, "cost_multiplier"),
        (NeuralCleanseSettings, dict(patience=0), ValueError, "patience"),
        (NeuralCleanseSettings, dict(success_threshold=1.01), ValueError, "success_threshold"),
        (NeuralCleanseSettings, dict(threshold=-2.0), ValueError, "threshold"),
    ],
)
def test_a_bad_field_names_itself(kind, changes, error, field):
    with pytest.raises(error) as raised:
        kind(**changes)
    assert str(raised.value).startswith(f"{field} "), str(raised.value)
    with pytest.raises(error):  # replace checks again
        kind().replace(**changes)


def test_canvas_values_need_an_image_start():
    with pytest.raises(ValueError, match="grey canvas"):
        ScanSettings(values="canvas", init="grey")
    assert ScanSettings(values="canvas", init="image").values == "canvas"


def test_settings_are_frozen_and_replace_copies():
    settings = ScanSettings()
    quick = settings.replace(steps=60, init="image")
    assert (quick.steps, quick.init) == (60, "image") and settings.steps == 150
    assert dataclasses.replace(quick, steps=150, init="grey") == settings
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.steps = 10  # type: ignore[misc]
    with pytest.raises(TypeError):
        settings.replace(score="min_k")  # a scoring field
    with pytest.raises(TypeError):
        ScanSettings.from_dict({"stepz": 3})
    assert ScoringSettings(k=5, auc_k=12).to_dict()["auc_k"] == 12


def test_settings_are_exported_from_the_facade():
    for name in (
        "ScanSettings",
        "ScoringSettings",
        "TriggerRecoverySettings",
        "SuspicionSettings",
        "NeuralCleanseSettings",
        "PowerTable",
    ):
        assert name in backdoor.__all__


def test_backdoor_metrics_round_trip():
    metrics = BackdoorMetrics(clean_accuracy=0.99, attack_success_rate=0.97, robust_accuracy=0.02)
    data = metrics.to_dict()
    assert set(data) == {"clean_accuracy", "attack_success_rate", "robust_accuracy"}
    assert BackdoorMetrics.from_dict(json.loads(json.dumps(data))) == metrics

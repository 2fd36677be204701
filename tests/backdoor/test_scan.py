"""Backdoor scan, per-image suspicion, Neural Cleanse and the ``classpattern scan`` command."""

import copy
import dataclasses
import json
import warnings

import numpy as np
import pytest
import torch

from captum_classpattern.backdoor import (
    PLACE_FREE,
    KnownTrigger,
    NeuralCleanseResult,
    NeuralCleanseSettings,
    PatchTrigger,
    PoisonedDataset,
    ScanConfig,
    ScanResult,
    ScanSettings,
    ScoringSettings,
    SuspicionResult,
    TriggerRecoverySettings,
    neural_cleanse,
    scan,
    suspicion_scores,
    trigger_elsewhere,
    trigger_mirror_success,
)
from captum_classpattern.cli import main
from captum_classpattern.cli._report import trigger_place
from captum_classpattern.cli._scan import _print_findings
from captum_classpattern.metrics import flag_outliers, trigger_jaccard
from captum_classpattern.models import SmallCNN
from captum_classpattern.training import train_classifier

pytestmark = pytest.mark.usefixtures("one_thread")
# Short searches keep the file fast; the benchmark uses the defaults.
QUICK = ScanSettings(steps=60)
QUICK_SCORING = ScoringSettings(max_eval=150)
TARGET = 0
TRUE_MASK = PatchTrigger().mask(16, 16)


@pytest.fixture(scope="module")
def backdoored(digits16, one_thread):
    """A tiny SmallCNN trained on 16 x 16 digits with a 3 x 3 patch backdoor to class 0."""
    view = PoisonedDataset(
        (digits16.train.images, digits16.train.labels), PatchTrigger(), target=TARGET, rate=0.1, seed=0
    )
    images, labels = view.tensors()
    torch.manual_seed(0)
    model = train_classifier(SmallCNN(1, 10, 8), images, labels, epochs=10, seed=0)
    return model, images, labels, view.poisoned_indices


@pytest.fixture(scope="module")
def planted_scan(backdoored, digits16):
    """The quick scan of the backdoored model, with the true trigger mask."""
    return _scan(backdoored[0], digits16, trigger_mask=TRUE_MASK)


def _grads(model):
    return {name: None if p.grad is None else p.grad.clone() for name, p in model.named_parameters()}


def _same_grads(before, model):
    for name, p in model.named_parameters():
        if before[name] is None:
            assert p.grad is None, name
        else:
            torch.testing.assert_close(p.grad, before[name], msg=name)


def _scan(model, data, settings=QUICK, scoring=QUICK_SCORING, **kwargs):
    return scan(
        model,
        data.search.images,
        data.search.labels,
        settings,
        scoring=scoring,
        eval_images=data.eval.images,
        eval_labels=data.eval.labels,
        **kwargs,
    )


def test_backdoored_model_is_flagged_at_its_target(planted_scan, backdoored, digits16):
    model, result = backdoored[0], planted_scan
    assert result.flagged == [TARGET]
    assert result.anomaly_index[TARGET] > 2.5
    assert result.most_suspicious() == TARGET and result.jaccard_class == TARGET
    # The model's score is its target's index over the threshold: above 1, as the class is flagged.
    assert result.model_score() == pytest.approx(result.anomaly_index[TARGET] / result.scoring.threshold)
    assert result.model_score() > 1.0 and result.class_suspicion().argmax() == TARGET
    assert 0.0 <= result.trigger_jaccard <= 1.0
    # The recovered pattern is tiny and flips most other-class images.
    pattern = result.patterns[TARGET]
    assert pattern.k <= 9 and result.powers[TARGET] >= 0.8
    stamped = pattern.stamp(digits16.eval.images[digits16.eval.labels != TARGET])
    assert (model(stamped).argmax(1) == TARGET).float().mean() >= 0.8
    summary = json.loads(json.dumps(result.to_dict()))
    assert summary["flagged"] == [TARGET] and len(summary["anomaly_index"]) == 10
    assert summary["trigger_classes"] == [TARGET]
    assert result.settings == QUICK and result.recovery == TriggerRecoverySettings() and result.seed == 0
    assert result.scoring == QUICK_SCORING.replace(k=5, auc_k=result.scoring.auc_k)
    assert isinstance(result.scoring.auc_k, int)


def test_default_scan_reproduces_the_keyword_api_results(backdoored, digits16):
    # Recorded with the keyword-argument API (scan(model, images, labels, eval_images=..., eval_labels=...,
    # trigger_mask=...), every setting at its default) on this model: the settings objects keep the numbers.
    # max_eval is pinned at its default when they were recorded (300; 150 since).
    recorded = ScoringSettings(max_eval=300)
    result = scan(
        backdoored[0],
        digits16.search.images,
        digits16.search.labels,
        scoring=recorded,
        eval_images=digits16.eval.images,
        eval_labels=digits16.eval.labels,
        trigger_mask=TRUE_MASK,
    )
    assert result.settings == ScanSettings() and result.scoring.replace(k=0.02, auc_k="median") == recorded
    assert result.flagged == [TARGET] and result.jaccard_class == TARGET
    assert [p.k for p in result.patterns] == [2, 256, 44, 256, 11, 16, 11, 25, 133, 16]
    assert result.powers[TARGET] == pytest.approx(0.94)
    assert result.anomaly_index[TARGET] == pytest.approx(3.124, abs=1e-3)
    assert result.scores[TARGET] == pytest.approx(5.5471, abs=1e-4)
    assert {c: int((m >= 0.5).sum()) for c, m in result.trigger_maps.items()} == {TARGET: 4}
    assert result.trigger_jaccard == pytest.approx(0.125)


def test_a_trigger_that_works_anywhere_is_printed_without_a_place(planted_scan, capsys):
    names = [str(c) for c in range(10)]
    found = {"class": TARGET, "pixels": 9, "where": "rows 5-7, columns 2-4", "success": 0.97, "reported": True}
    info = {"true_target": TARGET}
    _print_findings(planted_scan, names, 3.0, 1.0, {**info, "recovered_triggers": [{**found, "elsewhere": 0.75}]})
    printed = capsys.readouterr().out
    assert "a 9-pixel pattern" in printed and "wherever it is stamped (75% of the other places tried)" in printed
    assert "rows 5-7" not in printed
    _print_findings(planted_scan, names, 3.0, 1.0, {**info, "recovered_triggers": [{**found, "elsewhere": 0.25}]})
    printed = capsys.readouterr().out
    assert "9 pixels at rows 5-7, columns 2-4" in printed and "works at 25% of the other places tried too" in printed
    assert "flipped left to right" not in printed
    # A stamp that works mirrored too is printed with both places, either of which may be the attacker's.
    for mirrored, said in ((0.95, True), (0.5, False)):
        both = {**found, "elsewhere": 0.125, "mirrored": mirrored, "mirror_where": "rows 5-7, columns 11-13"}
        _print_findings(planted_scan, names, 3.0, 1.0, {**info, "recovered_triggers": [both]})
        printed = capsys.readouterr().out
        assert ("flipped left to right (rows 5-7, columns 11-13) it sends 0.95 too" in printed) == said
        assert "9 pixels at rows 5-7, columns 2-4" in printed


def test_the_report_gives_a_place_only_where_the_trigger_is_tied_to_it(planted_scan):
    result = planted_scan
    trigger = result.recovered_trigger(TARGET)
    rows, cols = trigger.mask.nonzero(as_tuple=True)
    place = f"rows {int(rows.min())}-{int(rows.max())}, columns {int(cols.min())}-{int(cols.max())}"
    mirror = f"columns {15 - int(cols.max())}-{15 - int(cols.min())}"

    def told(elsewhere, mirrored, success=1.0):
        changed = dataclasses.replace(
            result, trigger_elsewhere={TARGET: elsewhere}, trigger_mirrored={TARGET: mirrored},
            trigger_success={TARGET: success},
        )  # fmt: skip
        return trigger_place(changed, TARGET)

    assert told(0.125, 0.1) == place
    assert told(0.125, 0.9) == f"{place}, or mirrored: rows {int(rows.min())}-{int(rows.max())}, {mirror}"
    assert told(0.75, 0.9) == "anywhere (75% of the other places tried)"
    assert told(0.0, 0.9, success=0.5) == "not reported (held-out success 0.50)"


def test_recovered_trigger_lies_at_the_right_edge_and_works(planted_scan, backdoored, digits16):
    model, result = backdoored[0], planted_scan
    trigger = result.recovered_trigger(TARGET)
    rows, cols = trigger.mask.nonzero(as_tuple=True)
    # The true patch is the bottom-right 3 x 3. This pooled model learned "bright pixels at
    # the right edge", and that is where the recovered region lies.
    assert trigger.k >= 2 and bool((cols >= 8).all())
    others = digits16.eval.images[digits16.eval.labels != TARGET]
    flipped = (model(trigger.stamp(others)).argmax(1) == TARGET).float().mean()
    assert flipped >= 0.8
    # The scan measured the same held-out success, so the trigger is reported.
    assert result.trigger_success[TARGET] == pytest.approx(float(flipped))
    assert result.reported_triggers == [TARGET]
    # Whether it works at other places too is measured the same way, on the same images.
    held = (digits16.eval.images, digits16.eval.labels)
    elsewhere = trigger_elsewhere(model, trigger.mask, trigger.values, *held, TARGET)
    assert set(result.trigger_elsewhere) == set(result.trigger_maps)
    assert result.trigger_elsewhere[TARGET] == pytest.approx(elsewhere)
    mirrored = trigger_mirror_success(model, trigger.mask, trigger.values, *held, TARGET)
    assert result.trigger_mirrored == {TARGET: pytest.approx(mirrored)}
    assert result.recovered_trigger(TARGET, k=9).k == 9
    with pytest.raises(ValueError, match="no trigger was recovered"):
        result.recovered_trigger(3)
    # Without the second search the Jaccard falls back to the detection map.
    plain = _scan(model, digits16, trigger_mask=TRUE_MASK, recovery=TriggerRecoverySettings(smoothness=0.0))
    assert plain.trigger_maps == {}
    assert plain.trigger_jaccard == plain.jaccard(TRUE_MASK, TARGET, source="search")


def test_scan_result_round_trips_through_json(planted_scan, tmp_path):
    result = planted_scan
    path = tmp_path / "sub" / "scan.json"
    result.to_json(path)
    again = ScanResult.from_json(path)
    assert json.loads(path.read_text())["flagged"] == [TARGET]
    for name in (
        "classes",
        "scores",
        "anomaly_index",
        "flagged",
        "powers",
        "score",
        "direction",
        "trigger_jaccard",
        "jaccard_class",
        "seconds",
        "settings",
        "scoring",
        "recovery",
        "seed",
        "class_accuracy",
        "collapsed",
    ):
        assert getattr(again, name) == getattr(result, name), name
    assert torch.equal(again.maps, result.maps) and torch.equal(again.values, result.values)
    assert (again.table.ks, again.table.counts) == (result.table.ks, result.table.counts)
    np.testing.assert_array_equal(again.table.powers, result.table.powers)
    for mine, theirs in zip(again.patterns, result.patterns):
        assert torch.equal(mine.mask, theirs.mask) and torch.equal(mine.values, theirs.values)
    assert set(again.trigger_maps) == {TARGET}
    assert torch.equal(again.trigger_maps[TARGET], result.trigger_maps[TARGET])
    assert torch.equal(again.trigger_values[TARGET], result.trigger_values[TARGET])
    # NaN entries of the table (sizes not measured) are written as null: strict JSON.
    json.loads(path.read_text(), parse_constant=lambda name: pytest.fail(f"{name} in the JSON"))


def test_clean_model_is_not_flagged(trained_digits_model, digits16):
    result = _scan(trained_digits_model, digits16)
    assert result.flagged == [] and result.collapsed == []
    assert result.classes == list(range(10)) and len(result.patterns) == 10
    assert len(result.class_accuracy) == 10 and min(result.class_accuracy) > 0.5


class _NeverPredicts(torch.nn.Module):
    """A model that no longer recognises one class: what poisoning every training image of it leaves."""

    def __init__(self, model, cls):
        super().__init__()
        self.model, self.cls = model, cls

    def forward(self, images):
        return self.model(images) - 30.0 * torch.nn.functional.one_hot(torch.tensor(self.cls), 10)


def test_a_collapsed_class_is_flagged_though_no_pattern_reaches_it(trained_digits_model, digits16, capsys):
    result = _scan(_NeverPredicts(trained_digits_model, 3), digits16)
    assert result.collapsed == [3] and 3 in result.flagged and 3 not in result.pattern_flagged
    assert result.class_accuracy[3] == 0.0 and np.median(result.class_accuracy) > 0.8
    assert result.model_score() == pytest.approx(10.0)  # the collapse bar over no accuracy, capped
    # Scored again, or read back from its dict, the record keeps the check; records without
    # the accuracies (written before it was measured) have no collapsed class.
    assert result.rescore("min_k").collapsed == [3]
    assert ScanResult.from_dict(result.to_dict()).collapsed == [3]
    older = {k: v for k, v in result.to_dict().items() if k not in ("class_accuracy", "collapsed")}
    assert ScanResult.from_dict(older).collapsed == []
    # The command line says what it saw.
    _print_findings(result, [str(c) for c in range(10)], 3.0, 1.0, {"recovered_triggers": []})
    assert "collapsed class 3: the model classifies 0.00 of its held-out images as it" in capsys.readouterr().out


def test_scan_leaves_the_model_untouched(backdoored, digits16):
    model = copy.deepcopy(backdoored[0]).train()
    model.features[1].eval()
    state = copy.deepcopy(model.state_dict())
    grads = _grads(model)
    with pytest.warns(UserWarning, match="training mode"):
        scan(model, digits16.search.images, digits16.search.labels, ScanSettings(steps=3), classes=[0, 1, 2])
    assert model.training and not model.features[1].training
    _same_grads(grads, model)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, state[name], msg=name)


def test_rescore_reuses_the_search(backdoored, digits16):
    result = _scan(backdoored[0], digits16, scoring=QUICK_SCORING.replace(full_table=True), classes=[0, 3, 5, 8])
    by_size = result.rescore("min_k", power_threshold=0.5)
    assert by_size.direction == "low" and by_size.maps is result.maps
    assert by_size.scores[0] == min(by_size.scores)
    assert by_size.scoring.score == "min_k" and by_size.scoring.power_threshold == 0.5
    assert by_size.settings == result.settings and by_size.table is result.table
    by_l1 = result.rescore("mask_l1")
    torch.testing.assert_close(
        torch.tensor(by_l1.scores, dtype=torch.float32), result.maps.sum((1, 2)).float(), rtol=1e-4, atol=1e-4
    )
    with pytest.raises(ValueError, match="not evaluated"):
        result.rescore("power_at_k", k=10_000)
    with pytest.raises(ValueError, match="score"):
        result.rescore("loudness")


def test_suspicion_finds_the_poisoned_images(backdoored):
    model, images, labels, poisoned = backdoored
    # The images labelled as the target: every poisoned image, and as many clean ones.
    result = suspicion_scores(model, images, labels, classes=[TARGET])
    assert torch.all(labels[result.indices] == TARGET)
    precision, recall = result.precision_recall(poisoned)
    assert precision >= 0.9 and recall >= 0.9
    assert trigger_jaccard(result.recovered_trigger(9), TRUE_MASK) >= 0.5
    again = SuspicionResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert torch.equal(again.indices, result.indices) and torch.equal(again.flagged, result.flagged)
    assert torch.equal(again.scores, result.scores) and torch.equal(again.maps, result.maps)
    assert (again.k, again.threshold) == (result.k, result.threshold)


def test_neural_cleanse_runs_batched_and_leaves_model_alone(backdoored, digits16):
    model = backdoored[0]
    state = copy.deepcopy(model.state_dict())
    grads = _grads(model)
    result = neural_cleanse(
        model,
        digits16.search.images,
        digits16.search.labels,
        NeuralCleanseSettings(steps=60),
        classes=[0, 3, 5, 8],
        trigger_mask=TRUE_MASK,
        trigger_target=TARGET,
    )
    assert result.classes == [0, 3, 5, 8] and result.masks.shape == (4, 16, 16)
    assert result.patterns.shape == (4, 1, 16, 16)
    assert result.masks.min() >= 0 and result.masks.max() <= 1
    assert len(result.norms) == 4 and result.jaccard_class == TARGET
    # Recorded with the keyword-argument API (steps=60, the same classes and trigger).
    assert result.flagged == [TARGET]
    assert result.norms[0] == pytest.approx(85.3675, abs=1e-3)
    assert result.trigger_jaccard == pytest.approx(1 / 17)
    _same_grads(grads, model)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, state[name], msg=name)
    again = NeuralCleanseResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again.norms == result.norms and again.flagged == result.flagged and again.settings == result.settings
    assert torch.equal(again.masks, result.masks) and torch.equal(again.patterns, result.patterns)


def test_flag_outliers_is_one_sided():
    index, flagged = flag_outliers([40, 38, 5, 44, 41, 39, 90], direction="low")
    assert flagged == [2]
    assert index[6] > 2  # a high outlier is not suspicious for a size
    _, flagged_high = flag_outliers([0.0, 0.01, 0.02, 0.01, 0.9], direction="high")
    assert flagged_high == [4]
    with pytest.raises(ValueError):
        flag_outliers([1.0, 2.0], direction="low")
    with pytest.raises(ValueError):
        flag_outliers([1.0, 2.0, 3.0], direction="sideways")


def test_trigger_jaccard():
    a = torch.zeros(4, 4, dtype=torch.bool)
    b = torch.zeros(4, 4, dtype=torch.bool)
    a[:2, :2] = True
    b[1:3, 1:3] = True
    assert trigger_jaccard(a, b) == pytest.approx(1 / 7)
    assert trigger_jaccard(a, a) == 1.0
    with pytest.raises(ValueError):
        trigger_jaccard(a, b[:3])


def test_grouped_arguments_give_the_older_keywords_results(backdoored, digits16):
    model = backdoored[0]
    tiny = ScanSettings(steps=5, blend_steps=2, batch_size=8)
    scoring, recovery = ScoringSettings(max_eval=20, max_fraction=0.1), TriggerRecoverySettings(alpha=0.4)
    common = dict(classes=[0, 1, 2], seed=1)
    older = scan(
        model, digits16.search.images, digits16.search.labels, tiny, scoring=scoring, recovery=recovery,
        eval_images=digits16.eval.images, eval_labels=digits16.eval.labels, trigger_mask=TRUE_MASK,
        trigger_target=TARGET, **common,
    )  # fmt: skip
    grouped = scan(
        model, digits16.search.images, digits16.search.labels, ScanConfig(tiny, scoring, recovery),
        held_out=digits16.eval, known_trigger=KnownTrigger(TRUE_MASK, TARGET), **common,
    )  # fmt: skip
    assert torch.equal(older.maps, grouped.maps) and older.scores == grouped.scores
    assert older.trigger_jaccard == grouped.trigger_jaccard and older.jaccard_class == grouped.jaccard_class == TARGET
    assert (grouped.settings, grouped.recovery) == (tiny, recovery)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(held_out=(None, None), eval_images=None), "held_out= or the older eval_images="),
        (dict(known_trigger=KnownTrigger(), trigger_target=0), "known_trigger= or the older trigger_target="),
        (dict(settings=ScanConfig(), scoring=ScoringSettings()), "put the scoring and recovery in it"),
        (dict(held_out="images"), "held_out must be a pair"),
    ],
)
def test_scan_refuses_an_argument_given_both_ways(trained_digits_model, digits16, kwargs, match):
    with pytest.raises(TypeError, match=match):
        scan(trained_digits_model, digits16.search.images, digits16.search.labels, **kwargs)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(classes=[0, 1]), ValueError, "three classes"),
        (dict(classes=[0, 0, 1]), ValueError, "repeat"),
        (dict(classes=[0, 1, 12]), ValueError, "out of range"),
        (dict(scoring=ScoringSettings(k=1000)), ValueError, r"^k: k must lie in 1\.\.256"),
        (dict(scoring=ScoringSettings(auc_k=300)), ValueError, "^auc_k: "),
        (dict(settings={"steps": 3}), TypeError, "settings must be a ScanSettings"),
        (dict(scoring=ScanSettings()), TypeError, "scoring must be a ScoringSettings"),
        (dict(recovery=ScanSettings()), TypeError, "recovery must be a TriggerRecoverySettings"),
        (dict(trigger_mask=torch.ones(3, 3, dtype=torch.bool)), ValueError, "trigger_mask"),
        (dict(trigger_mask=torch.zeros(16, 16, dtype=torch.bool)), ValueError, "trigger_mask is empty"),
        (dict(classes=[0, 1, 2], trigger_target=7), ValueError, "trigger_target 7 is not among"),
    ],
)
def test_scan_rejects_bad_settings(trained_digits_model, digits16, kwargs, error, match):
    with pytest.raises(error, match=match):
        scan(trained_digits_model, digits16.search.images, digits16.search.labels, **kwargs)


def test_scan_rejects_bad_inputs(trained_digits_model, digits16):
    images, labels = digits16.search.images, digits16.search.labels
    with pytest.raises(TypeError):
        scan("model", images, labels)
    with pytest.raises(ValueError, match="N x C x H x W"):
        scan(trained_digits_model, images[0], labels)
    with pytest.raises(ValueError, match="labels"):
        scan(trained_digits_model, images, labels[:5])
    with pytest.raises(TypeError, match="integer"):
        scan(trained_digits_model, images, labels.float() + 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        scan(trained_digits_model, images * 3, labels)
    with pytest.raises(ValueError, match="eval_labels"):
        scan(trained_digits_model, images, labels, eval_labels=labels)
    with pytest.raises(TypeError, match="settings must be a SuspicionSettings"):
        suspicion_scores(trained_digits_model, images, labels, ScanSettings())
    with pytest.raises(ValueError, match="three classes"):
        neural_cleanse(trained_digits_model, images, labels, classes=[0, 1])
    with pytest.raises(ValueError, match="trigger_target 7 was not scanned"):
        neural_cleanse(
            trained_digits_model, images, labels, classes=[0, 1, 2], trigger_target=7, trigger_mask=TRUE_MASK
        )


@pytest.mark.slow  # end to end: the command line trains its backdoored demo model, then scans it
def test_cli_scan_demo_writes_json_and_figure(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CLASSPATTERN_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        status = main(
            [
                "scan",
                "--demo-backdoor",
                "--steps",
                "40",
                "--max-eval",
                "150",
                "--out",
                str(out),
                "--no-progress",
                "--fail-on-flag",
            ]
        )
    report = json.loads((out / "scan.json").read_text())
    assert report["true_target"] == 0 and report["result"]["flagged"] == [0]
    assert status == 1  # --fail-on-flag: a flagged class fails the command
    assert (out / "scan.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.isfinite(report["result"]["anomaly_index"]).all()
    result = ScanResult.from_dict(report["result"])
    assert result.flagged == [0] and result.settings.steps == 40 and result.scoring.max_eval == 150
    # The recovered trigger is reported with its measured success, in image coordinates, or not at all.
    (found,) = report["recovered_triggers"]
    assert found["class"] == 0 and 0.0 <= found["success"] <= 1.0
    printed = capsys.readouterr().out
    if found["success"] >= 0.8 and found["elsewhere"] >= PLACE_FREE:
        assert "wherever it is stamped" in printed and found["where"] not in printed
    elif found["success"] >= 0.8:
        assert f"at {found['where']} of the 16 x 16 image" in printed
    else:
        assert "no trigger recovered for 0" in printed
    assert main(["scan", "--demo-backdoor", "--weights", "w.pt", "--out", str(out)]) == 2
    assert "--weights needs --model" in capsys.readouterr().err
    assert main(["scan", "--demo-backdoor", "--size", "18", "--out", str(out)]) == 2
    assert "multiple of 4" in capsys.readouterr().err

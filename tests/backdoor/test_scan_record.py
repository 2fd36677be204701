"""ScanResult is a frozen record built by score_scan, a pure function of the search's outputs."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from captum_classpattern.backdoor import PowerTable, ScanConfig, ScanResult, ScoringSettings
from captum_classpattern.backdoor._scan_result import TriggerFindings, score_scan

KS = [1, 2, 3, 4, 6, 8]


def _inputs():
    """A five-class search on 4 x 4 maps whose class 2 reaches full power with two pixels."""
    generator = torch.Generator().manual_seed(0)
    maps = torch.rand(5, 4, 4, generator=generator)
    values = torch.rand(5, 1, 4, 4, generator=generator)
    powers = np.tile(np.linspace(0.05, 0.45, len(KS)), (5, 1)) + np.arange(5)[:, None] * 0.01
    powers[2] = [0.3, 0.95, 1.0, 1.0, 1.0, 1.0]
    table = PowerTable(KS, powers, [20] * 5)
    config = ScanConfig(scoring=ScoringSettings(k=4, auc_k=8))
    return [0, 1, 2, 3, 4], maps, values, table, config


def test_score_scan_builds_a_frozen_record_and_changes_nothing_given():
    classes, maps, values, table, config = _inputs()
    before = (list(classes), maps.clone(), values.clone(), table.powers.copy(), config)
    triggers = TriggerFindings({2: maps[2]}, {2: values[2]}, 0.5, 2)
    result = score_scan(classes, maps, values, table, config, seed=3, triggers=triggers, seconds=1.5)
    assert result.flagged == [2] and result.pattern_flagged == [2] and result.seconds == 1.5
    assert result.scoring.k == 4 and result.trigger_jaccard == 0.5 and result.jaccard_class == 2 and result.seed == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.seconds = 0.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.flagged = []
    assert classes == before[0] and torch.equal(maps, before[1]) and torch.equal(values, before[2])
    assert np.array_equal(table.powers, before[3]) and config == before[4]
    again = score_scan(classes, maps, values, table, config, seed=3, triggers=triggers, seconds=1.5)
    assert json.dumps(again.to_dict()) == json.dumps(result.to_dict())


def test_rescore_and_from_dict_build_new_records():
    result = score_scan(*_inputs(), seconds=2.0)
    rescored = result.rescore("min_k", power_threshold=0.9)
    assert rescored is not result and rescored.score == "min_k" and result.score == "power_auc"
    assert rescored.seconds == result.seconds == 2.0
    read = ScanResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert read.to_dict() == result.to_dict()


def test_a_record_takes_every_field_by_name():
    result = score_scan(*_inputs())
    fields = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
    assert ScanResult(**fields).to_dict() == result.to_dict()
    with pytest.raises(TypeError, match="missing: \\['seconds'\\]"):
        ScanResult(**{name: value for name, value in fields.items() if name != "seconds"})
    with pytest.raises(TypeError, match="unknown: \\['extra'\\]"):
        ScanResult(**fields, extra=1)
    with pytest.raises(ValueError, match="k=5 was not evaluated"):
        score_scan(*_inputs()[:4], ScanConfig(scoring=ScoringSettings(k=5)))


def test_only_triggers_that_work_on_held_out_images_are_reported():
    classes, maps, values, table, config = _inputs()
    for success, reported in ((0.95, [2]), (0.5, [])):
        triggers = TriggerFindings(
            {2: maps[2]}, {2: values[2]}, success={2: success}, elsewhere={2: 0.625}, mirrored={2: 0.25}
        )
        result = score_scan(classes, maps, values, table, config, triggers=triggers)
        assert result.flagged == [2] and result.reported_triggers == reported
        summary = json.loads(json.dumps(result.to_dict()))
        assert summary["trigger_success"] == {"2": success} and summary["reported_triggers"] == reported
        assert ScanResult.from_dict(summary).reported_triggers == reported
        assert summary["trigger_elsewhere"] == {"2": 0.625}
        assert ScanResult.from_dict(summary).trigger_elsewhere == {2: 0.625}
        assert ScanResult.from_dict(summary).trigger_mirrored == {2: 0.25}
        assert result.rescore("min_k").trigger_mirrored == {2: 0.25}
    # The bar is a recovery setting; files written before it existed read back at the default.
    strict = score_scan(classes, maps, values, table, config.replace(recovery=config.recovery.replace(min_success=1.0)),
                        triggers=TriggerFindings({2: maps[2]}, {2: values[2]}, success={2: 0.95}))  # fmt: skip
    assert strict.reported_triggers == []
    old = result.to_dict()
    del old["recovery"]["min_success"], old["trigger_success"], old["trigger_elsewhere"], old["trigger_mirrored"]
    assert ScanResult.from_dict(old).trigger_success == {} and ScanResult.from_dict(old).reported_triggers == []
    assert ScanResult.from_dict(old).trigger_elsewhere == {} and ScanResult.from_dict(old).trigger_mirrored == {}


def test_records_written_before_the_warp_probe_had_its_own_batch_read_back_with_the_search_batch():
    result = score_scan(*_inputs())
    assert result.settings.warp_batch_size == 8
    older = json.loads(json.dumps(result.to_dict()))
    del older["settings"]["warp_batch_size"]
    assert ScanResult.from_dict(older).settings.warp_batch_size == result.settings.batch_size == 24
    assert ScanResult.from_dict(result.to_dict()).settings == result.settings


def test_with_references_needs_matching_scans():
    result = score_scan(*_inputs())
    with pytest.raises(ValueError, match="references is empty"):
        result.with_references([])
    with pytest.raises(TypeError, match="must be a ScanResult"):
        result.with_references([result.table])
    classes, maps, values, table, config = _inputs()
    fewer = score_scan(classes[:4], maps[:4], values[:4], PowerTable(KS, table.powers[:4], [20] * 4), config)
    with pytest.raises(ValueError, match="scanned the classes"):
        result.with_references([fewer])
    other = score_scan(classes, maps, values, table, config.replace(search=config.search.replace(steps=10)))
    with pytest.raises(ValueError, match="other ScanSettings"):
        result.with_references([other])
    # A reference equal to the suspect makes every relative score zero: nothing stands out.
    assert result.with_references([result]).flagged == [] and result.flagged == [2]


def test_class_suspicion_counts_only_the_suspicious_side():
    from captum_classpattern.backdoor._scan_scoring import suspicion_of_classes

    high = ScoringSettings(score="power_auc", threshold=3.0)
    # Class 0 is far out on the harmless side (hard to flip), class 1 a little on the suspicious side.
    scores, index = [-9.0, 1.0, 0.0, 0.1, -0.1], [9.0, 1.5, 0.0, 0.2, 0.2]
    np.testing.assert_allclose(suspicion_of_classes(scores, index, [], high), [0.0, 0.5, 0.0, 0.2 / 3.0, 0.0])
    # Small sizes are suspicious: class 0 is the outlier now.
    assert suspicion_of_classes(scores, index, [], high.replace(score="min_k"))[0] == pytest.approx(3.0)
    # A dense probe counts over its own threshold; its high side is always suspicious; a probe
    # that did not run (empty scores) counts nothing.
    blend = ([0.0, 0.0, 5.0, 0.0, 0.1], [0.5, 0.5, 12.0, 0.5, 0.4], 2.0)
    warp = ([0.0, 0.0, 0.0, 7.0, 0.1], [0.5, 0.5, 0.5, 10.0, 0.4], 4.0)
    suspicion = suspicion_of_classes(scores, index, [blend, warp, ([], [], 1.0)], high)
    assert suspicion[2] == pytest.approx(6.0) and suspicion[3] == pytest.approx(2.5)
    # A class the model no longer recognises counts by the collapse bar (capped at 10).
    assert suspicion_of_classes(scores, index, [], high, [0.9, 0.9, 0.0, 0.9, 0.9])[2] == pytest.approx(10.0)


def test_collapsed_rows_compare_with_the_median_class():
    from captum_classpattern.backdoor._scan_scoring import collapse_suspicion, collapsed_rows

    accuracy = [0.9, 0.85, 0.1, 0.2, 0.8, 0.88, 0.0]
    assert collapsed_rows(accuracy, 0.25) == [6, 2]  # below 0.25 x 0.8, lowest first
    assert collapsed_rows(accuracy, 0.0) == [] and collapsed_rows([], 0.25) == []
    # Its per-class score passes 1 exactly at the collapsed rows, capped at 10.
    score = collapse_suspicion(accuracy, 0.25)
    assert sorted(np.flatnonzero(score > 1.0)) == [2, 6] and score.max() == pytest.approx(10.0)
    assert score[0] == pytest.approx(0.2 / 0.9)
    with pytest.raises(ValueError, match="collapse_ratio"):
        ScoringSettings(collapse_ratio=1.5)

"""The backdoor scan compared with reference models: planted triggers stay flagged, natural shortcuts do not."""

import json

import numpy as np
import pytest
import torch

from captum_classpattern.backdoor import PatchTrigger, PoisonedDataset, ScanResult, ScanSettings, ScoringSettings, scan
from captum_classpattern.backdoor._scan_result import flag_against_references
from captum_classpattern.data import Split
from captum_classpattern.models import SmallCNN
from captum_classpattern.training import train_classifier

pytestmark = pytest.mark.usefixtures("one_thread")
QUICK = ScanSettings(steps=60)
QUICK_SCORING = ScoringSettings(max_eval=150)
TARGET = 0
# The natural shortcut: every image of this class carries a 2 x 2 white mark in the top-left
# corner, in the clean data itself, so every model trained on it learns the mark.
MARKED = 3
MARK = PatchTrigger(size=2, position="top-left")


def _train(images, labels, seed, epochs=6):
    torch.manual_seed(seed)
    return train_classifier(SmallCNN(1, 10, 8), images, labels, epochs=epochs, seed=seed)


def _scan(model, split_search, split_eval, **kwargs):
    return scan(
        model,
        split_search.images,
        split_search.labels,
        QUICK,
        scoring=QUICK_SCORING,
        eval_images=split_eval.images,
        eval_labels=split_eval.labels,
        **kwargs,
    )


def _marked(split):
    images = split.images.clone()
    chosen = split.labels == MARKED
    images[chosen] = MARK(images[chosen])
    return Split(images, split.labels)


# The tests that use the fixtures below are marked slow: between them they train five models
# and scan each (about 50 s of CPU). ``make test`` leaves them to ``make test-slow``.
@pytest.fixture(scope="module")
def clean_reference(digits16, one_thread):
    """A clean reference model and its scan (run once, reused by every suspect)."""
    model = _train(digits16.train.images, digits16.train.labels, seed=1)
    return model, _scan(model, digits16.search, digits16.eval)


@pytest.fixture(scope="module")
def planted(digits16, clean_reference, one_thread):
    """A SmallCNN with a 3 x 3 patch backdoor to class 0, scanned against the clean reference."""
    view = PoisonedDataset(
        (digits16.train.images, digits16.train.labels), PatchTrigger(), target=TARGET, rate=0.1, seed=0
    )
    model = _train(*view.tensors(), seed=0, epochs=10)
    return model, _scan(model, digits16.search, digits16.eval, reference=clean_reference[1])


@pytest.fixture(scope="module")
def planted_two_references(digits16, clean_reference, planted, one_thread):
    """The planted model scanned against two clean references, so their spread can be measured."""
    second = _train(digits16.train.images, digits16.train.labels, seed=2)
    own = _scan(second, digits16.search, digits16.eval)
    return _scan(planted[0], digits16.search, digits16.eval, reference=[clean_reference[1], own])


@pytest.fixture(scope="module")
def natural(digits16, one_thread):
    """Suspect and reference trained on data whose class 3 always carries the mark, and their scans."""
    train, search, held = _marked(digits16.train), _marked(digits16.search), _marked(digits16.eval)
    suspect = _train(train.images, train.labels, seed=0)
    reference = _train(train.images, train.labels, seed=1)
    own = _scan(reference, search, held)
    return suspect, reference, search, held, own, _scan(suspect, search, held, reference=own)


@pytest.mark.slow
def test_planted_patch_is_flagged_with_a_reference(planted):
    result = planted[1]
    assert TARGET in result.flagged
    assert len(result.reference_tables) == 1 and len(result.reference_scores) == 10
    assert result.scores[TARGET] == max(result.scores)
    # Without the reference the same search flags the target too; the reference only clears flags.
    alone = result.rescore("power_auc", reference=False)
    assert TARGET in alone.flagged and set(result.flagged) <= set(alone.flagged)
    assert all(a <= b for a, b in zip(result.anomaly_index, alone.anomaly_index))


@pytest.mark.slow
def test_planted_patch_stays_flagged_against_the_references_spread(planted_two_references):
    result = planted_two_references
    # These tiny references disagree a lot with each other, and the target still stands out.
    assert result.reference_spread is not None and result.reference_spread > 1.0
    assert result.flagged == [TARGET]
    assert result.anomaly_index[TARGET] > result.scoring.threshold
    # The spread only ever lowers the index: without it the target is flagged all the same.
    unfloored = result.rescore("power_auc", reference_spread=False)
    assert unfloored.reference_spread is None and TARGET in unfloored.flagged
    assert all(a <= b + 1e-12 for a, b in zip(result.anomaly_index, unfloored.anomaly_index))


def test_a_class_within_the_references_spread_is_cleared():
    # Nine classes almost equal, one a little easier on the suspect than on the references:
    # the MAD of the relative scores is tiny, so it looks anomalous, but clean references
    # differ from each other by more than that.
    rng = np.random.default_rng(0)
    raw = np.array([0.0, 0.02, -0.02, 0.01, -0.01, 0.03, -0.03, 0.015, -0.015, 0.6])
    references = rng.normal(0.0, 0.3, size=(3, 10))
    references -= references.mean(axis=0) + rng.normal(0.0, 0.01, size=10)
    _, index, spread, rows = flag_against_references(raw, references, "high", 3.0, False)
    assert spread is None and rows == [9] and index[9] > 3.0
    _, index, spread, rows = flag_against_references(raw, references, "high", 3.0, True)
    assert rows == [] and index[9] < 3.0
    assert spread == pytest.approx(np.sqrt(references.var(axis=0, ddof=1).mean() * 4 / 3))
    # A planted class moves by many spreads and stays flagged.
    planted = raw.copy()
    planted[9] = 6.0
    assert flag_against_references(planted, references, "high", 3.0, True)[3] == [9]
    # One reference has no spread: the floor is skipped and the flag stands.
    _, _, spread, rows = flag_against_references(raw, references[:1], "high", 3.0, True)
    assert spread is None and rows == [9]
    # For sizes (small is suspicious) the same holds downwards.
    assert flag_against_references(-raw, -references, "low", 3.0, True)[3] == []
    assert flag_against_references(-planted, -references, "low", 3.0, True)[3] == [9]


@pytest.mark.slow
def test_reference_spread_is_checked_and_old_files_keep_their_flags(natural, tmp_path):
    with pytest.raises(TypeError, match="reference_spread"):
        ScoringSettings(reference_spread=1)
    # A file written before the setting existed is read back without the floor.
    path = tmp_path / "old.json"
    natural[-1].to_json(path)
    data = json.loads(path.read_text())
    del data["scoring"]["reference_spread"]
    path.write_text(json.dumps(data))
    assert ScanResult.from_json(path).scoring.reference_spread is False


@pytest.mark.slow
def test_natural_shortcut_is_flagged_alone_but_not_with_the_reference(natural):
    result = natural[-1]
    # At Neural Cleanse's lenient threshold the shortcut is an outlier of the suspect alone...
    alone = result.rescore("power_auc", reference=False, threshold=2.0)
    assert MARKED in alone.flagged
    # ...and the reference clears it, at that threshold and at the default one.
    assert MARKED not in result.rescore("power_auc", threshold=2.0).flagged
    assert MARKED not in result.flagged and result.flagged == []
    # The reference obeys the mark as well: its class is as easy to flip there.
    assert result.reference_scores[MARKED] >= np.median(result.reference_scores)


@pytest.mark.slow
def test_without_reference_the_scan_is_unchanged(natural):
    suspect, _, search, held, _, result = natural
    plain = _scan(suspect, search, held)
    alone = result.rescore("power_auc", reference=False)
    assert plain.reference_tables == [] and plain.reference_scores == []
    assert plain.scores == plain.suspect_scores == alone.scores == result.suspect_scores
    assert plain.flagged == alone.flagged and plain.anomaly_index == alone.anomaly_index


@pytest.mark.slow
def test_reference_models_are_scanned_like_their_results(natural):
    suspect, reference, search, held, own, result = natural
    direct = _scan(suspect, search, held, reference=[reference])
    np.testing.assert_array_equal(direct.reference_tables[0].powers, own.table.powers)
    assert direct.flagged == result.flagged and direct.scores == result.scores


@pytest.mark.slow
def test_reference_fields_round_trip_through_json(natural, tmp_path):
    result = natural[-1]
    path = tmp_path / "scan.json"
    result.to_json(path)
    again = ScanResult.from_json(path)
    data = json.loads(path.read_text())
    assert len(data["reference_tables"]) == 1 and data["reference_scores"] == result.reference_scores
    for name in ("scores", "suspect_scores", "reference_scores", "anomaly_index", "flagged"):
        assert getattr(again, name) == getattr(result, name), name
    np.testing.assert_array_equal(again.reference_tables[0].powers, result.reference_tables[0].powers)


@pytest.mark.slow
def test_rescore_keeps_the_reference(natural):
    result = natural[-1]
    by_size = result.rescore("min_k")
    assert by_size.reference_tables == result.reference_tables and len(by_size.reference_scores) == 10
    with pytest.raises(ValueError, match="mask_l1"):
        result.rescore("mask_l1")
    assert result.rescore("mask_l1", reference=False).reference_scores == []
    with pytest.raises(TypeError, match="reference must be a bool"):
        result.rescore("power_auc", reference="no")


@pytest.mark.slow
def test_bad_references_are_refused(natural, digits16):
    suspect, reference, search, held, own, _ = natural
    images, labels = search.images[:60], search.labels[:60]
    quick = ScanSettings(steps=2)

    def run(ref, **kwargs):
        scan(suspect, images, labels, kwargs.pop("settings", quick), classes=[0, 1, 2], reference=ref, **kwargs)

    with pytest.raises(ValueError, match="reference 0 has 5 output classes but the model has 10"):
        run(SmallCNN(1, 5, 4).eval())
    with pytest.raises(ValueError, match="reference 1 is on meta"):
        run([reference, SmallCNN(1, 10, 4).eval().to("meta")])
    with pytest.raises(ValueError, match="reference 0: .*probabilities"):
        run(torch.nn.Sequential(reference, torch.nn.Softmax(dim=1)))
    with pytest.raises(TypeError, match="reference must be a model"):
        run("reference.pt")
    with pytest.raises(ValueError, match="empty list"):
        run([])
    with pytest.raises(ValueError, match="needs the classes"):
        run(own)
    with pytest.raises(ValueError, match="other ScanSettings"):
        scan(suspect, search.images, search.labels, quick, reference=own)


@pytest.mark.slow
def test_a_scan_alone_compared_afterwards_equals_the_scan_with_references(planted, clean_reference, digits16):
    model, together = planted
    alone = _scan(model, digits16.search, digits16.eval)
    afterwards = alone.with_references([clean_reference[1]])
    for name in ("scores", "suspect_scores", "reference_scores", "anomaly_index", "reference_spread", "flagged",
                 "pattern_flagged", "blend_anomaly_index", "blend_flagged"):  # fmt: skip
        assert getattr(afterwards, name) == getattr(together, name), name
    assert TARGET in afterwards.flagged
    # The suspect's own search is reused as it is: nothing of it changes.
    assert torch.equal(afterwards.maps, alone.maps) and afterwards.trigger_maps.keys() == alone.trigger_maps.keys()

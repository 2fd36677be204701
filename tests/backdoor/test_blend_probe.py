"""The scan's blend probe: a planted blended trigger is flagged, clean models are not, and its parts round-trip."""

import json

import numpy as np
import pytest
import torch

from captum_classpattern.backdoor import (
    BLEND_STRENGTHS,
    BlendTable,
    BlendTrigger,
    PoisonedDataset,
    ScanConfig,
    ScanResult,
    ScanSettings,
    ScoringSettings,
    remeasure,
    scan,
)
from captum_classpattern.backdoor._blend_probe import measure_probe
from captum_classpattern.models import SmallCNN
from captum_classpattern.training import train_classifier

pytestmark = pytest.mark.usefixtures("one_thread")
QUICK = ScanSettings(steps=40)
QUICK_SCORING = ScoringSettings(max_eval=150)
TARGET = 2


def _train(images, labels, seed, epochs=8):
    torch.manual_seed(seed)
    return train_classifier(SmallCNN(1, 10, 8), images, labels, epochs=epochs, seed=seed)


def _scan(model, data, settings=QUICK, **kwargs):
    return scan(
        model,
        data.search.images,
        data.search.labels,
        settings,
        scoring=QUICK_SCORING,
        eval_images=data.eval.images,
        eval_labels=data.eval.labels,
        **kwargs,
    )


@pytest.fixture(scope="module")
def reference_scan(digits16, one_thread):
    """The scan of a clean reference model, reused by every suspect."""
    return _scan(_train(digits16.train.images, digits16.train.labels, seed=11), digits16)


@pytest.fixture(scope="module")
def blended(digits16, reference_scan, one_thread):
    """A SmallCNN with a noise-blend backdoor (alpha 0.2) to class 2, scanned against the reference."""
    view = PoisonedDataset(
        (digits16.train.images, digits16.train.labels), BlendTrigger("noise", alpha=0.2), target=TARGET, rate=0.1
    )
    model = _train(*view.tensors(), seed=0, epochs=10)
    return model, _scan(model, digits16, reference=reference_scan)


def test_planted_blend_is_flagged_by_the_probe(blended, digits16):
    model, result = blended
    assert TARGET in result.blend_flagged and TARGET in result.flagged
    assert result.blend_anomaly_index[TARGET] == max(result.blend_anomaly_index)
    # The learned blend really flips held-out images at a strength where other classes' do not.
    powers = result.blend.table.powers
    column = result.blend.table.strengths.index(0.08)
    others = np.delete(powers[:, column], TARGET)
    assert powers[TARGET, column] > 0.5 > others.max()
    assert result.blend.patterns.shape == (10,) + tuple(digits16.search.images.shape[1:])
    held = digits16.eval.images[digits16.eval.labels != TARGET]
    blended_images = 0.92 * held + 0.08 * result.blend.patterns[TARGET]
    with torch.no_grad():
        flipped = (model(blended_images).argmax(1) == TARGET).float().mean().item()
    assert flipped > 0.5


def test_clean_model_is_not_flagged_with_a_reference(digits16, reference_scan):
    clean = _train(digits16.train.images, digits16.train.labels, seed=12)
    result = _scan(clean, digits16, reference=reference_scan)
    assert result.blend_flagged == [] and result.flagged == []
    assert len(result.blend.reference_tables) == 1


def test_probe_off_leaves_only_the_pattern_detector(digits16, blended):
    model = blended[0]
    result = _scan(model, digits16, QUICK.replace(blend_steps=0))
    assert result.blend is None
    assert result.blend_flagged == [] and result.blend_scores == [] and result.blend_anomaly_index == []
    assert result.flagged == result.pattern_flagged


def test_blend_parts_round_trip_through_json(blended, tmp_path):
    result = blended[1]
    path = tmp_path / "scan.json"
    result.to_json(path)
    again = ScanResult.from_json(path)
    data = json.loads(path.read_text())
    assert data["blend_flagged"] == result.blend_flagged and len(data["blend"]["reference_tables"]) == 1
    for name in ("flagged", "pattern_flagged", "blend_flagged", "blend_scores", "blend_anomaly_index"):
        assert getattr(again, name) == getattr(result, name), name
    np.testing.assert_array_equal(again.blend.table.powers, result.blend.table.powers)
    assert torch.equal(again.blend.patterns, result.blend.patterns)
    assert again.seconds == result.seconds > 0
    alone = result.rescore("power_auc", reference=False)
    assert alone.blend.reference_tables == [] and TARGET in alone.blend_flagged
    assert len(result.blend.reference_tables) == 1 and alone.seconds == result.seconds


def test_reference_without_a_probe_is_refused(blended, digits16):
    model = blended[0]
    old = _scan(model, digits16, QUICK.replace(blend_steps=0))
    with pytest.raises(ValueError, match="other ScanSettings"):
        _scan(model, digits16, reference=old)


def test_blend_table_scores_the_fastest_class_highest():
    strengths = list(BLEND_STRENGTHS)
    typical = np.clip((np.asarray(strengths) - 0.05) * 6, 0, 1)  # reaches 0.5 at 0.15
    powers = np.tile(typical, (5, 1))
    powers[3] = np.clip(np.asarray(strengths) * 20, 0, 1)  # reaches 0.5 at a quarter of the strength
    table = BlendTable(strengths, powers, [100] * 5)
    assert table.typical_strength() == pytest.approx(0.15)
    scores = table.class_scores()
    assert int(np.argmax(scores)) == 3 and np.allclose(np.delete(scores, 3), scores[0])
    again = BlendTable.from_dict(json.loads(json.dumps(table.to_dict())))
    np.testing.assert_array_equal(again.powers, table.powers)


@pytest.mark.parametrize(
    "changes, error, match",
    [
        ({"blend_steps": -1}, ValueError, "blend_steps"),
        ({"blend_steps": 2.5}, TypeError, "blend_steps"),
        ({"blend_steps": True}, TypeError, "blend_steps"),
        ({"blend_strength": 0.0}, ValueError, "blend_strength"),
        ({"blend_strength": 1.5}, ValueError, "blend_strength"),
        ({"blend_batch_size": 0}, ValueError, "blend_batch_size"),
    ],
)
def test_bad_probe_settings_are_refused(changes, error, match):
    with pytest.raises(error, match=match):
        ScanSettings(**changes)


def test_warp_images_moves_pixels_along_the_field_and_no_further():
    from captum_classpattern.backdoor import warp_images

    images = torch.rand(3, 2, 9, 12, generator=torch.Generator().manual_seed(0))
    still = warp_images(images, torch.zeros(1, 2, 4, 4), 1.0)
    torch.testing.assert_close(still, images)  # a zero field is the identity
    # A field saturated along x moves every pixel by `length` columns: a shift by one column.
    along_x = torch.zeros(1, 2, 4, 4)
    along_x[:, 0] = 20.0
    shifted = warp_images(images, along_x, 1.0)
    torch.testing.assert_close(shifted[..., :-1], images[..., 1:], atol=1e-5, rtol=0)
    assert not torch.equal(images, warp_images(images, along_x, 0.5))


class _ThresholdModel(torch.nn.Module):
    """Predicts class ``row`` once a probe's strength reaches ``thresholds[row]``, class ``row + 1`` before."""

    def __init__(self, thresholds):
        super().__init__()
        self.thresholds = torch.tensor(thresholds)
        self.calls = 0

    def forward(self, images):
        self.calls += 1
        row, strength = images[:, 0, 0, 0].round().long(), images[:, 0, 0, 1]
        won = strength >= self.thresholds[row] - 1e-9
        return torch.nn.functional.one_hot(torch.where(won, row, (row + 1) % len(self.thresholds)), 5).float()


def test_probe_measures_only_the_strengths_its_scores_use():
    thresholds = [0.04, 0.1, 0.12, 0.3, 0.5]  # the last class never reaches half the images
    generator = torch.Generator().manual_seed(0)
    images, labels = torch.rand(100, 1, 2, 2, generator=generator), torch.arange(100) % 5

    def apply(batch, row, strength):
        probed = batch.clone()
        probed[:, 0, 0, 0], probed[:, 0, 0, 1] = float(row), strength
        return probed

    tables = {}
    for full in (False, True):
        model = _ThresholdModel(thresholds)
        tables[full] = measure_probe(model, apply, torch.arange(5), images, labels, BLEND_STRENGTHS, full_table=full)
        tables[full].calls = model.calls
    short, every = tables[False], tables[True]
    assert every.calls == 50 and short.typical_strength() == every.typical_strength() == pytest.approx(0.12)
    strengths = np.asarray(BLEND_STRENGTHS)
    for row, threshold in enumerate(thresholds):  # measured up to its first power of 0.5 and the typical strength
        wanted = strengths <= max(min(threshold, strengths[-1]), 0.12) + 1e-9
        np.testing.assert_array_equal(~np.isnan(short.powers[row]), wanted)
        np.testing.assert_array_equal(short.powers[row][wanted], every.powers[row][wanted])
    assert short.calls == int((~np.isnan(short.powers)).sum()) < 50
    np.testing.assert_array_equal(short.class_scores(), every.class_scores())
    again = BlendTable.from_dict(json.loads(json.dumps(short.to_dict())))
    np.testing.assert_array_equal(np.isnan(again.powers), np.isnan(short.powers))


def test_remeasure_gives_the_scan_measured_on_those_images(blended, digits16, reference_scan):
    model, result = blended
    held_out = (digits16.eval.images, digits16.eval.labels)
    again = remeasure(result, model, held_out, QUICK_SCORING)
    alone = result.rescore("power_auc", reference=False)
    for name in ("flagged", "scores", "anomaly_index", "blend_scores", "warp_scores", "class_accuracy", "powers"):
        assert getattr(again, name) == getattr(alone, name), name
    np.testing.assert_array_equal(again.table.powers, result.table.powers)
    assert again.trigger_success == pytest.approx(result.trigger_success)
    assert again.trigger_elsewhere == pytest.approx(result.trigger_elsewhere)
    fewer = remeasure(result, model, held_out, QUICK_SCORING.replace(max_eval=60))
    assert fewer.table.counts == [60] * 10 and fewer.scoring.max_eval == 60 and fewer.blend.table.counts == [60] * 10
    assert TARGET in fewer.blend_flagged and torch.equal(fewer.maps, result.maps)
    assert result.scoring.max_eval == 150 and result.table.counts == [150] * 10  # the result is left as it was
    # references measured on another number of images are refused, with what to do
    with pytest.raises(ValueError, match=r"reference 0 measured .* 150 .* on 60.*max_eval=60"):
        fewer.with_references([reference_scan])
    with pytest.raises(ValueError, match=r"reference 0 measured .* 150 .* on 60"):
        fewer_config = ScanConfig(QUICK, QUICK_SCORING.replace(max_eval=60))
        scan(model, digits16.search.images, digits16.search.labels, fewer_config, reference=reference_scan)
    with pytest.raises(ValueError, match="pixels"):
        remeasure(result, model, (digits16.eval.images[..., :8, :8], digits16.eval.labels))
    with pytest.raises(TypeError, match="ScanResult"):
        remeasure(result.to_dict(), model, held_out)
    with pytest.raises(TypeError, match="ScoringSettings"):
        remeasure(result, model, held_out, {"max_eval": 60})

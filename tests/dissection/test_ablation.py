"""Unit ablation: hooks, balanced accuracy, rankings, curves and the link to class patterns."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from captum_classpattern.dissection import (
    AblationCurves,
    PatternUnits,
    UnitRanking,
    ablate_units,
    ablation_curves,
    balanced_accuracy_per_class,
    rank_units_for_class,
    units_responding_to_pattern,
)


def small_cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    )


def test_ablate_units_zeroes_channels_and_cleans_up():
    model = small_cnn()
    images = torch.rand(5, 3, 8, 8)
    reference = small_cnn()
    with torch.no_grad():  # zeroing a conv's filters and biases = zeroing its output channels
        reference[0].weight[[1, 4]] = 0
        reference[0].bias[[1, 4]] = 0
    with ablate_units(model, "0", [1, 4]) as units:
        assert units == [1, 4]
        torch.testing.assert_close(model(images), reference(images))
    assert not model[0]._forward_hooks
    with pytest.raises(RuntimeError, match="boom"):
        with ablate_units(model, model[1], torch.tensor([0])):
            raise RuntimeError("boom")
    assert not model[1]._forward_hooks
    torch.testing.assert_close(model(images), small_cnn()(images))


def test_ablate_units_errors():
    model = small_cnn()
    with pytest.raises(ValueError, match="out of range.*6 units"):
        with ablate_units(model, "0", [6]):
            pass
    with pytest.raises(ValueError, match="non-negative"):
        with ablate_units(model, "0", [-1]):
            pass
    with pytest.raises(TypeError, match="units must be"):
        with ablate_units(model, "0", torch.tensor([0.5])):
            pass
    with pytest.raises(ValueError, match="out of range"):  # ReLU declares no width: checked when it runs
        with ablate_units(model, "1", [7]):
            model(torch.rand(1, 3, 8, 8))
    assert not model[1]._forward_hooks
    with pytest.raises(ValueError, match="no layer named"):
        with ablate_units(model, "features", [0]):
            pass


class FixedPredictions(nn.Module):
    """Predicts the class written in each image's single pixel."""

    def __init__(self, num_classes):
        super().__init__()
        self.num_classes = num_classes

    def forward(self, x):
        return nn.functional.one_hot(x.flatten(1)[:, 0].long(), self.num_classes).float()


def test_balanced_accuracy_matches_sklearn():
    from sklearn.metrics import balanced_accuracy_score

    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (200,), generator=generator)
    predictions = torch.where(
        torch.rand(200, generator=generator) < 0.6, labels, torch.randint(0, 4, (200,), generator=generator)
    )
    scores = balanced_accuracy_per_class(
        FixedPredictions(4), predictions.float().view(-1, 1, 1, 1), labels, 4, batch_size=33
    )
    for c in range(4):
        expected = balanced_accuracy_score((labels == c).numpy(), (predictions == c).numpy())
        assert scores[c].item() == pytest.approx(expected, abs=1e-12)
    missing = balanced_accuracy_per_class(FixedPredictions(5), predictions.float().view(-1, 1, 1, 1), labels, 5)
    assert torch.isnan(missing[4])
    with pytest.raises(ValueError, match="labels"):
        balanced_accuracy_per_class(FixedPredictions(4), predictions.float().view(-1, 1, 1, 1), labels[:5], 4)


def planted_classifier():
    """Class c (0..3) is read from unit c only; units 4, 5 are ignored; class 4 is "nothing"."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(80) % 4
    images = 0.04 * torch.rand(80, 6, 4, 4, generator=generator)  # below the "nothing" bias
    images[torch.arange(80), labels] += 1.0
    head = nn.Linear(6, 5)
    with torch.no_grad():
        head.weight.zero_()
        head.weight[:4, :4] = torch.eye(4)
        head.bias.zero_()
        head.bias[4] = 0.05
    model = nn.Sequential()
    model.add_module("features", nn.Identity())
    model.add_module("pool", nn.AdaptiveAvgPool2d(1))
    model.add_module("flatten", nn.Flatten())
    model.add_module("head", head)
    return model, images, labels


def test_rank_units_finds_each_class_unit_in_one_pass_per_unit():
    model, images, labels = planted_classifier()
    ranking = rank_units_for_class(model, "features", images, labels, 5, batch_size=1000)
    assert ranking.num_units == 6 and ranking.drops.shape == (6, 5)
    np.testing.assert_allclose(ranking.baseline[:4], 1.0)
    for c in range(4):
        assert ranking.top(c, 1) == [c]
        assert ranking.drops[c, c] == pytest.approx(0.5)
    small_batches = rank_units_for_class(model, "features", images, labels, 5, batch_size=7, units=[3, 0, 5])
    np.testing.assert_array_equal(small_batches.drops, ranking.drops[[3, 0, 5]])
    np.testing.assert_allclose(small_batches.log_prob_drops, ranking.log_prob_drops[[3, 0, 5]])
    assert small_batches.order(0)[0] == 0
    with pytest.raises(ValueError, match="out of range"):
        rank_units_for_class(model, "features", images, labels, 5, units=[6])


def test_head_shortcut_gives_the_same_ranking_and_curves():
    model, images, labels = planted_classifier()
    head = nn.Sequential(model.pool, model.flatten, model.head)
    slow = rank_units_for_class(model, "features", images, labels, 5, batch_size=50)
    fast = rank_units_for_class(model, "features", images, labels, 5, batch_size=50, head=head)
    np.testing.assert_array_equal(fast.drops, slow.drops)
    np.testing.assert_allclose(fast.log_prob_drops, slow.log_prob_drops, rtol=1e-6, atol=1e-9)
    curves = [
        ablation_curves(
            model, "features", images, labels, 5, slow, ks=[1, 3], classes=[0, 1, 2, 3], head=h, batch_size=50
        )
        for h in (None, head)
    ]
    np.testing.assert_array_equal(curves[0].top_removed, curves[1].top_removed)
    np.testing.assert_array_equal(curves[0].random_removed, curves[1].random_removed)
    with pytest.raises(ValueError, match="does not reproduce"):
        rank_units_for_class(model, "features", images, labels, 5, head=nn.Sequential(model.pool, model.flatten))


def test_ablation_curves_top_units_carry_the_class():
    model, images, labels = planted_classifier()
    ranking = rank_units_for_class(model, "features", images, labels, 5)
    curves = ablation_curves(
        model, "features", images, labels, 5, ranking, ks=[1, 2], classes=[0, 1, 2, 3], random_trials=4
    )
    assert curves.top_removed.shape == curves.rest_removed.shape == curves.random_removed.shape == (4, 2)
    np.testing.assert_allclose(curves.top_removed[:, 0], 0.5)  # its own unit gone: recall 0
    np.testing.assert_allclose(curves.rest_removed[:, 0], 1.0)  # only its own unit left: still perfect
    summary = curves.summary(1)
    assert summary["top_removed"] < summary["random_removed"] <= summary["baseline"]
    with pytest.raises(ValueError, match="each k"):
        ablation_curves(model, "features", images, labels, 5, ranking, ks=[7])
    with pytest.raises(ValueError, match="was not measured"):
        curves.summary(3)


class RedPatch:
    """A stand-in pattern: a red 4 x 4 square in the top-left corner."""

    def stamp(self, images):
        out = images.clone()
        out[:, :, :4, :4] = 0.0
        out[:, 0, :4, :4] = 1.0
        return out


def pattern_model():
    """Unit 0 detects red and votes for class 1; unit 2 (twice the red level) votes for class 2."""
    conv = nn.Conv2d(3, 4, 1)
    with torch.no_grad():  # units: red detector, green, 2 x red, grey level
        conv.weight.copy_(torch.tensor([[1.0, -1, -1], [0, 1, 0], [2, 0, 0], [1 / 3, 1 / 3, 1 / 3]])[:, :, None, None])
        conv.bias.zero_()
    head = nn.Linear(4, 3)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[0.0, 0, 0, 0], [10, 0, 0, 0], [0, 1, 0.5, 0]]))
        head.bias.copy_(torch.tensor([0.3, 0.0, 0.0]))
    model = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)
    images = 0.3 * torch.rand(30, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    return model, images, torch.tensor([0, 2, 1] * 10)


def test_units_responding_to_pattern_carry_its_power():
    model, images, labels = pattern_model()
    found = units_responding_to_pattern(model, "1", RedPatch(), images, labels, target=1, top=2, random_trials=8)
    assert found.units == [2, 0] and found.rank_by == "increase" and found.contribution is None
    assert found.increase[2] > found.increase[0] > 0
    assert found.power == 1.0 and found.floor == 0.0
    assert found.power_ablated == 0.0
    assert found.power_ablated < found.power_random_ablated < found.power
    assert found.accuracy_ablated < found.accuracy
    assert not any(m._forward_hooks for m in model.modules())


def test_contribution_ranking_keeps_the_units_that_pull_towards_the_target():
    model, images, labels = pattern_model()
    by_increase = units_responding_to_pattern(model, "1", RedPatch(), images, labels, target=1, top=1)
    assert by_increase.units == [2] and by_increase.power_ablated == 1.0  # excited, but votes for class 2
    found = units_responding_to_pattern(model, "1", RedPatch(), images, labels, target=1, top=1, rank_by="contribution")
    assert found.units == [0] and found.power_ablated == 0.0
    assert found.contribution[0] > 0 > found.contribution[2]
    assert all(p.grad is None for p in model.parameters())
    assert not any(m._forward_hooks for m in model.modules())


def test_units_responding_to_pattern_errors():
    model, images, labels = pattern_model()
    with pytest.raises(ValueError, match="rank_by"):
        units_responding_to_pattern(model, "1", RedPatch(), images, labels, target=1, rank_by="size")
    with pytest.raises(TypeError, match="stamp"):
        units_responding_to_pattern(model, "1", object(), images, labels, target=1)
    with pytest.raises(ValueError, match="top must be"):
        units_responding_to_pattern(model, "1", RedPatch(), images, labels, target=1, top=9)
    with pytest.raises(ValueError, match="no images of classes other than"):
        units_responding_to_pattern(model, "1", RedPatch(), images, torch.ones(30, dtype=torch.long), target=1)


def test_model_state_untouched_by_ranking():
    model, images, labels = planted_classifier()
    model.train()
    flags = [m.training for m in model.modules()]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rank_units_for_class(model, "features", images, labels, 5)
    assert [m.training for m in model.modules()] == flags
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(m._forward_hooks for m in model.modules())


def test_results_round_trip_through_json(tmp_path):
    model, images, labels = planted_classifier()
    ranking = rank_units_for_class(model, "features", images, labels, 5, units=[3, 0, 5])
    curves = ablation_curves(model, "features", images, labels, 5, ranking, ks=[1, 2], classes=[0, 1, 2, 3])
    pattern_net, pattern_images, pattern_labels = pattern_model()
    found = units_responding_to_pattern(
        pattern_net, "1", RedPatch(), pattern_images, pattern_labels, target=1, top=2, rank_by="contribution"
    )
    for result in (ranking, curves, found):
        path = tmp_path / f"{type(result).__name__}.json"
        result.to_json(path)
        again = type(result).from_json(path)
        for key, value in vars(result).items():
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(getattr(again, key), value)  # NaN included
            else:
                assert getattr(again, key) == value, key
    assert np.isnan(ranking.baseline[4])  # class 4 has no images: NaN survives the file
    assert UnitRanking.from_json(tmp_path / "UnitRanking.json").top(0, 1) == ranking.top(0, 1)
    assert AblationCurves.from_dict(curves.to_dict()).summary(1) == curves.summary(1)
    assert PatternUnits.from_dict(found.to_dict()).contribution is not None
    with pytest.raises(ValueError, match="missing"):
        UnitRanking.from_dict({"units": []})


def test_bad_counts_are_refused():
    model, images, labels = planted_classifier()
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        rank_units_for_class(model, "features", images, labels, 5, batch_size=0)
    with pytest.raises(ValueError, match="num_classes"):
        balanced_accuracy_per_class(model, images, labels, 1)
    with pytest.raises(TypeError, match="integer class"):
        balanced_accuracy_per_class(model, images, labels + 0.5, 5)

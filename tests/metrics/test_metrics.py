"""Predictive power, floor, chance, curves, Captum baselines and the anomaly index."""

import numpy as np
import pytest
import torch

from captum_classpattern import (
    captum_attribution,
    floor_rate,
    power_curve,
    predictive_power,
    random_pixel_power,
    top_k_pattern,
)
from captum_classpattern.metrics import anomaly_index, flag_outliers


class CornerModel(torch.nn.Module):
    """Predicts class 1 when the top-left pixel is bright, else class 0 (class 2 never)."""

    def forward(self, x):
        bright = x[:, 0, 0, 0]
        return torch.stack([1 - bright, bright, torch.full_like(bright, -1.0)], 1)


def test_power_counts_other_class_images_only():
    images = torch.zeros(6, 1, 4, 4)
    labels = torch.tensor([0, 0, 2, 2, 1, 1])
    canvas = torch.ones(1, 4, 4)
    corner = torch.zeros(4, 4)
    corner[0, 0] = 1
    pattern = top_k_pattern(corner, canvas, 1)
    assert predictive_power(CornerModel(), pattern, images, labels, 1) == 1.0
    away = top_k_pattern(1 - corner, canvas, 3)
    assert predictive_power(CornerModel(), away, images, labels, 1) == 0.0
    assert floor_rate(CornerModel(), images, labels, 0) == 1.0  # both class-2 and class-1 images read as 0


def test_random_pixels_and_curve():
    images = torch.zeros(10, 1, 4, 4)
    labels = torch.zeros(10, dtype=torch.long)
    canvas = torch.ones(1, 4, 4)
    chance = random_pixel_power(CornerModel(), canvas, images, labels, 1, 8, trials=50, seed=0)
    assert 0.3 < chance < 0.7  # the corner is among 8 random pixels of 16 half the time
    corner = torch.zeros(4, 4)
    corner[0, 0] = 1
    with pytest.warns(RuntimeWarning, match="only 1 pixel") as caught:  # one warning for the curve, not per size
        curve = power_curve(CornerModel(), corner, canvas, images, labels, 1, ks=(1, 4, 16))
    assert len(caught) == 1
    assert curve.ks == [1, 4, 16] and curve.powers == [1.0, 1.0, 1.0] and curve.area == pytest.approx(1.0)


def test_no_other_class_images_is_an_error():
    with pytest.raises(ValueError, match="other than 1"):
        floor_rate(CornerModel(), torch.zeros(2, 1, 4, 4), torch.ones(2, dtype=torch.long), 1)


def test_captum_baselines_run(trained_digits_model, digits16):
    canvas = digits16.search.images[0]
    for name in ("Saliency", "IntegratedGradients", "Occlusion"):
        attribution = captum_attribution(trained_digits_model, name, canvas, 3)
        assert attribution.shape == canvas.shape and torch.isfinite(attribution).all()
    with pytest.raises(ValueError, match="unknown Captum method"):
        captum_attribution(trained_digits_model, "Nope", canvas, 3)


def test_anomaly_index_matches_the_formula():
    scores = np.array([1.0, 1.1, 0.95, 1.05, 1.02, 0.98, 5.0])
    median = np.median(scores)
    mad = 1.4826 * np.median(np.abs(scores - median))
    np.testing.assert_allclose(anomaly_index(scores), np.abs(scores - median) / mad)
    assert anomaly_index(scores)[-1] > 2 and (anomaly_index(scores)[:-1] < 2).all()
    with pytest.raises(ValueError):
        anomaly_index([1.0, 2.0])


def test_anomaly_index_divides_by_at_least_the_given_spread():
    # Six scores that agree to 0.05 make a difference of 0.3 look anomalous, unless the
    # caller knows the scores vary by 0.25 anyway.
    scores = np.array([0.0, 0.05, -0.05, 0.02, -0.02, 0.01, 0.3])
    assert anomaly_index(scores)[-1] > 3
    np.testing.assert_allclose(anomaly_index(scores, min_spread=0.25), np.abs(scores - np.median(scores)) / 0.25)
    assert flag_outliers(scores, "high", 3.0)[1] == [6] and flag_outliers(scores, "high", 3.0, 0.25)[1] == []
    # A numpy scalar is as good as a float (spreads often come out of numpy).
    np.testing.assert_allclose(
        anomaly_index(scores, min_spread=np.float32(0.25)), anomaly_index(scores, min_spread=0.25)
    )
    # A floor below the MAD changes nothing.
    np.testing.assert_allclose(anomaly_index(scores, min_spread=1e-6), anomaly_index(scores))
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="min_spread"):
            anomaly_index(scores, min_spread=bad)


# Every metric checks its target, labels and settings (docs/reliability/inputs.rst).

_CANVAS = torch.ones(1, 4, 4)
_PATTERN = top_k_pattern(torch.eye(4), _CANVAS, 4)
METRICS = {
    "predictive_power": lambda target, labels: predictive_power(
        CornerModel(), _PATTERN, torch.zeros(6, 1, 4, 4), labels, target
    ),
    "floor_rate": lambda target, labels: floor_rate(CornerModel(), torch.zeros(6, 1, 4, 4), labels, target),
    "random_pixel_power": lambda target, labels: random_pixel_power(
        CornerModel(), _CANVAS, torch.zeros(6, 1, 4, 4), labels, target, 4, trials=2
    ),
    "power_curve": lambda target, labels: power_curve(
        CornerModel(), torch.eye(4), _CANVAS, torch.zeros(6, 1, 4, 4), labels, target, ks=(2, 4)
    ),
}
_LABELS = torch.tensor([0, 0, 2, 2, 1, 1])


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize(
    "target, error, message",
    [
        (99, ValueError, "target class 99 is out of range: the model has 3 classes"),
        (3, ValueError, "target class 3 is out of range"),
        (-1, ValueError, "target class -1 is out of range"),
        (3.5, TypeError, "target must be an int class index, got the float 3.5"),
        (1.0, TypeError, r"pass int\(1.0\)"),
        (True, TypeError, "not a bool"),
        ("1", TypeError, "got str '1'"),
    ],
)
def test_metrics_refuse_a_target_the_model_does_not_have(metric, target, error, message):
    with pytest.raises(error, match=message):
        METRICS[metric](target, _LABELS)


@pytest.mark.parametrize("metric", METRICS)
def test_metrics_refuse_float_labels_that_are_not_whole_numbers(metric):
    with pytest.raises(TypeError, match="labels must hold integer class indices, got the float 0.5"):
        METRICS[metric](1, _LABELS.float() + 0.5)


@pytest.mark.parametrize("metric", METRICS)
def test_metrics_accept_numpy_and_tensor_class_indices(metric):
    assert METRICS[metric](np.int64(1), _LABELS) == METRICS[metric](torch.tensor(1), _LABELS)


def test_random_pixel_power_needs_at_least_one_trial_and_power_curve_a_size():
    with pytest.raises(ValueError, match="trials must be a positive int"):
        random_pixel_power(CornerModel(), _CANVAS, torch.zeros(6, 1, 4, 4), _LABELS, 1, 4, trials=0)
    with pytest.raises(ValueError, match="ks must be a non-empty sequence"):
        power_curve(CornerModel(), torch.eye(4), _CANVAS, torch.zeros(6, 1, 4, 4), _LABELS, 1, ks=())


def test_metrics_on_a_model_of_another_dtype_are_a_clear_value_error():
    double_model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)).double()
    with pytest.raises(ValueError, match=r"predictive_power: the model failed.*cast the inputs"):
        predictive_power(double_model, _PATTERN, torch.zeros(6, 1, 4, 4), _LABELS, 1)


def test_random_pixel_draws_measured_together_give_the_mean_of_the_draws(trained_digits_model, digits16):
    from captum_classpattern import random_pattern

    canvas, images, labels = digits16.search.images[0], digits16.eval.images, digits16.eval.labels
    generator = torch.Generator().manual_seed(3)
    draws = [random_pattern(canvas, 40, generator) for _ in range(4)]
    one_by_one = np.mean([predictive_power(trained_digits_model, d, images, labels, 2) for d in draws])
    together = random_pixel_power(trained_digits_model, canvas, images, labels, 2, 40, trials=4, seed=3, batch_size=64)
    assert together == pytest.approx(one_by_one, abs=1e-12) and together > 0

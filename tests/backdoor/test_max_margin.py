"""MM-BD, the data-free maximum-margin detector: a planted backdoor is found, a clean model is not."""

import pytest
import torch

from captum_classpattern.backdoor import (
    MaxMarginSettings,
    PatchTrigger,
    PoisonedDataset,
    gamma_p_value,
    max_margin_detection,
)
from captum_classpattern.models import SmallCNN
from captum_classpattern.training import train_classifier

pytestmark = pytest.mark.usefixtures("one_thread")
QUICK = MaxMarginSettings(images_per_class=8, steps=60, step_size=0.05)


@pytest.fixture(scope="module")
def backdoored(digits16, one_thread):
    """A tiny SmallCNN trained on 16 x 16 digits with a 3 x 3 patch backdoor to class 4."""
    view = PoisonedDataset((digits16.train.images, digits16.train.labels), PatchTrigger(), target=4, rate=0.1)
    torch.manual_seed(0)
    return train_classifier(SmallCNN(1, 10, 8), *view.tensors(), epochs=10, seed=0)


def test_planted_backdoor_is_flagged_at_its_target(backdoored):
    found = max_margin_detection(backdoored, (1, 16, 16), QUICK)
    assert found.target == 4
    assert found.flagged and found.p_value <= 0.05
    assert found.statistics[4] == max(found.statistics)


def test_clean_model_is_not_flagged(trained_digits_model):
    found = max_margin_detection(trained_digits_model, (1, 16, 16), QUICK)
    assert not found.flagged and found.p_value > 0.05


def test_detection_is_seeded_and_leaves_the_model_alone(backdoored):
    before = {k: v.clone() for k, v in backdoored.state_dict().items()}
    backdoored.train()
    with pytest.warns(UserWarning, match="training mode"):
        first = max_margin_detection(backdoored, (1, 16, 16), QUICK.replace(steps=5), seed=3)
    with pytest.warns(UserWarning, match="training mode"):
        second = max_margin_detection(backdoored, (1, 16, 16), QUICK.replace(steps=5), seed=3)
    assert first.statistics == second.statistics
    assert backdoored.training  # the caller's mode comes back
    backdoored.eval()
    assert all(torch.equal(before[k], v) for k, v in backdoored.state_dict().items())
    assert all(p.grad is None for p in backdoored.parameters())


def test_gamma_p_value_is_small_for_an_outlier_and_large_for_a_typical_maximum():
    typical = [1.0, 1.2, 0.9, 1.1, 1.05, 0.95, 1.15, 1.0, 1.1, 1.2]
    assert gamma_p_value(typical) > 0.05
    assert gamma_p_value(typical[:-1] + [10.0]) < 0.01


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"image_shape": (16, 16)}, ValueError, "image_shape"),
        ({"settings": {"steps": 3}}, TypeError, "MaxMarginSettings"),
    ],
)
def test_bad_arguments_are_refused(trained_digits_model, kwargs, error, match):
    arguments = {"image_shape": (1, 16, 16), **kwargs}
    with pytest.raises(error, match=match):
        max_margin_detection(trained_digits_model, **arguments)


def test_bad_settings_and_statistics_are_refused():
    with pytest.raises(ValueError, match="alpha"):
        MaxMarginSettings(alpha=1.5)
    with pytest.raises(ValueError, match="at least 3"):
        gamma_p_value([1.0, 2.0])

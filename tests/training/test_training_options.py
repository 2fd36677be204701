"""The training loop's knobs grouped in TrainingOptions, the older keywords still accepted."""

import inspect

import pytest
import torch

from captum_classpattern.models import SmallCNN
from captum_classpattern.training import TrainingOptions, adversarial_train, train_classifier


def _data():
    generator = torch.Generator().manual_seed(0)
    return torch.rand(48, 1, 8, 8, generator=generator), torch.arange(48) % 3


def _trained(**kwargs):
    torch.manual_seed(0)
    images, labels = _data()
    return train_classifier(SmallCNN(1, 3, 4), images, labels, seed=1, **kwargs).state_dict()


def _same(first, second):
    return all(torch.equal(first[name], second[name]) for name in first)


def test_options_and_the_older_keywords_train_the_same_model():
    grouped = _trained(options=TrainingOptions(epochs=2, lr=5e-3, batch_size=16, weight_decay=1e-4))
    older = _trained(epochs=2, lr=5e-3, batch_size=16, weight_decay=1e-4)
    assert _same(grouped, older)
    assert "epochs" not in inspect.signature(train_classifier).parameters
    assert "options" in inspect.signature(adversarial_train).parameters


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"epochs": 0}, "epochs"),
        ({"lr": 0.0}, "lr"),
        ({"batch_size": 1.5}, "batch_size"),
        ({"weight_decay": -1.0}, "weight_decay"),
    ],
)
def test_bad_options_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainingOptions(**changes)
    with pytest.raises(ValueError, match=message):
        TrainingOptions().replace(**changes)


def test_options_given_both_ways_or_of_the_wrong_type_are_refused():
    images, labels = _data()
    model = SmallCNN(1, 3, 4)
    with pytest.raises(TypeError, match="not both"):
        train_classifier(model, images, labels, TrainingOptions(), epochs=2)
    with pytest.raises(TypeError, match="TrainingOptions"):
        train_classifier(model, images, labels, {"epochs": 2})
    with pytest.raises(TypeError, match="TrainingOptions"):
        adversarial_train(model, images, labels, 3)
    with pytest.raises(TypeError, match="weight_decay"):
        adversarial_train(model, images, labels, weight_decay=1e-4)

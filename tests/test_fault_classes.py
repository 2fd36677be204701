"""Nothing silently wrong: each class of fault, run through every entry point it can reach.

Each test runs one bad input (a model without a class signal, labels the model cannot
have, an argument of the wrong kind, a one-shot iterator) through every public entry point
that takes it, as ``tests/test_model_contract.py`` does for the model contract. Every one
must refuse it with a ``ValueError``/``TypeError`` whose message names what is wrong,
before any result is returned. The rules are in ``docs/reliability/silent_faults.rst``.
"""

import tempfile
import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from captum_classpattern import (
    ClassPattern,
    SearchSchedule,
    floor_rate,
    power_curve,
    predictive_power,
    random_pixel_power,
    search_classes,
    select_canvases,
    top_k_pattern,
)
from captum_classpattern.attr import ImageStream
from captum_classpattern.backdoor import (
    NeuralCleanseSettings,
    PatchTrigger,
    ScanSettings,
    SuspicionSettings,
    attack_success_rate,
    backdoor_metrics,
    clean_accuracy,
    neural_cleanse,
    scan,
    suspicion_scores,
)
from captum_classpattern.data import Split
from captum_classpattern.dissection import (
    AttackSettings,
    ablation_curves,
    attack_unit_shift,
    balanced_accuracy_per_class,
    rank_units_for_class,
    units_responding_to_pattern,
)
from captum_classpattern.pipeline import PowerSample
from captum_classpattern.training import accuracy

LAYER = "features.1"
SHORT = SearchSchedule(steps=2)


class TinyNet(nn.Module):
    """A seeded 10-class CNN on 3 x 8 x 8 images; ``outputs`` sets the width of its last layer."""

    def __init__(self, outputs=10):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, outputs))

    def forward(self, x):
        return self.head(self.features(x))


def _nan_model():
    model = TinyNet()
    with torch.no_grad():
        model.head[2].weight.fill_(float("nan"))
    return model.eval()


@pytest.fixture(scope="module")
def data():
    generator = torch.Generator().manual_seed(0)
    return Split(torch.rand(30, 3, 8, 8, generator=generator), torch.arange(30) % 10)


def _pattern(data):
    return top_k_pattern(torch.rand(8, 8, generator=torch.Generator().manual_seed(1)), data.images[0], 6)


def _ranking(data):
    return rank_units_for_class(TinyNet().eval(), LAYER, data.images, data.labels % 10, 10)


def _checkpointed(model, data, **kwargs):
    with tempfile.TemporaryDirectory() as folder:
        return search_classes(
            model, data, data, [0, 1, 2], schedule=SHORT, baselines=(), show_progress=False, checkpoint_dir=folder
        )


# Entry points where a model's output and labels meet: (name, call(model, data)).
MODEL_ENTRY_POINTS = [
    (
        "ClassPattern.attribute",
        lambda m, d: ClassPattern(m).attribute(
            d.images[:2], target=[0, 1], baselines=d.images, baseline_labels=d.labels, schedule=SHORT
        ),
    ),
    (
        "ClassPattern.attribute(inputs=None)",
        lambda m, d: ClassPattern(m).attribute(
            target=[0, 1], baselines=d.images, baseline_labels=d.labels, schedule=SHORT
        ),
    ),
    (
        "ClassPattern.attribute(DataLoader)",
        lambda m, d: ClassPattern(m).attribute(
            d.images[:2],
            target=[0, 1],
            baselines=[(d.images[:15], d.labels[:15]), (d.images[15:], d.labels[15:])],
            schedule=SHORT,
        ),
    ),
    ("select_canvases", lambda m, d: select_canvases(m, d.images, d.labels, [0, 1])),
    ("predictive_power", lambda m, d: predictive_power(m, _pattern(d), d.images, d.labels, 0)),
    ("floor_rate", lambda m, d: floor_rate(m, d.images, d.labels, 0)),
    ("random_pixel_power", lambda m, d: random_pixel_power(m, d.images[0], d.images, d.labels, 0, 6, trials=1)),
    ("power_curve", lambda m, d: power_curve(m, torch.rand(8, 8), d.images[0], d.images, d.labels, 0, ks=(4, 8))),
    (
        "search_classes",
        lambda m, d: search_classes(m, d, d, [0, 1, 2], schedule=SHORT, baselines=(), show_progress=False),
    ),
    ("search_classes(checkpointed)", _checkpointed),
    (
        "search_classes(stream, power sample)",
        lambda m, d: search_classes(
            m,
            ImageStream(TensorDataset(d.images), d.labels, batch_size=8),
            PowerSample(ImageStream(TensorDataset(d.images), d.labels), per_class=2),
            [0, 1, 2],
            schedule=SHORT,
            baselines=(),
            show_progress=False,
        ),
    ),
    ("accuracy", lambda m, d: accuracy(m, d.images, d.labels)),
    ("clean_accuracy", lambda m, d: clean_accuracy(m, d.images, d.labels)),
    ("attack_success_rate", lambda m, d: attack_success_rate(m, d.images, d.labels, PatchTrigger(size=2), 0)),
    ("backdoor_metrics", lambda m, d: backdoor_metrics(m, d.images, d.labels, PatchTrigger(size=2), 0)),
    ("scan", lambda m, d: scan(m, d.images, d.labels, ScanSettings(steps=2, batch_size=4), classes=[0, 1, 2])),
    (
        "neural_cleanse",
        lambda m, d: neural_cleanse(
            m, d.images, d.labels, NeuralCleanseSettings(steps=2, steps_per_epoch=1), classes=[0, 1, 2]
        ),
    ),
    (
        "suspicion_scores",
        lambda m, d: suspicion_scores(m, d.images, d.labels, SuspicionSettings(steps=2), classes=[0, 1, 2]),
    ),
    ("balanced_accuracy_per_class", lambda m, d: balanced_accuracy_per_class(m, d.images, d.labels, 10)),
    ("rank_units_for_class", lambda m, d: rank_units_for_class(m, LAYER, d.images, d.labels, 10)),
    (
        "ablation_curves",
        lambda m, d: ablation_curves(
            m, LAYER, d.images, d.labels, 10, _ranking(d), ks=(1,), classes=[0], random_trials=1
        ),
    ),
    (
        "units_responding_to_pattern",
        lambda m, d: units_responding_to_pattern(m, LAYER, _pattern(d), d.images, d.labels, 0, top=2, random_trials=1),
    ),
    (
        "attack_unit_shift",
        lambda m, d: attack_unit_shift(m, LAYER, d.images[-4:], d.labels[-4:], 5, settings=AttackSettings(steps=1)),
    ),
]
IDS = [name for name, _ in MODEL_ENTRY_POINTS]
OUT_OF_RANGE = r"labels run from \d+ to 10, but the model has 10 classes|labels must lie in 0\.\.9|class 10 is out"


def _run(call, model, data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return call(model, data)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name, call", MODEL_ENTRY_POINTS, ids=IDS)
def test_a_model_with_nan_outputs_is_refused_by_every_entry_point(name, call, data):
    with pytest.raises(ValueError, match="NaN or infinite outputs.*carries no class signal"):
        _run(call, _nan_model(), data)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name, call", MODEL_ENTRY_POINTS, ids=IDS)
def test_a_model_with_one_output_unit_is_refused_by_every_entry_point(name, call, data):
    # The output's width is checked before the labels and targets are compared with it.
    with pytest.raises(ValueError, match=r"1 output column.*at least two classes|num_classes is 10 but the model"):
        _run(call, TinyNet(outputs=1).eval(), data)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name, call", MODEL_ENTRY_POINTS, ids=IDS)
def test_labels_the_model_cannot_have_are_refused_by_every_entry_point(name, call, data):
    one_based = Split(data.images, data.labels + 1)  # 1..10 on a 10-class model
    with pytest.raises(ValueError, match=OUT_OF_RANGE):
        _run(call, TinyNet().eval(), one_based)


@pytest.mark.usefixtures("one_thread")
def test_one_based_labels_no_longer_give_a_wrong_power(data):
    # The case: power measured with labels 1..10 counted the target's own images as others.
    model, pattern = TinyNet().eval(), _pattern(data)
    right = predictive_power(model, pattern, data.images, data.labels, 3)
    assert 0.0 <= right <= 1.0
    with pytest.raises(ValueError, match="look 1-based: subtract 1"):
        predictive_power(model, pattern, data.images, data.labels + 1, 3)

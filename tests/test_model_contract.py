"""The rule every public entry point that takes a model obeys: the caller's model comes back untouched.

Untouched means: every submodule's training flag as it was (including a mixed setting), the
parameters and buffers bit for bit, every parameter's ``.grad`` as it was, and no hook left
behind, also when the model raises half-way (modelled on Captum's hook-removal test).
Training functions (``train_classifier``, ``adversarial_train``) change the model on
purpose and are not listed.
"""

import tempfile
import warnings

import pytest
import torch
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, NoiseTunnel
from captum.metrics import sensitivity_max
from torch import nn
from torch.utils.data import TensorDataset

from captum_classpattern import (
    ClassPattern,
    SearchSchedule,
    captum_attribution,
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
    trigger_robust_accuracy,
)
from captum_classpattern.data import Split
from captum_classpattern.dissection import (
    AttackSettings,
    ConceptDataset,
    ablate_units,
    ablation_curves,
    attack_unit_shift,
    balanced_accuracy_per_class,
    dissect,
    intervene,
    rank_units_for_class,
    unit_activations,
    units_responding_to_pattern,
)
from captum_classpattern.metrics import CaptumBaseline
from captum_classpattern.pipeline import PowerSample
from captum_classpattern.training import accuracy, pgd_attack, pgd_robust_accuracy
from captum_classpattern.visualization import plot_top_activations

LAYER = "features.3"
SHORT = SearchSchedule(steps=3)


class Failing(Exception):
    """Raised by the model on purpose, half-way through an entry point."""


class ContractNet(nn.Module):
    """A small CNN with BatchNorm and dropout, whose forward can be set to fail after n calls."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.ReLU(),
            nn.Dropout2d(0.2),
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
        self.fail_after = None
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise Failing("the model failed on purpose")
        return self.head(self.features(x))


@pytest.fixture(scope="module")
def data():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(30, 3, 16, 16, generator=generator)
    labels = torch.arange(30) % 10
    return Split(images, labels)


def _pattern(data):
    return top_k_pattern(torch.rand(16, 16, generator=torch.Generator().manual_seed(1)), data.images[0], 8)


def _reference_net():
    """Another ContractNet in eval mode: the suspect when the model under test is the scan's reference."""
    torch.manual_seed(1)
    return ContractNet().eval()


def _dissection(model, data):
    return dissect(model, LAYER, ConceptDataset(size=6, image_size=16), batch_size=4)


# Each entry: (name, call(model, data)). Settings are the smallest that exercise the real code path.
ENTRY_POINTS = [
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
        "NoiseTunnel(ClassPattern)",
        lambda m, d: NoiseTunnel(ClassPattern(m, baselines=d.images, baseline_labels=d.labels)).attribute(
            d.images[:2], nt_type="vargrad", nt_samples=2, target=[0, 1], schedule=SHORT
        ),
    ),
    (
        "sensitivity_max(ClassPattern)",
        lambda m, d: sensitivity_max(
            ClassPattern(m, baselines=d.images, baseline_labels=d.labels).attribute,
            d.images[:2],
            n_perturb_samples=2,
            target=[0, 1],
            schedule=SHORT,
        ),
    ),
    (
        "select_canvases(best_of_n)",
        lambda m, d: select_canvases(m, d.images, d.labels, [0, 1], "best_of_n", n=2, search_steps=2),
    ),
    ("predictive_power", lambda m, d: predictive_power(m, _pattern(d), d.images, d.labels, 0)),
    ("floor_rate", lambda m, d: floor_rate(m, d.images, d.labels, 0)),
    ("random_pixel_power", lambda m, d: random_pixel_power(m, d.images[0], d.images, d.labels, 0, 8, trials=2)),
    ("power_curve", lambda m, d: power_curve(m, torch.rand(16, 16), d.images[0], d.images, d.labels, 0, ks=(4, 8))),
    (
        "captum_attribution(IntegratedGradients)",
        lambda m, d: captum_attribution(m, "IntegratedGradients", d.images[0], 0),
    ),
    ("captum_attribution(Saliency)", lambda m, d: captum_attribution(m, "Saliency", d.images[0], 0)),
    (
        "search_classes",
        lambda m, d: search_classes(m, d, d, [0, 1, 2], schedule=SHORT, baselines=("Saliency",), show_progress=False),
    ),
    ("search_classes(checkpointed)", lambda m, d: _checkpointed_search(m, d)),
    (
        "search_classes(stream, power sample)",
        lambda m, d: search_classes(
            m,
            ImageStream(TensorDataset(d.images), d.labels, batch_size=4),
            PowerSample(ImageStream(TensorDataset(d.images), d.labels), per_class=2),
            [0, 1, 2],
            schedule=SHORT,
            baselines=("Saliency",),
            show_progress=False,
        ),
    ),
    ("accuracy", lambda m, d: accuracy(m, d.images, d.labels)),
    ("pgd_attack", lambda m, d: pgd_attack(m, d.images[:4], d.labels[:4], steps=2)),
    ("pgd_robust_accuracy", lambda m, d: pgd_robust_accuracy(m, d.images[:4], d.labels[:4], steps=2)),
    ("clean_accuracy", lambda m, d: clean_accuracy(m, d.images, d.labels)),
    ("attack_success_rate", lambda m, d: attack_success_rate(m, d.images, d.labels, PatchTrigger(), 0)),
    ("trigger_robust_accuracy", lambda m, d: trigger_robust_accuracy(m, d.images, d.labels, PatchTrigger(), 0)),
    ("backdoor_metrics", lambda m, d: backdoor_metrics(m, d.images, d.labels, PatchTrigger(), 0)),
    ("scan", lambda m, d: scan(m, d.images, d.labels, ScanSettings(steps=3, batch_size=4), classes=[0, 1, 2])),
    (
        "scan(reference)",
        lambda m, d: scan(
            m, d.images, d.labels, ScanSettings(steps=3, batch_size=4), classes=[0, 1, 2], reference=_reference_net()
        ),
    ),
    (
        "scan(model as the reference)",
        lambda m, d: scan(
            _reference_net(), d.images, d.labels, ScanSettings(steps=3, batch_size=4), classes=[0, 1, 2], reference=m
        ),
    ),
    (
        "suspicion_scores",
        lambda m, d: suspicion_scores(m, d.images, d.labels, SuspicionSettings(steps=2), classes=[0, 1, 2]),
    ),
    (
        "neural_cleanse",
        lambda m, d: neural_cleanse(
            m, d.images, d.labels, NeuralCleanseSettings(steps=2, steps_per_epoch=1), classes=[0, 1, 2]
        ),
    ),
    ("dissect", _dissection),
    ("unit_activations", lambda m, d: list(unit_activations(m, LAYER, d.images, [0, 1], batch_size=8))),
    ("balanced_accuracy_per_class", lambda m, d: balanced_accuracy_per_class(m, d.images, d.labels, 10)),
    ("rank_units_for_class", lambda m, d: rank_units_for_class(m, LAYER, d.images, d.labels, 10)),
    (
        "ablation_curves",
        lambda m, d: ablation_curves(
            m,
            LAYER,
            d.images,
            d.labels,
            10,
            rank_units_for_class(m, LAYER, d.images, d.labels, 10),
            ks=(1, 2),
            classes=[0],
            random_trials=1,
        ),
    ),
    (
        "units_responding_to_pattern",
        lambda m, d: units_responding_to_pattern(m, LAYER, _pattern(d), d.images, d.labels, 0, top=2, random_trials=1),
    ),
    (
        "plot_top_activations",
        lambda m, d: plot_top_activations(
            m, LAYER, _dissection(m, d), d.images, [0, 1], num_images=2, use_pyplot=False
        ),
    ),
    ("ablate_units", lambda m, d: _run_ablated(m, d)),
    ("intervene", lambda m, d: _run_intervened(m, d)),
    (
        "attack_unit_shift",
        lambda m, d: attack_unit_shift(m, LAYER, d.images[:4], d.labels[:4], 5, settings=AttackSettings(steps=2)),
    ),
    (
        "captum_attribution(NoiseTunnel(IntegratedGradients))",
        lambda m, d: captum_attribution(
            m,
            CaptumBaseline(NoiseTunnel(IntegratedGradients(m)), attribute_kwargs=dict(nt_samples=2, n_steps=4)),
            d.images[0],
            0,
        ),
    ),
    ("captum_attribution(LayerGradCam callable)", lambda m, d: captum_attribution(m, _grad_cam(m), d.images[0], 0)),
    (
        "search_classes(configured baselines)",
        lambda m, d: search_classes(
            m,
            d,
            d,
            [0, 1, 2],
            schedule=SHORT,
            show_progress=False,
            baselines=["Saliency", NoiseTunnel(IntegratedGradients(m)), _grad_cam(m)],
        ),
    ),
]


def _checkpointed_search(model, data):
    with tempfile.TemporaryDirectory() as folder:
        return search_classes(
            model,
            data,
            data,
            [0, 1, 2],
            schedule=SHORT,
            baselines=("Saliency",),
            show_progress=False,
            checkpoint_dir=folder,
            chunk_size=1,
        )


def _grad_cam(model):
    def grad_cam(inputs, target):
        cam = LayerGradCam(model, model.features[3]).attribute(inputs, target=target)
        return LayerAttribution.interpolate(cam, inputs.shape[-2:], "bilinear")

    return grad_cam


def _run_ablated(model, data):
    with ablate_units(model, LAYER, [0, 1]):
        with torch.no_grad():
            model(data.images[:2])


def _run_intervened(model, data):
    with intervene(model, LAYER, [0, 1], value=2.0, mask=torch.ones(16, 16, dtype=torch.bool)):
        with torch.no_grad():
            model(data.images[:2])
            model(data.images[2:4])


def _hook_count(model):
    return sum(
        len(module._forward_hooks)
        + len(module._forward_pre_hooks)
        + len(module._backward_hooks)
        + len(getattr(module, "_backward_pre_hooks", {}))
        for module in model.modules()
    )


def _snapshot(model):
    return {
        "flags": [module.training for module in model.modules()],
        "state": {key: value.detach().clone() for key, value in model.state_dict().items()},
        "grads": [None if p.grad is None else p.grad.detach().clone() for p in model.parameters()],
        "hooks": _hook_count(model),
    }


def _assert_untouched(model, before):
    after = _snapshot(model)
    assert after["flags"] == before["flags"], "training flags changed"
    assert after["hooks"] == before["hooks"], "a hook was left behind"
    for key, value in before["state"].items():
        assert torch.equal(after["state"][key], value), f"{key} changed"
    for old, new in zip(before["grads"], after["grads"]):
        assert (old is None and new is None) or torch.equal(old, new), "a parameter's .grad changed"


def _mixed_model():
    """Training mode with one submodule set to eval, and a .grad on half the parameters."""
    torch.manual_seed(0)
    model = ContractNet().train()
    model.features[1].eval()  # the caller's own mixed setting must come back as it was
    for index, parameter in enumerate(model.parameters()):
        if index % 2 == 0:
            parameter.grad = torch.full_like(parameter, 0.25)
    return model


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name, call", ENTRY_POINTS, ids=[name for name, _ in ENTRY_POINTS])
def test_entry_point_leaves_the_model_untouched(name, call, data):
    model = _mixed_model()
    before = _snapshot(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the training-mode warning is expected here
        call(model, data)
    _assert_untouched(model, before)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name, call", ENTRY_POINTS, ids=[name for name, _ in ENTRY_POINTS])
def test_entry_point_leaves_the_model_untouched_when_it_raises(name, call, data):
    model = _mixed_model()
    model.fail_after = 1  # the second forward call fails
    before = _snapshot(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            call(model, data)
        except Failing:
            pass
    assert model.calls >= 1, "the entry point never called the model"
    _assert_untouched(model, before)

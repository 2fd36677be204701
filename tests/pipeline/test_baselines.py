"""search_classes compares the patterns with the baselines users configured: Captum objects, callables, names."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, NoiseTunnel, Saliency

from captum_classpattern.attr import SearchSchedule
from captum_classpattern.metrics import CaptumBaseline
from captum_classpattern.models import SmallCNN
from captum_classpattern.pipeline import SearchReport, search_classes

SETTINGS = dict(schedule=SearchSchedule(steps=5), seed=1, show_progress=False)
CLASSES = [0, 3, 5]

pytestmark = pytest.mark.usefixtures("one_thread")


def configured(model):
    """A string, a NoiseTunnel over Integrated Gradients with the user's baselines, an upsampled LayerGradCam."""
    smooth_ig = CaptumBaseline(
        NoiseTunnel(IntegratedGradients(model)),
        name="SmoothGrad-IG",
        attribute_kwargs=dict(nt_type="smoothgrad", nt_samples=2, stdevs=0.1, n_steps=8, baselines=0.5),
    )
    layer_cam = LayerGradCam(model, model.features[8])

    def grad_cam(inputs, target):
        return LayerAttribution.interpolate(layer_cam.attribute(inputs, target=target), inputs.shape[-2:], "bilinear")

    return ["Saliency", smooth_ig, grad_cam, NoiseTunnel(Saliency(model))]


NAMES = ["Saliency", "SmoothGrad-IG", "grad_cam", "NoiseTunnel(Saliency)"]


@pytest.fixture(scope="module")
def saliency_only(trained_digits_model, digits16):
    """The run with the string baseline alone: what every other run must give for it."""
    data = digits16
    return search_classes(trained_digits_model, data.search, data.eval, CLASSES, baselines=("Saliency",), **SETTINGS)


@pytest.fixture(scope="module")
def mixed(trained_digits_model, digits16):
    data = digits16
    baselines = configured(trained_digits_model)
    return search_classes(trained_digits_model, data.search, data.eval, CLASSES, baselines=baselines, **SETTINGS)


def test_objects_callables_and_names_in_one_report(mixed, saliency_only, tmp_path):
    report = mixed.report
    for row, reference in zip(report.classes, saliency_only.report.classes):
        assert list(row.baselines) == NAMES
        assert all(0.0 <= value <= 1.0 for value in row.baselines.values())
        # The string baseline gives exactly the numbers it gives alone; so do the pattern and its levels.
        assert row.baselines["Saliency"] == reference.baselines["Saliency"]
        assert (row.predictive_power, row.floor, row.random) == (
            reference.predictive_power,
            reference.floor,
            reference.random,
        )
    assert torch.equal(mixed.maps, saliency_only.maps)
    table = report.table()
    assert all(name in table.splitlines()[0] for name in NAMES)
    assert len({len(line) for line in table.splitlines()}) == 1  # long names widen their column
    report.to_json(tmp_path / "report.json")
    assert SearchReport.from_json(tmp_path / "report.json") == report
    assert report.mean("SmoothGrad-IG") == pytest.approx(sum(r.baselines["SmoothGrad-IG"] for r in report.classes) / 3)


def test_a_mapping_names_the_baselines(trained_digits_model, digits16, mixed):
    data, model = digits16, trained_digits_model
    named = dict(zip(["grad", "smooth ig", "cam", "smooth grad"], configured(model)))
    outcome = search_classes(model, data.search, data.eval, CLASSES[:1], baselines=named, **SETTINGS)
    row = outcome.report.classes[0]
    assert list(row.baselines) == list(named)
    assert list(row.baselines.values()) == list(mixed.report.classes[0].baselines.values())  # seeded per class


def test_checkpoints_record_the_baselines_and_resume_bit_identically(trained_digits_model, digits16, mixed, tmp_path):
    model, data, folder = trained_digits_model, digits16, tmp_path / "ckpt"

    def run(baselines, **extra):
        return search_classes(
            model, data.search, data.eval, CLASSES, baselines=baselines, checkpoint_dir=folder, **SETTINGS, **extra
        )

    chunked = run(configured(model), chunk_size=2)
    assert chunked.report == mixed.report and torch.equal(chunked.maps, mixed.maps)
    recorded = json.loads((folder / "manifest.json").read_text())["baselines"]
    assert recorded[0] == "Saliency"  # a method name is recorded as it always was
    assert [entry["name"] for entry in recorded[1:]] == NAMES[1:]
    assert "NoiseTunnel" in recorded[1]["repr"] and "nt_samples" in recorded[1]["repr"]
    assert "grad_cam" in recorded[2]["repr"] and "0x" not in json.dumps(recorded)

    (folder / "classes-000002-000003.pt").unlink()
    resumed = run(configured(model), resume=True)  # fresh objects, same settings: accepted
    assert resumed.report == mixed.report and torch.equal(resumed.maps, mixed.maps)

    with pytest.raises(ValueError, match="belong to another run .*baselines"):
        run(["Saliency"], resume=True)
    other = configured(model)
    other[1] = other[1].replace(attribute_kwargs=dict(other[1].attribute_kwargs, nt_samples=3))
    with pytest.raises(ValueError, match="belong to another run .*baselines"):  # same name, other settings
        run(other, resume=True)


def test_bad_baselines_are_refused_before_any_search(trained_digits_model, digits16):
    model, data = trained_digits_model, digits16
    calls = []

    def counting(inputs):
        calls.append(1)
        return model(inputs)

    for baselines, error, match in [
        (["Nope"], ValueError, "unknown Captum method 'Nope'"),
        ([Saliency(model), "Saliency"], ValueError, "two baselines are named 'Saliency'"),
        ([object()], TypeError, "a baseline must be"),
        (data.search.images, TypeError, "not images"),
    ]:
        with pytest.raises(error, match=match):
            search_classes(counting, data.search, data.eval, CLASSES, baselines=baselines, **SETTINGS)
    assert not calls


def test_a_layer_resolution_map_is_refused_with_advice(trained_digits_model, digits16):
    model, data = trained_digits_model, digits16
    layer_cam = LayerGradCam(model, model.features[8])
    with pytest.raises(ValueError, match=r"'coarse' returned shape \(1, 1, 4, 4\).*LayerAttribution.interpolate"):
        search_classes(model, data.search, data.eval, [0], baselines={"coarse": layer_cam}, **SETTINGS)


class Failing(Exception):
    """Raised by a baseline on purpose."""


def test_the_model_is_untouched_when_a_configured_baseline_raises(digits16):
    torch.manual_seed(0)
    model = SmallCNN(in_channels=1, num_classes=10, width=8).train()
    model.features[1].eval()
    flags = [module.training for module in model.modules()]
    state = {key: value.clone() for key, value in model.state_dict().items()}

    def failing(inputs, target):
        model.features[0].register_forward_hook(lambda *args: None)
        raise Failing("on purpose")

    data = digits16
    for baselines in (configured(model), {"failing": failing}):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # training mode and filler warnings are expected here
            try:
                search_classes(model, data.search, data.eval, [0, 1], baselines=baselines, **SETTINGS)
            except Failing:
                pass
        assert [module.training for module in model.modules()] == flags
        assert sum(len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules()) == 0
        assert all(torch.equal(value, state[key]) for key, value in model.state_dict().items())

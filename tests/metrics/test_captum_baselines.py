"""Captum baselines in every accepted form: names, settings, shapes, validation, the model left untouched."""

from __future__ import annotations

import functools

import pytest
import torch
from captum.attr import (
    InputXGradient,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    NoiseTunnel,
    Occlusion,
    Saliency,
)

from captum_classpattern.metrics import CaptumBaseline, captum_attribution, resolve_baselines

pytestmark = pytest.mark.usefixtures("one_thread")


def grad_cam_of(model, size=None):
    """LayerGradCam on the last conv layer, upsampled to ``size`` (left at layer resolution without one)."""
    layer_cam = LayerGradCam(model, model.features[8])

    def grad_cam(inputs, target):
        cam = layer_cam.attribute(inputs, target=target)
        return cam if size is None else LayerAttribution.interpolate(cam, size, "bilinear")

    return grad_cam


def test_a_method_name_gives_the_numbers_it_always_gave(trained_digits_model, digits16):
    model, canvas = trained_digits_model, digits16.search.images[0]
    batch = canvas.unsqueeze(0).clone().requires_grad_(True)
    expected = {
        "Saliency": Saliency(model).attribute(batch, target=3)[0],
        "IntegratedGradients": IntegratedGradients(model).attribute(
            batch, target=3, baselines=torch.zeros_like(batch), n_steps=32
        )[0],
        "Occlusion": Occlusion(model).attribute(batch, target=3, sliding_window_shapes=(1, 2, 2), strides=(1, 1, 1))[0],
    }
    for name, attribution in expected.items():
        assert torch.equal(captum_attribution(model, name, canvas, 3), attribution.detach())
        assert torch.equal(captum_attribution(model, CaptumBaseline(name), canvas, 3), attribution.detach())
    # A class stands for its name; attribute_kwargs override the image settings.
    assert torch.equal(captum_attribution(model, Saliency, canvas, 3), expected["Saliency"])
    finer = CaptumBaseline("IntegratedGradients", attribute_kwargs={"n_steps": 64})
    assert not torch.equal(captum_attribution(model, finer, canvas, 3), expected["IntegratedGradients"])


def test_noise_tunnel_with_custom_baselines(trained_digits_model, digits16):
    model, canvas = trained_digits_model, digits16.search.images[0]
    blurred = torch.nn.functional.avg_pool2d(canvas.unsqueeze(0), 3, 1, 1)
    baseline = CaptumBaseline(
        NoiseTunnel(IntegratedGradients(model)),
        attribute_kwargs=dict(nt_type="smoothgrad", nt_samples=3, stdevs=0.1, baselines=blurred, n_steps=8),
    )
    assert baseline.name == "NoiseTunnel(IntegratedGradients)"
    torch.manual_seed(0)
    first = captum_attribution(model, baseline, canvas, 3)
    torch.manual_seed(0)
    assert torch.equal(captum_attribution(model, baseline, canvas, 3), first)  # the noise comes from the global seed
    assert first.shape == canvas.shape and torch.isfinite(first).all()
    zero_baseline = baseline.replace(
        attribute_kwargs=dict(baseline.attribute_kwargs, baselines=torch.zeros_like(blurred))
    )
    torch.manual_seed(0)
    assert not torch.equal(captum_attribution(model, zero_baseline, canvas, 3), first)  # the user's baselines count


def test_layer_grad_cam_through_a_callable(trained_digits_model, digits16):
    model, canvas = trained_digits_model, digits16.search.images[0]
    cam = captum_attribution(model, grad_cam_of(model, (16, 16)), canvas, 3)
    assert cam.shape == (1, 16, 16) and torch.isfinite(cam).all()
    with pytest.raises(ValueError, match=r"\(1, 1, 4, 4\).*16 x 16 canvas.*LayerAttribution.interpolate"):
        captum_attribution(model, grad_cam_of(model), canvas, 3)


def test_every_accepted_output_shape(linear_model):
    canvas = torch.rand(1, 4, 4)
    for shape in [(1, 1, 4, 4), (1, 4, 4), (4, 4), (3, 4, 4), (1, 3, 4, 4)]:
        baseline = CaptumBaseline(lambda inputs, target, s=shape: torch.ones(s), name="ones")
        assert captum_attribution(linear_model, baseline, canvas, 0).shape == (shape[1:] if len(shape) == 4 else shape)
    as_tuple = CaptumBaseline(lambda inputs, target: (torch.ones(1, 1, 4, 4),), name="a tuple of one")
    assert captum_attribution(linear_model, as_tuple, canvas, 0).shape == (1, 4, 4)


def test_display_names(trained_digits_model):
    model = trained_digits_model

    def my_map(inputs, target):
        return inputs

    names = [
        b.name
        for b in resolve_baselines(
            [
                "Saliency",
                IntegratedGradients,
                NoiseTunnel(IntegratedGradients(model)),
                my_map,
                InputXGradient(model).attribute,
                CaptumBaseline(NoiseTunnel(Saliency(model)), name="SmoothGrad"),
            ]
        )
    ]
    assert names == [
        "Saliency",
        "IntegratedGradients",
        "NoiseTunnel(IntegratedGradients)",
        "my_map",
        "InputXGradient",
        "SmoothGrad",
    ]
    assert CaptumBaseline(functools.partial(my_map)).name == "my_map"
    with pytest.raises(TypeError, match="missing a required argument: 'sliding_window_shapes'"):
        CaptumBaseline(Occlusion(model).attribute)  # a bound method runs with the user's settings only
    # A mapping names its entries; one baseline alone is a list of one.
    mapped = resolve_baselines({"SG": NoiseTunnel(Saliency(model)), "IG": CaptumBaseline("IntegratedGradients")})
    assert [b.name for b in mapped] == ["SG", "IG"] and mapped[1].attribution == "IntegratedGradients"
    assert [b.name for b in resolve_baselines("Saliency")] == ["Saliency"]
    assert resolve_baselines(()) == []


@pytest.mark.parametrize(
    "baselines, error, match",
    [
        (["Nope"], ValueError, "unknown Captum method 'Nope'"),
        (["LayerGradCam"], ValueError, r"needs \['forward_func', 'layer'\].*LayerAttribution.interpolate"),
        (["NoiseTunnel"], ValueError, "not the model alone"),
        (["Attribution"], TypeError, "is not a Captum attribution method"),
        ([torch.nn.Linear], TypeError, "is not a Captum attribution method"),
        ([3], TypeError, "a baseline must be a captum.attr method name.*got an object of type int"),
        (3, TypeError, "baselines must be"),
        (torch.zeros(2, 1, 4, 4), TypeError, "not images"),
        ([lambda inputs, target: inputs], ValueError, "a lambda has no name"),
        (["Saliency", Saliency], ValueError, "two baselines are named 'Saliency'"),
        ({"floor": "Saliency"}, ValueError, "other than"),
        ({"": "Saliency"}, ValueError, "non-empty"),
        ([CaptumBaseline("Saliency", name="a"), CaptumBaseline("Occlusion", name="a")], ValueError, "named 'a'"),
    ],
)
def test_bad_baselines_are_refused(baselines, error, match):
    with pytest.raises(error, match=match):
        resolve_baselines(baselines)


def test_bad_settings_are_refused(linear_model):
    with pytest.raises(TypeError, match=r"'x' cannot be called as f\(inputs, target=.*'nt_sample'"):
        CaptumBaseline(Saliency(linear_model), name="x", attribute_kwargs={"nt_sample": 2})
    with pytest.raises(TypeError, match="unexpected keyword argument 'steps'"):
        CaptumBaseline("IntegratedGradients", attribute_kwargs={"steps": 2})
    with pytest.raises(TypeError, match="cannot be called"):
        CaptumBaseline(lambda x, t: x, name="two positional")
    with pytest.raises(ValueError, match=r"may not hold \['target'\]"):
        CaptumBaseline("Saliency", attribute_kwargs={"target": 1})
    with pytest.raises(TypeError, match="name must be a string"):
        CaptumBaseline("Saliency", name=3)
    with pytest.raises(TypeError, match="attribute_kwargs .* must be a mapping"):
        CaptumBaseline("Saliency", attribute_kwargs=[("abs", False)])


@pytest.mark.parametrize(
    "result, error, match",
    [
        ([1.0, 2.0], TypeError, "returned a list"),
        ((torch.ones(4, 4), torch.ones(1)), TypeError, "returned a tuple of 2.*convergence deltas"),
        (None, TypeError, "returned a NoneType"),
        (torch.ones(4, 4, dtype=torch.long), TypeError, "torch.int64 tensor"),
        (torch.ones(2, 1, 4, 4), ValueError, "a batch of 2"),
        (torch.ones(1, 1, 2, 2), ValueError, "upsample"),
        (torch.ones(16), ValueError, "upsample"),
        (torch.full((4, 4), float("nan")), ValueError, "'bad'.*NaN"),
    ],
)
def test_wrong_results_are_refused(linear_model, result, error, match):
    with pytest.raises(error, match=match):
        captum_attribution(
            linear_model, CaptumBaseline(lambda inputs, target: result, name="bad"), torch.rand(1, 4, 4), 0
        )


class Failing(Exception):
    """Raised by a baseline on purpose."""


def _mixed_model():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.BatchNorm2d(4),
        torch.nn.Dropout(0.5),
        torch.nn.Flatten(),
        torch.nn.Linear(64, 3),
    ).train()
    model[1].eval()
    model[0].weight.grad = torch.full_like(model[0].weight, 0.25)
    return model


def _state(model):
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())
    grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    return [m.training for m in model.modules()], hooks, grads, {k: v.clone() for k, v in model.state_dict().items()}


def _assert_same_state(model, before):
    flags, hooks, grads, state = _state(model)
    assert flags == before[0] and hooks == before[1]
    assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(grads, before[2]))
    assert all(torch.equal(state[k], before[3][k]) for k in state)


@pytest.mark.filterwarnings("ignore:.*training mode")
def test_the_model_is_left_as_it_was_also_when_the_baseline_raises():
    model = _mixed_model()
    before = _state(model)

    def careless(inputs, target):  # leaves a hook and gradients behind, then fails
        assert not model.training
        model[0].register_forward_hook(lambda *args: None)
        model[4].register_full_backward_hook(lambda *args: None)
        model(inputs)[0, target].backward()
        raise Failing("the baseline failed on purpose")

    held = model[0].weight.grad
    with pytest.raises(Failing):
        captum_attribution(model, careless, torch.rand(1, 4, 4), 0)
    _assert_same_state(model, before)
    assert model[0].weight.grad is held and (held == 0.25).all()  # the caller's own tensor, its values restored
    for method in ("Saliency", NoiseTunnel(IntegratedGradients(model)), grad_cam_of_small(model)):
        captum_attribution(model, method, torch.rand(1, 4, 4), 1)
        _assert_same_state(model, before)


def grad_cam_of_small(model):
    """LayerGradCam on the first conv of :func:`_mixed_model`, already at the canvas resolution."""

    def small_grad_cam(inputs, target):
        return LayerGradCam(model, model[0]).attribute(inputs, target=target)

    return small_grad_cam


def test_the_repr_is_stable_and_tells_settings_apart(linear_model):
    first = CaptumBaseline(
        NoiseTunnel(IntegratedGradients(linear_model)), attribute_kwargs={"baselines": torch.zeros(1, 1, 4, 4)}
    )
    again = CaptumBaseline(
        NoiseTunnel(IntegratedGradients(linear_model)), attribute_kwargs={"baselines": torch.zeros(1, 1, 4, 4)}
    )
    other = CaptumBaseline(
        NoiseTunnel(IntegratedGradients(linear_model)), attribute_kwargs={"baselines": torch.ones(1, 1, 4, 4)}
    )
    assert repr(first) == repr(again) and repr(first) != repr(other)
    assert "0x" not in repr(first) and "NoiseTunnel" in repr(first) and "sha256=" in repr(first)
    assert repr(CaptumBaseline(grad_cam_of_small(linear_model))) == repr(
        CaptumBaseline(grad_cam_of_small(linear_model))
    )

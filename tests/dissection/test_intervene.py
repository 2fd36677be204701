"""Interventions on units: scale, set, restrict to a region, nest, clean up, refuse bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from captum_classpattern.dissection import Intervention, ablate_units, intervene


def unit_net():
    """A 1x1 conv whose unit c outputs (c + 1) * pixel: on an all-ones image every unit is known."""
    conv = nn.Conv2d(1, 4, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.arange(1.0, 5.0).view(4, 1, 1, 1))
        conv.bias.zero_()
    return nn.Sequential(conv, nn.ReLU())


def ones(n=2, size=4):
    return torch.ones(n, 1, size, size)


def expected_clean(n=2, size=4):
    return torch.arange(1.0, 5.0).view(1, 4, 1, 1).expand(n, 4, size, size).clone()


def test_scale_zero_switches_off_exactly_those_units():
    model = unit_net()
    with intervene(model, "0", [1, 3], scale=0.0) as record:
        out = model(ones())
    assert record == Intervention(layer="0", units=(1, 3), mode="scale", masked=False)
    expected = expected_clean()
    expected[:, [1, 3]] = 0
    assert torch.equal(out, expected)
    assert torch.equal(model(ones()), expected_clean())


def test_scale_and_value_per_unit_and_boolean_unit_mask():
    model = unit_net()
    with intervene(model, model[0], torch.tensor([0, 2]), scale=torch.tensor([3.0, 0.5])):
        out = model(ones())
    assert torch.equal(out[:, 0], torch.full((2, 4, 4), 3.0))
    assert torch.equal(out[:, 2], torch.full((2, 4, 4), 1.5))
    assert torch.equal(out[:, [1, 3]], expected_clean()[:, [1, 3]])
    with intervene(model, "0", torch.tensor([False, True, False, True]), value=torch.tensor([7.0, -2.0])) as rec:
        out = model(ones())
    assert rec.units == (1, 3) and rec.mode == "value"
    assert torch.equal(out[:, 1], torch.full((2, 4, 4), 7.0))
    assert torch.equal(out[:, 3], torch.zeros(2, 4, 4))  # set to -2 at the conv, then the ReLU
    with intervene(model, "1", np.array([True, False, False, False]), value=9.0):
        assert torch.equal(model(ones())[:, 0], torch.full((2, 4, 4), 9.0))


def test_bool_mask_is_resized_by_nearest_and_applied_pixel_by_pixel():
    model = unit_net()
    region = torch.zeros(8, 8, dtype=torch.bool)
    region[1:6, 2:7] = True
    with intervene(model, "0", [2], value=10.0, mask=region) as record:
        out = model(ones())
    assert record.masked
    small = region[::2, ::2]  # nearest from 8 to 4: pixel i takes source pixel 2 i
    for i in range(4):
        for j in range(4):
            assert out[0, 2, i, j] == (10.0 if small[i, j] else 3.0)
    assert torch.equal(out[:, [0, 1, 3]], expected_clean()[:, [0, 1, 3]])


def test_float_mask_blends_area_down_bilinear_up_and_per_image():
    model = unit_net()
    weights = torch.rand(8, 8, generator=torch.Generator().manual_seed(0))
    with intervene(model, "0", [0], value=5.0, mask=weights):
        out = model(ones())
    pooled = F.avg_pool2d(weights.double()[None, None], 2)[0, 0].float()
    torch.testing.assert_close(out[0, 0], 1.0 + (5.0 - 1.0) * pooled)
    coarse = torch.tensor([[0.0, 1.0], [1.0, 0.5]])
    with intervene(model, "0", [0], scale=0.0, mask=coarse):
        out = model(ones())
    grown = F.interpolate(coarse[None, None], size=(4, 4), mode="bilinear", align_corners=False)[0, 0]
    torch.testing.assert_close(out[1, 0], 1.0 - grown)
    per_image = torch.zeros(2, 4, 4, dtype=torch.bool)
    per_image[1, 0, 0] = True
    with intervene(model, "0", [3], scale=0.0, mask=per_image):
        out = model(ones())
    assert torch.equal(out[0], expected_clean(1)[0])
    assert out[1, 3, 0, 0] == 0 and out[1, 3].sum() == 4.0 * 15


def test_nested_interventions_compose_and_ablation_agrees():
    model = unit_net()
    with intervene(model, "0", [1], scale=2.0), intervene(model, "0", [1, 2], scale=3.0):
        out = model(ones())
    assert torch.equal(out[:, 1], torch.full((2, 4, 4), 12.0))
    assert torch.equal(out[:, 2], torch.full((2, 4, 4), 9.0))
    with intervene(model, "0", [1], value=5.0), intervene(model, "1", [1], scale=0.5):
        assert torch.equal(model(ones())[:, 1], torch.full((2, 4, 4), 2.5))
    with ablate_units(model, "0", [2, 2]) as units, intervene(model, "0", [2], scale=0.0):
        assert units == [2, 2]
        reference = model(ones())
    with intervene(model, "0", [2], value=0.0):
        assert torch.equal(model(ones()), reference)


def test_generator_layer_and_gradients_flow():
    decoder = nn.Sequential(nn.ConvTranspose2d(3, 5, 4, stride=2, padding=1), nn.ReLU(), nn.Conv2d(5, 1, 3, padding=1))
    codes = torch.rand(2, 3, 4, 4, requires_grad=True)
    region = torch.zeros(16, 16, dtype=torch.bool)
    region[:8, :8] = True
    tap = {}
    handle = decoder[1].register_forward_hook(lambda m, i, o: tap.setdefault("out", o))
    try:
        with intervene(decoder, "0", [4], value=2.0, mask=region):
            decoder(codes).sum().backward()
    finally:
        handle.remove()
    assert torch.equal(tap["out"][:, 4, :4, :4], torch.full((2, 4, 4), 2.0))
    assert codes.grad is not None and torch.isfinite(codes.grad).all()


def test_hooks_removed_after_exception_and_model_untouched():
    model = unit_net().train()
    model[0].weight.grad = torch.full_like(model[0].weight, 0.25)
    state = {key: value.clone() for key, value in model.state_dict().items()}
    with pytest.raises(RuntimeError, match="boom"):
        with intervene(model, "0", [0], scale=0.0, mask=torch.ones(4, 4)):
            model(ones())
            raise RuntimeError("boom")
    assert not model[0]._forward_hooks and model.training
    assert torch.equal(model[0].weight.grad, torch.full_like(model[0].weight, 0.25))
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key])


def test_errors():
    model = unit_net()
    flat = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    cases = [
        (ValueError, "exactly one of", dict(units=[0])),
        (ValueError, "exactly one of", dict(units=[0], scale=1.0, value=1.0)),
        (ValueError, "out of range.*4 units", dict(units=[4], scale=0.0)),
        (ValueError, "non-negative", dict(units=[-1], scale=0.0)),
        (ValueError, "must not repeat", dict(units=[1, 1], scale=0.0)),
        (ValueError, "NaN", dict(units=[0], value=float("nan"))),
        (ValueError, "one entry per unit", dict(units=[0, 1], value=torch.ones(3))),
        (TypeError, "scale must be", dict(units=[0], scale="half")),
        (TypeError, "units must be", dict(units=torch.tensor([0.5]), scale=0.0)),
        (ValueError, "boolean unit mask has 3", dict(units=torch.tensor([True, False, True]), scale=0.0)),
        (ValueError, "H x W or N x H x W", dict(units=[0], scale=0.0, mask=torch.ones(4))),
        (ValueError, "H x W or N x H x W", dict(units=[0], scale=0.0, mask=torch.ones(1, 1, 4, 4))),
        (ValueError, r"in \[0, 1\]", dict(units=[0], scale=0.0, mask=torch.full((4, 4), 2.0))),
        (TypeError, "bool tensor or a float", dict(units=[0], scale=0.0, mask=torch.ones(4, 4, dtype=torch.long))),
    ]
    for error, message, kwargs in cases:
        with pytest.raises(error, match=message):
            with intervene(model, "0", **kwargs):
                pass
    with pytest.raises(ValueError, match="out of range"):  # a ReLU declares no width: checked when it runs
        with intervene(model, "1", [5], scale=0.0):
            model(ones())
    with pytest.raises(ValueError, match="needs a layer with N x C x H x W"):
        with intervene(flat, "1", [0], scale=0.0, mask=torch.ones(4, 4)):
            flat(ones())
    with pytest.raises(ValueError, match="regions but the batch has 2"):
        with intervene(model, "0", [0], scale=0.0, mask=torch.ones(3, 4, 4, dtype=torch.bool)):
            model(ones())
    with pytest.raises(ValueError, match="no layer named"):
        with intervene(model, "features", [0], scale=0.0):
            pass
    assert not model[0]._forward_hooks and not model[1]._forward_hooks and not flat[1]._forward_hooks
    with intervene(flat, "1", [2], value=1.5):  # no spatial dims, no mask: fine
        assert torch.equal(flat(ones())[:, 2], torch.full((2,), 1.5))

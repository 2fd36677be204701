"""ClassPattern under Captum's own wrappers: NoiseTunnel, sensitivity_max and infidelity, with Captum's defaults."""

import pytest
import torch
from captum.attr import NoiseTunnel
from captum.metrics import infidelity, sensitivity_max

from captum_classpattern import ClassPattern, SearchSchedule

SHORT = SearchSchedule(optimizer="sign", step_size=0.1, batch_size=4, steps=3)
NT_TYPES = ["smoothgrad", "smoothgrad_sq", "vargrad"]


@pytest.fixture
def strong_model(linear_model):
    """The linear toy model with weights large enough for the cross-entropy to move the map."""
    with torch.no_grad():
        linear_model[1].weight.copy_(torch.randn(3, 16, generator=torch.Generator().manual_seed(3)) * 10)
    return linear_model


@pytest.fixture
def bound(strong_model, toy_split):
    return ClassPattern(strong_model, baselines=toy_split.images, baseline_labels=toy_split.labels)


@pytest.mark.parametrize("nt_type", NT_TYPES)
def test_noise_tunnel_with_captum_defaults_runs_on_a_search_set_bound_in_the_constructor(bound, toy_split, nt_type):
    canvases = toy_split.images[:2]
    maps = NoiseTunnel(bound).attribute(canvases, nt_type=nt_type, target=[0, 1], schedule=SHORT)
    assert maps.shape == canvases.shape and torch.isfinite(maps).all()
    if nt_type == "vargrad":
        assert float(maps.min()) > -1e-6 and float(maps.max()) > 0  # the noise changes the maps
    else:
        assert float(maps.min()) >= 0 and float(maps.max()) <= 1


def test_noise_tunnel_smoothgrad_is_the_mean_map_of_the_clamped_noisy_canvases(bound, toy_split):
    canvases, targets, samples = toy_split.images[:2], [0, 1], 5
    torch.manual_seed(7)
    smooth = NoiseTunnel(bound).attribute(canvases, nt_type="smoothgrad", target=targets, schedule=SHORT)
    # The same noise as NoiseTunnel draws it: one normal sample per value of the repeated canvases.
    torch.manual_seed(7)
    repeated = canvases.repeat_interleave(samples, dim=0)
    noisy = repeated + torch.normal(0, torch.tensor(1.0).repeat(repeated.shape))
    assert float(noisy.min()) < 0 and float(noisy.max()) > 1  # Captum's default noise leaves [0, 1]
    maps = bound.attribute(noisy.clamp(0, 1), target=[t for t in targets for _ in range(samples)], schedule=SHORT)
    torch.testing.assert_close(smooth, maps.view(2, samples, 1, 4, 4).mean(1))


def test_noise_tunnel_accepts_a_dataloader_bound_in_the_constructor(strong_model, toy_split):
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(toy_split.images, toy_split.labels), batch_size=4
    )
    maps = NoiseTunnel(ClassPattern(strong_model, baselines=loader)).attribute(
        toy_split.images[:2], nt_type="smoothgrad", nt_samples=2, target=[0, 1], schedule=SHORT
    )
    assert maps.shape == (2, 1, 4, 4)


@pytest.mark.parametrize("nt_type", NT_TYPES)
def test_noise_tunnel_refuses_a_search_set_passed_to_attribute_with_a_clear_error(strong_model, toy_split, nt_type):
    canvases = toy_split.images[:2]
    tunnel = NoiseTunnel(ClassPattern(strong_model))
    # As many images as inputs: NoiseTunnel repeats them (not the labels); ClassPattern says what to do.
    with pytest.raises(ValueError, match="bind the search set in the constructor"):
        tunnel.attribute(
            canvases,
            nt_type=nt_type,
            target=[0, 1],
            baselines=toy_split.images[4:6],
            baseline_labels=toy_split.labels[4:6],
            schedule=SHORT,
        )
    # Any other number: NoiseTunnel's own check refuses it before ClassPattern runs.
    with pytest.raises(AssertionError, match="Baseline can be provided as a tensor"):
        tunnel.attribute(
            canvases,
            nt_type=nt_type,
            target=[0, 1],
            baselines=toy_split.images,
            baseline_labels=toy_split.labels,
            schedule=SHORT,
        )


def test_sensitivity_max_with_its_default_perturbation_on_a_bound_search_set(bound, toy_split):
    sensitivity = sensitivity_max(bound.attribute, toy_split.images[:2], target=[0, 1], schedule=SHORT)
    assert sensitivity.shape == (2,) and torch.isfinite(sensitivity).all() and (sensitivity >= 0).all()


def test_sensitivity_max_with_a_search_set_passed_to_attribute(strong_model, toy_split):
    explain = ClassPattern(strong_model).attribute
    kwargs = dict(target=[0, 1], baselines=toy_split.images, baseline_labels=toy_split.labels, schedule=SHORT)
    sensitivity = sensitivity_max(explain, toy_split.images[:2], **kwargs)
    assert sensitivity.shape == (2,) and torch.isfinite(sensitivity).all()
    # As many images as inputs: sensitivity_max repeats them as a per-input baseline.
    kwargs.update(baselines=toy_split.images[4:6], baseline_labels=toy_split.labels[4:6])
    with pytest.raises(ValueError, match="bind the search set in the constructor"):
        sensitivity_max(explain, toy_split.images[:2], **kwargs)


def test_infidelity_with_captum_style_noise(bound, strong_model, toy_split):
    def perturb(inputs):
        noise = torch.randn(inputs.shape, generator=torch.Generator().manual_seed(0)) * 0.003
        return noise, inputs - noise

    canvases = toy_split.images[:2]
    maps = bound.attribute(canvases, target=[0, 1], schedule=SHORT)
    score = infidelity(strong_model, perturb, canvases, maps, target=[0, 1])
    assert score.shape == (2,) and torch.isfinite(score).all() and (score >= 0).all()

"""Generator dissection, causal effects and editing on a planted generator whose units paint known colours."""

import numpy as np
import pytest
import torch
from torch import nn

from captum_classpattern.dissection import (
    AblationEffect,
    CausalSettings,
    ConceptDataset,
    ConceptSegmenter,
    InsertionEffect,
    UnitEdit,
    ablation_effect,
    dissect_generator,
    edit_with_units,
    insertion_effect,
    segmentation_iou,
)
from captum_classpattern.visualization import plot_generated_edits

COLOURS = ("red", "green", "blue", "yellow")
PALETTE = torch.tensor([[0.90, 0.12, 0.10], [0.10, 0.72, 0.20], [0.12, 0.25, 0.92], [0.95, 0.85, 0.10]])
SIDE, SCALE = 8, 4  # 8 x 8 layer, 32 x 32 images


class Failing(Exception):
    """Raised by the planted generator on purpose."""


class Planted(nn.Module):
    """Units 0-3 paint red, green, blue, yellow where they exceed 0.5 (the strongest wins); units 4-5 are noise."""

    def __init__(self):
        super().__init__()
        self.norm = nn.BatchNorm2d(6)  # identity in eval mode; gives the contract test a buffer and a flag
        self.units = nn.Identity()
        self.up = nn.Upsample(scale_factor=SCALE, mode="nearest")
        self.fail_after = None
        self.calls = 0

    def forward(self, latents):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise Failing("the generator failed on purpose")
        units = self.units(self.norm(latents))
        colours = units[:, :4]
        best = colours.argmax(1)
        painted = PALETTE.to(latents.device)[best].permute(0, 3, 1, 2)
        on = (colours.amax(1, keepdim=True) > 0.5).float()
        image = on * painted + (1 - on) * 0.5
        return self.up(image)


class PlantedEncoder(nn.Module):
    """Reads each colour's 8 x 8 map back from an image painted by :class:`Planted` (noise units 0)."""

    def forward(self, images):
        small = images[:, :, ::SCALE, ::SCALE]
        distance = ((small[:, None] - PALETTE[None, :, :, None, None]) ** 2).sum(2)
        colours = (distance < 0.05).float() * 1.5
        return torch.cat([colours, torch.zeros_like(colours[:, :2])], 1)


def planted_latents(count, seed=0):
    """Two colours per image, one in the top half and one in the bottom half, on graded activations."""
    generator = torch.Generator().manual_seed(seed)
    latents = torch.zeros(count, 6, SIDE, SIDE)
    for i in range(count):
        first, second = torch.randperm(4, generator=generator)[:2].tolist()
        for colour, rows in ((first, slice(0, 4)), (second, slice(4, 8))):
            left = int(torch.randint(0, 4, (1,), generator=generator))
            width = int(torch.randint(2, 5, (1,), generator=generator))
            latents[i, colour, rows, left : left + width] = 1.0 + 0.5 * torch.rand(4, width, generator=generator)
    latents[:, 4:] = 1.2 * torch.rand(count, 2, SIDE, SIDE, generator=generator)
    return latents


@pytest.fixture(scope="module")
def planted():
    return Planted().eval(), planted_latents(48), ConceptSegmenter()


@pytest.fixture(scope="module")
def result(planted):
    generator, latents, segmenter = planted
    return dissect_generator(generator, "units", latents, segmenter, quantile=0.05, batch_size=16)


def test_dissection_labels_each_planted_unit_with_its_colour(result):
    assert result.layer == "units"
    assert result.unit_concepts[:4] == list(COLOURS)
    assert (result.unit_ious[:4] > 0.3).all()
    assert result.unit_ious[4:].max() < result.unit_ious[:4].min()


def test_switching_a_unit_off_removes_its_colour(planted, result):
    generator, latents, segmenter = planted
    settings = CausalSettings(units=1, random_draws=2, batch_size=24)
    effect = ablation_effect(generator, "units", latents[:24], segmenter, result, concepts=COLOURS, settings=settings)
    assert effect.top_units == [[0], [1], [2], [3]]
    assert (effect.area_before > 0.05).all()
    np.testing.assert_allclose(effect.removed_top, 1.0)
    assert (effect.removed_random < 0.2).all()
    assert effect.summary()["removed_top"] == pytest.approx(1.0)
    assert all(
        u not in draw for units, draws in zip(effect.top_units, effect.random_units) for u in units for draw in draws
    )


def test_switching_a_unit_on_in_a_region_paints_its_colour_there(planted, result):
    generator, latents, segmenter = planted
    region = torch.zeros(32, 32, dtype=torch.bool)
    region[12:20, 12:20] = True
    settings = CausalSettings(units=1, boost=2.0, batch_size=16)
    effect = insertion_effect(generator, "units", latents, segmenter, result, "red", region, settings)
    assert effect.units == [0]
    np.testing.assert_allclose(effect.share_after, 1.0)
    assert effect.share_before.mean() < 0.5
    assert effect.appeared.mean() > 0.5
    summary = effect.summary()
    assert summary["all"]["images"] == 48
    assert summary["object"]["images"] + summary["ground"]["images"] == 48
    # outside the region nothing changed
    with torch.no_grad():
        images = generator(latents)
    assert images.shape == (48, 3, 32, 32)


def test_per_image_regions_follow_the_batches(planted, result):
    generator, latents, segmenter = planted
    regions = torch.zeros(48, 32, 32, dtype=torch.bool)
    regions[:24, :8, :8] = True
    regions[24:, 24:, 24:] = True
    settings = CausalSettings(units=1, boost=2.0, batch_size=16)
    effect = insertion_effect(generator, "units", latents, segmenter, result, "blue", regions, settings)
    np.testing.assert_allclose(effect.share_after, 1.0)


def test_editing_a_real_image_through_units(planted, result):
    generator, latents, segmenter = planted
    images = generator(latents[:6]).detach()
    region = torch.zeros(32, 32, dtype=torch.bool)
    region[:, :16] = True
    added = edit_with_units(
        PlantedEncoder(), generator, "units", images, [1], region, segmenter, "green", value=3.0, batch_size=4
    )
    np.testing.assert_allclose(added.share_after, 1.0)
    assert torch.equal(added.reconstructed, images)
    assert torch.equal(added.edited[..., 16:], images[..., 16:])
    removed = edit_with_units(
        PlantedEncoder(), generator, "units", images, [0, 1, 2, 3], region, segmenter, "red", scale=0.0
    )
    np.testing.assert_allclose(removed.share_after, 0.0)
    assert removed.change <= 0
    again = UnitEdit.from_dict(added.to_dict())
    assert torch.equal(again.edited, added.edited) and again.units == [1]


def test_results_round_trip(tmp_path, planted, result):
    generator, latents, segmenter = planted
    settings = CausalSettings(units=1, random_draws=2, batch_size=16)
    effect = ablation_effect(generator, "units", latents[:16], segmenter, result, concepts=["red"], settings=settings)
    effect.to_json(tmp_path / "ablation.json")
    again = AblationEffect.from_json(tmp_path / "ablation.json")
    assert again.to_dict() == effect.to_dict()
    region = torch.ones(32, 32, dtype=torch.bool)
    insertion = insertion_effect(generator, "units", latents[:16], segmenter, result, "red", region, settings)
    assert InsertionEffect.from_dict(insertion.to_dict()).to_dict() == insertion.to_dict()
    with pytest.raises(ValueError, match="AblationEffect"):
        AblationEffect.from_dict({"layer": "x"})


def test_segmenter_reads_the_palette_of_real_images():
    data = ConceptDataset(40, seed=3)
    segmenter = ConceptSegmenter()
    ious = segmentation_iou(segmenter, data, batch_size=16)
    assert set(COLOURS) <= set(ious)
    assert min(ious[c] for c in COLOURS) > 0.9
    assert segmenter.concept_id("red") == data.concept_names.index("red")
    with pytest.raises(ValueError, match="knows the concepts"):
        segmenter.concept_id("stripes")


def test_errors(planted, result):
    generator, latents, segmenter = planted
    with pytest.raises(TypeError, match="latents"):
        dissect_generator(generator, "units", latents.long(), segmenter)
    with pytest.raises(ValueError, match="no layer"):
        dissect_generator(generator, "nope", latents, segmenter)
    with pytest.raises(ValueError, match="units"):
        CausalSettings(units=0)
    with pytest.raises(ValueError, match="appear_share"):
        CausalSettings(appear_share=2.0)
    with pytest.raises(ValueError, match="6 units"):
        ablation_effect(generator, "units", latents, segmenter, result, settings=CausalSettings(units=7))
    one = CausalSettings(units=1)
    everywhere = torch.ones(32, 32, dtype=torch.bool)
    with pytest.raises(ValueError, match="unknown concept"):
        insertion_effect(generator, "units", latents, segmenter, result, "purple", everywhere, one)
    with pytest.raises(TypeError, match="bool"):
        insertion_effect(generator, "units", latents, segmenter, result, "red", torch.ones(32, 32), one)
    with pytest.raises(ValueError, match="32, 32"):
        insertion_effect(generator, "units", latents, segmenter, result, "red", everywhere[:16, :16], one)
    with pytest.raises(ValueError, match="exactly one"):
        edit_with_units(
            PlantedEncoder(),
            generator,
            "units",
            torch.rand(2, 3, 32, 32),
            [0],
            torch.ones(32, 32, dtype=torch.bool),
            segmenter,
            "red",
        )
    with pytest.raises(ValueError, match="unknown concept"):
        edit_with_units(
            PlantedEncoder(),
            generator,
            "units",
            torch.rand(2, 3, 32, 32),
            [0],
            torch.ones(32, 32, dtype=torch.bool),
            segmenter,
            "purple",
            scale=0.0,
        )
    with pytest.raises(ValueError, match="min_saturation"):
        ConceptSegmenter(min_saturation=1.5)


# The model contract of tests/test_model_contract.py, for the entry points that take a generator.
def _hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def _snapshot(model):
    return (
        [m.training for m in model.modules()],
        {k: v.clone() for k, v in model.state_dict().items()},
        [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        _hook_count(model),
    )


def _mixed_generator():
    model = Planted().train()
    model.up.eval()
    next(model.parameters()).grad = torch.full((6,), 0.25)
    return model


def _call(name, model, result):
    latents, segmenter = planted_latents(8), ConceptSegmenter()
    settings = CausalSettings(units=1, random_draws=1, batch_size=4)
    region = torch.ones(32, 32, dtype=torch.bool)
    if name == "dissect_generator":
        return dissect_generator(model, "units", latents, segmenter, quantile=0.05, batch_size=4)
    if name == "ablation_effect":
        return ablation_effect(model, "units", latents, segmenter, result, ["red"], settings)
    if name == "insertion_effect":
        return insertion_effect(model, "units", latents, segmenter, result, "red", region, settings)
    images = torch.rand(4, 3, 32, 32)
    return edit_with_units(PlantedEncoder(), model, "units", images, [0], region, segmenter, "red", scale=0.0)


ENTRY_POINTS = ["dissect_generator", "ablation_effect", "insertion_effect", "edit_with_units"]


@pytest.mark.parametrize("fail", [False, True])
@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_entry_points_leave_the_generator_untouched(name, fail, result):
    model = _mixed_generator()
    model.fail_after = 1 if fail else None
    flags, state, grads, hooks = _snapshot(model)
    with pytest.warns(UserWarning, match="training mode"):
        try:
            _call(name, model, result)
        except Failing:
            assert fail
    after = _snapshot(model)
    assert after[0] == flags and after[3] == hooks
    assert all(torch.equal(state[k], v) for k, v in after[1].items())
    assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(grads, after[2]))
    assert model.calls >= 1


def test_plot_generated_edits_without_pyplot(planted):
    generator, latents, _ = planted
    before = generator(latents[:4]).detach()
    after = before.clone()
    region = torch.zeros(32, 32, dtype=torch.bool)
    region[8:16, 8:16] = True
    after[:, :, 8:16, 8:16] = 1.0
    fig, axes = plot_generated_edits(before, after, region, num_images=3, use_pyplot=False)
    assert axes.shape == (2, 3)
    assert axes[1, 0].get_ylabel() == "after"
    fig, axes = plot_generated_edits(before, after, region[None].expand(4, -1, -1), num_images=4, use_pyplot=False)
    assert axes.shape == (2, 4)
    with pytest.raises(ValueError, match="num_images"):
        plot_generated_edits(before, after, num_images=9, use_pyplot=False)
    with pytest.raises(ValueError, match="same shape"):
        plot_generated_edits(before, after[:2], num_images=2, use_pyplot=False)
    with pytest.raises(TypeError, match="bool"):
        plot_generated_edits(before, after, region.float(), num_images=2, use_pyplot=False)

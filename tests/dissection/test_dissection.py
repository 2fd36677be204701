"""Network dissection: exact thresholds and IoUs, planted units, model state, errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from captum_classpattern.dissection import DissectionResult, ThresholdSettings, dissect
from captum_classpattern.visualization import plot_top_activations


class PassThrough(nn.Module):
    """Its ``layer`` outputs the input itself: the "images" are the activations."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Identity()
        self.head = nn.Linear(1, 2)

    def forward(self, x):
        return self.head(self.layer(x).mean((1, 2, 3))[:, None])


def batches_of(*tensors, size):
    return [tuple(t[i : i + size] for t in tensors) for i in range(0, tensors[0].shape[0], size)]


def upsampled_rows(acts, size):
    """U x P float64 values after the same bilinear upsampling dissect uses."""
    up = F.interpolate(acts, size=size, mode="bilinear", align_corners=False)
    return up.transpose(0, 1).reshape(acts.shape[1], -1).double().numpy(), up


def brute_force_ious(up, thresholds, masks, labels, concepts):
    """IoU per (unit, concept) straight from the definition, one concept at a time, numpy."""
    active = up.numpy() > thresholds[None, :, None, None]  # N x U x H x W (float32 vs float64)
    masks = masks.numpy()
    units = active.shape[1]
    ious = np.zeros((units, concepts))
    for c in range(1, concepts):
        for channel in range(masks.shape[1]):
            ids = masks[:, channel]
            if (ids == c).any():
                annotated = ids >= 0
                concept = (ids == c)[:, None]
                inter = (active & concept).sum((0, 2, 3))
                union = (active & annotated[:, None]).sum((0, 2, 3)) + concept.sum() - inter
                ious[:, c] = np.where(union > 0, inter / np.maximum(union, 1), 0)
        if labels is not None and labels[:, c].any():
            whole = labels[:, c].numpy().astype(bool)[:, None, None, None] & np.ones_like(active)
            inter = (active & whole).sum((0, 2, 3))
            union = active.sum((0, 2, 3)) + whole[:, 0].sum() - inter
            ious[:, c] = inter / union
    return ious


@pytest.fixture
def random_data():
    generator = torch.Generator().manual_seed(0)
    acts = torch.randn(10, 6, 5, 5, generator=generator)
    acts[:, 4] = torch.relu(acts[:, 4] - 1.5)  # many ties at zero
    masks = torch.randint(0, 4, (10, 2, 12, 12), generator=generator)
    masks[:, 1] = torch.where(masks[:, 1] > 0, masks[:, 1] + 3, masks[:, 1])  # second category: ids 4..6
    masks[:3, 1, :4] = -1  # some pixels not annotated in the second category
    labels = torch.zeros(10, 9)
    labels[::2, 7] = 1  # image-level concepts 7 and 8
    labels[1::3, 8] = 1
    return acts, masks, labels


@pytest.mark.parametrize("quantile", [0.005, 0.05, 0.3])
@pytest.mark.parametrize(
    "mode",
    [
        dict(),
        dict(threshold_settings=ThresholdSettings(exact=False)),
        dict(
            threshold_settings=ThresholdSettings(exact=False, max_exact_values=50, refine_bins=4, max_refine_passes=6)
        ),
    ],
)
def test_thresholds_equal_numpy_hazen(random_data, quantile, mode):
    acts, masks, _ = random_data
    rows, _ = upsampled_rows(acts, (12, 12))
    result = dissect(PassThrough(), "layer", batches_of(acts, masks, size=3), quantile=quantile, **mode)
    expected = np.quantile(rows, 1 - quantile, axis=1, method="hazen")
    np.testing.assert_array_equal(result.thresholds, expected)
    assert not result.threshold_errors.any()


def test_thresholds_without_upsampling_equal_numpy():
    acts = torch.rand(7, 3, 9, 9, generator=torch.Generator().manual_seed(1))
    masks = torch.ones(7, 9, 9, dtype=torch.long)
    result = dissect(PassThrough(), "layer", (acts, masks), quantile=0.01, batch_size=2)
    rows = acts.transpose(0, 1).reshape(3, -1).double().numpy()
    np.testing.assert_array_equal(result.thresholds, np.quantile(rows, 0.99, axis=1, method="hazen"))


def test_bounded_estimate_error_within_documented_bound(random_data):
    """Measured: with the collect pass disabled the error stays under the reported bound."""
    acts, masks, _ = random_data
    rows, _ = upsampled_rows(acts, (12, 12))
    expected = np.quantile(rows, 0.995, axis=1, method="hazen")
    for bins, passes in ((16, 1), (2048, 1), (64, 2)):
        result = dissect(
            PassThrough(),
            "layer",
            batches_of(acts, masks, size=4),
            threshold_settings=ThresholdSettings(
                exact=False, max_exact_values=0, refine_bins=bins, max_refine_passes=passes
            ),
        )
        error = np.abs(result.thresholds - expected)
        assert np.all(error <= result.threshold_errors + 1e-12)
        spread = rows.max(1) - rows.min(1)
        assert np.all(result.threshold_errors <= 2 * spread / bins**passes + 1e-6)


def test_ious_equal_brute_force(random_data):
    acts, masks, labels = random_data
    for mode in (dict(), dict(threshold_settings=ThresholdSettings(exact=False, max_exact_values=100))):
        result = dissect(PassThrough(), "layer", batches_of(acts, masks, labels, size=4), quantile=0.05, **mode)
        _, up = upsampled_rows(acts, (12, 12))
        expected = brute_force_ious(up, result.thresholds, masks, labels, 9)
        np.testing.assert_allclose(result.ious, expected, rtol=0, atol=1e-15)
        best = expected[:, 1:].argmax(1) + 1
        assert [result.concept_names.index(c) for c in result.unit_concepts] == best.tolist()


def test_default_categories_and_names(random_data):
    acts, masks, labels = random_data
    result = dissect(PassThrough(), "layer", (acts, masks, labels), quantile=0.05)
    assert result.concept_names[0] == "-" and result.concept_names[1] == "concept1"
    assert result.concept_categories[1:] == ["mask0"] * 3 + ["mask1"] * 3 + ["image"] * 2


def planted_model_and_data():
    """Images carry one-hot concept masks and noise; the layer plants known units.

    Units 0..4: concept 1..5 (the mask, average-pooled 2x, plus noise); unit 5: union of
    concepts 1 and 2; unit 6: concept 3 only at half strength plus strong noise is still
    concept 3; units 7..9: noise only.
    """
    generator = torch.Generator().manual_seed(0)
    count, side, concepts = 40, 16, 5
    ids = torch.zeros(count, side, side, dtype=torch.long)
    for n in range(count):  # one to three rectangles of random concepts per image
        for _ in range(1 + n % 3):
            c = int(torch.randint(1, concepts + 1, (1,), generator=generator))
            y, x = torch.randint(0, side - 6, (2,), generator=generator).tolist()
            h, w = torch.randint(3, 7, (2,), generator=generator).tolist()
            ids[n, y : y + h, x : x + w] = c
    onehot = F.one_hot(ids, concepts + 1).permute(0, 3, 1, 2)[:, 1:].float()
    noise = torch.rand(count, 4, side, side, generator=generator)
    images = torch.cat([onehot, noise], 1)

    class Planted(nn.Module):
        def forward(self, x):
            masks, noise = x[:, :concepts], x[:, concepts:]
            union = (masks[:, 0] + masks[:, 1]).clamp(max=1)[:, None]
            planted = torch.cat(
                [
                    masks + 0.3 * noise[:, :1],
                    union + 0.3 * noise[:, 1:2],
                    0.5 * masks[:, 2:3] + 0.4 * noise[:, 2:3],
                    noise[:, 1:4],
                ],
                1,
            )
            return F.avg_pool2d(planted, 2)

    model = nn.Sequential()
    model.add_module("planted", Planted())
    model.add_module("head", nn.Sequential(nn.Flatten(), nn.LazyLinear(2)))
    names = ["-", "red", "disk", "grass", "sky", "stripes"]
    categories = [None, "color", "object", "material", "object", "texture"]
    return model, (images, ids), names, categories


def test_planted_units_are_found():
    model, data, names, categories = planted_model_and_data()
    result = dissect(model, "planted", data, quantile=0.02, concept_names=names, categories=categories, batch_size=16)
    concepts = result.unit_concepts
    assert concepts[:5] == names[1:]
    assert concepts[5] in ("red", "disk")  # a union unit is labelled with one of its parts
    assert result.ious[5, 1] > 0.04 and result.ious[5, 2] > 0.04
    assert concepts[6] == "grass" and result.is_detector[6]
    assert result.is_detector[:7].all()
    assert (result.unit_ious[7:] < 0.04).all()
    assert result.unit_categories[1] == "object" and result.unit_categories[2] == "material"
    assert result.detectors()["disk"] >= 1


def test_result_table_json_roundtrip(tmp_path):
    model, data, names, categories = planted_model_and_data()
    result = dissect(model, model.planted, data, quantile=0.02, concept_names=names, categories=categories)
    text = str(result)
    assert "planted" in text and "disk" in text and text.count("\n") == result.num_units + 1
    rows = result.rows()
    assert set(rows[0]) == {"unit", "concept", "category", "iou", "threshold", "detector"}
    path = tmp_path / "sub" / "dissection.json"
    result.to_json(path)
    assert sorted(os.listdir(path.parent)) == ["dissection.json"]  # no temporary file left
    again = DissectionResult.from_json(path)
    assert again.rows() == rows
    np.testing.assert_array_equal(again.ious, result.ious)
    assert json.loads(path.read_text())["units"][0]["unit"] == 0
    assert result.table(detectors_only=True, sort_by="iou").count("yes") == int(result.is_detector.sum())
    assert result.units_for("sky") == [3]
    assert sum(result.detectors(by="category").values()) == int(result.is_detector.sum())
    assert DissectionResult.from_dict(result.to_dict()).rows() == rows
    with pytest.raises(ValueError, match="sort_by must be one of"):
        result.table(sort_by="name")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="not a JSON file"):
        DissectionResult.from_json(broken)
    broken.write_text(json.dumps({"layer": "x"}))
    with pytest.raises(ValueError, match="missing quantile"):
        DissectionResult.from_json(broken)


def test_dataset_input_and_model_state_untouched():
    from captum_classpattern.dissection import ConceptDataset

    data = ConceptDataset(12, image_size=16, seed=3)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 5),
    )
    model.train()
    model[1].eval()  # a mixed state must come back exactly as it was
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [m.training for m in model.modules()]
    with pytest.warns(UserWarning, match="training mode"):
        result = dissect(
            model, "2", data, concept_names=data.concept_names, categories=data.concept_categories, batch_size=5
        )
    assert result.num_images == 12 and result.num_units == 4 and result.mask_size == (16, 16)
    assert [m.training for m in model.modules()] == flags
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(m._forward_hooks for m in model.modules())


def test_hooks_removed_and_mode_restored_on_error():
    acts = torch.rand(6, 2, 4, 4)
    good = torch.zeros(3, 8, 8, dtype=torch.long)
    bad = torch.zeros(3, 9, 9, dtype=torch.long)
    model = PassThrough().train()
    with pytest.raises(ValueError, match="same mask categories and resolution"):
        dissect(model, "layer", [(acts[:3], good), (acts[3:], bad)])
    assert model.training and model.layer.training
    assert not model.layer._forward_hooks


def test_errors_say_what_to_do():
    acts = torch.rand(4, 2, 4, 4)
    masks = torch.zeros(4, 4, 4, dtype=torch.long)
    data = [(acts, masks)]
    with pytest.raises(ValueError, match="no layer named 'nope'.*layer"):
        dissect(PassThrough(), "nope", data)
    with pytest.raises(ValueError, match="N x C x H x W"):
        dissect(PassThrough(), "head", data)
    with pytest.raises(ValueError, match="empty"):
        dissect(PassThrough(), "layer", [])
    with pytest.raises(ValueError, match="quantile"):
        dissect(PassThrough(), "layer", data, quantile=1.0)
    with pytest.raises(ValueError, match="quantile"):
        dissect(PassThrough(), "layer", data, quantile=0)
    with pytest.raises(TypeError, match="one-shot iterator"):
        dissect(PassThrough(), "layer", iter(data))
    with pytest.raises(TypeError, match="integer"):
        dissect(PassThrough(), "layer", [(acts, masks.float())])
    with pytest.raises(ValueError, match="do not fit"):
        dissect(PassThrough(), "layer", [(acts, masks[:3])])
    with pytest.raises(TypeError, match="tuples"):
        dissect(PassThrough(), "layer", [acts])
    with pytest.raises(ValueError, match="concept_names"):
        dissect(PassThrough(), "layer", [(acts, masks + 3)], concept_names=["-", "a"])
    with pytest.raises(TypeError, match="layer must be"):
        dissect(PassThrough(), 3, data)


def test_plot_top_activations_without_pyplot():
    model, (images, ids), names, categories = planted_model_and_data()
    result = dissect(model, "planted", (images, ids), quantile=0.02, concept_names=names)
    fig, axes = plot_top_activations(model, "planted", result, images, [0, 1, 8], num_images=3, use_pyplot=False)
    assert axes.shape == (3, 3)
    assert tuple(fig.get_size_inches()) == pytest.approx((1.6 * 3, 1.7 * 3))  # default: 1.6 x 1.7 per panel
    assert "unit 1: disk" in axes[1, 0].get_title(loc="left")
    fig.canvas.draw() if hasattr(fig.canvas, "draw") else None
    with pytest.raises(ValueError, match="units"):
        plot_top_activations(model, "planted", result, images, [99], use_pyplot=False)
    with pytest.raises(ValueError, match="batch_size"):
        plot_top_activations(model, "planted", result, images, [0], batch_size=0, use_pyplot=False)
    assert not any(m._forward_hooks for m in model.modules())


def test_plot_top_activations_honours_fig_size_and_pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model, (images, ids), names, _ = planted_model_and_data()
    result = dissect(model, "planted", (images, ids), quantile=0.02, concept_names=names)
    fig, _ = plot_top_activations(
        model, "planted", result, images, [0, 1], num_images=2, fig_size=(3.0, 2.5), use_pyplot=False
    )
    assert tuple(fig.get_size_inches()) == pytest.approx((3.0, 2.5))
    before = set(plt.get_fignums())
    fig, _ = plot_top_activations(model, "planted", result, images, [0], num_images=2)  # Captum's default: pyplot
    try:
        assert fig.number in set(plt.get_fignums()) - before
    finally:
        plt.close(fig)


class ChangingData:
    """Re-iterable, but every pass draws new activations: what random augmentation does."""

    def __init__(self):
        self.passes = 0

    def __iter__(self):
        self.passes += 1
        generator = torch.Generator().manual_seed(self.passes)
        yield torch.rand(4, 2, 6, 6, generator=generator), torch.ones(4, 6, 6, dtype=torch.long)


def test_data_that_changes_between_passes_is_detected():
    with pytest.raises(RuntimeError, match="changed between dissection passes"):
        dissect(
            PassThrough(),
            "layer",
            ChangingData(),
            threshold_settings=ThresholdSettings(exact=False, max_exact_values=10),
        )


def test_progress_bar_and_explicit_device(capsys):
    acts = torch.rand(6, 2, 4, 4, generator=torch.Generator().manual_seed(2))
    masks = torch.randint(0, 3, (6, 8, 8), generator=torch.Generator().manual_seed(3))
    quiet = dissect(PassThrough(), "layer", (acts, masks), batch_size=4)
    shown = dissect(PassThrough(), "layer", (acts, masks), batch_size=4, show_progress=True, device="cpu")
    np.testing.assert_array_equal(quiet.ious, shown.ious)
    assert "Network dissection" in capsys.readouterr().err


def test_masks_of_another_aspect_ratio_are_refused():
    images = torch.rand(2, 3, 16, 16)
    masks = torch.zeros(2, 16, 8, dtype=torch.long)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3, padding=1))
    with pytest.raises(ValueError, match="aspect"):
        dissect(model, "0", [(images, masks)])
    # the same aspect ratio at a lower resolution is fine
    dissect(model, "0", [(images, torch.zeros(2, 8, 8, dtype=torch.long))])

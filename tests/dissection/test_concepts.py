"""The procedural concept data set: determinism, masks that match the drawing, labels."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from captum_classpattern.dissection import ConceptDataset


def test_items_are_seeded_and_well_formed():
    data = ConceptDataset(20, image_size=24, seed=5)
    image, masks, image_labels = data[3]
    assert image.shape == (3, 24, 24) and image.dtype == torch.float32
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert masks.shape == (3, 24, 24) and masks.dtype == torch.int64
    assert image_labels.shape == (data.num_concepts,) and not image_labels.any()
    again = ConceptDataset(20, image_size=24, seed=5)[3]
    assert all(torch.equal(a, b) for a, b in zip((image, masks, image_labels), again))
    assert not torch.equal(ConceptDataset(20, image_size=24, seed=6)[3][0], image)
    assert torch.equal(data[-17][0], image)


def test_masks_agree_with_names_categories_and_labels():
    data = ConceptDataset(15, image_size=32, seed=1)
    assert data.concept_names[0] == "-" and len(data.concept_categories) == data.num_concepts
    for i in range(len(data)):
        _, masks, _ = data[i]
        attributes = data.attributes(i)
        shape_ids, color_ids, texture_ids = (set(m.unique().tolist()) - {0} for m in masks)
        assert shape_ids == {data.concept_names.index(attributes["shape"])}
        assert color_ids == {data.concept_names.index(attributes["color"])}
        assert texture_ids == {data.concept_names.index(attributes["texture"])}
        assert torch.equal(masks[0] > 0, masks[1] > 0)  # shape and colour mark the same pixels
        assert torch.equal(masks[0] > 0, masks[2] == 0)  # the texture marks the ground
        assert data.class_names[int(data.labels[i])] == attributes["shape"]
        for channel, category in enumerate(data.mask_categories):
            assert {data.concept_categories[c] for c in masks[channel].unique().tolist() if c} == {category}
    assert torch.bincount(ConceptDataset(50).labels).tolist() == [10] * 5


def test_object_pixels_have_the_object_colour():
    data = ConceptDataset(10, seed=2, noise=0.0)
    for i in range(10):
        image, masks, _ = data[i]
        colour = data.concept_names[int(masks[1].max())]
        mean = image[:, masks[1] > 0].mean(1)
        dominant = {"red": [0], "green": [1], "blue": [2], "yellow": [0, 1]}[colour]
        assert all(mean[c] > 0.6 for c in dominant)


def test_image_level_textures_and_loaders():
    data = ConceptDataset(12, image_size=16, texture_level="image", shapes=("circle", "square"))
    image, masks, image_labels = data[0]
    assert masks.shape[0] == 2 and data.mask_categories == ("shape", "color")
    assert image_labels.sum() == 1 and data.concept_categories[int(image_labels.argmax())] == "texture"
    images, all_masks, all_labels, labels = data.tensors()
    assert images.shape == (12, 3, 16, 16) and all_masks.shape == (12, 2, 16, 16) and labels.max() == 1
    batch = next(iter(DataLoader(data, batch_size=4)))
    assert [tuple(t.shape) for t in batch] == [(4, 3, 16, 16), (4, 2, 16, 16), (4, data.num_concepts)]
    x, y = data.classification()[5]
    assert torch.equal(x, data[5][0]) and int(y) == 1


def test_bad_settings():
    with pytest.raises(ValueError, match="size"):
        ConceptDataset(0)
    with pytest.raises(ValueError, match="image_size"):
        ConceptDataset(5, image_size=8)
    with pytest.raises(ValueError, match="texture_level"):
        ConceptDataset(5, texture_level="scene")
    with pytest.raises(ValueError, match="shapes"):
        ConceptDataset(5, shapes=("circle", "hexagon"))
    with pytest.raises(IndexError):
        ConceptDataset(5)[5]

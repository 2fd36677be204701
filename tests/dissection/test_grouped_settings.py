"""dissect, dissect_generator, units_responding_to_pattern and edit_with_units take grouped settings.

The older keywords still work and give the same results.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from captum_classpattern.dissection import (
    ConceptSegmenter,
    DissectionSettings,
    PatternUnitsSettings,
    ThresholdSettings,
    UnitChange,
    dissect,
    dissect_generator,
    edit_with_units,
    units_responding_to_pattern,
)

from .test_ablation import RedPatch, pattern_model
from .test_dissection import planted_model_and_data
from .test_generator import Planted, PlantedEncoder, planted_latents


def test_dissection_settings_and_older_keywords_give_the_same_result():
    model, (images, ids), names, _ = planted_model_and_data()
    budget = ThresholdSettings(exact=False, refine_bins=64)
    older = dissect(model, "planted", (images, ids), quantile=0.02, iou_threshold=0.1, threshold_settings=budget)
    grouped = dissect(model, "planted", (images, ids), DissectionSettings(0.02, 0.1, budget))
    assert older.to_dict() == grouped.to_dict() and grouped.quantile == 0.02
    assert len(inspect.signature(dissect).parameters) <= 10
    with pytest.raises(TypeError, match="not both"):
        dissect(model, "planted", (images, ids), DissectionSettings(), quantile=0.02)
    with pytest.raises(TypeError, match="DissectionSettings"):
        dissect(model, "planted", (images, ids), 0.02)


def test_generator_dissection_takes_the_same_settings():
    generator, latents, segmenter = Planted().eval(), planted_latents(16), ConceptSegmenter()
    older = dissect_generator(generator, "units", latents, segmenter, quantile=0.05, batch_size=8)
    grouped = dissect_generator(generator, "units", latents, segmenter, DissectionSettings(quantile=0.05), batch_size=8)
    assert older.to_dict() == grouped.to_dict()
    assert len(inspect.signature(dissect_generator).parameters) <= 10


@pytest.mark.parametrize(
    "changes, error, message",
    [
        ({"quantile": 1.0}, ValueError, "quantile"),
        ({"iou_threshold": -0.1}, ValueError, "iou_threshold"),
        ({"thresholds": "exact"}, TypeError, "ThresholdSettings"),
    ],
)
def test_bad_dissection_settings_are_refused(changes, error, message):
    with pytest.raises(error, match=message):
        DissectionSettings(**changes)


def test_pattern_units_settings_and_older_keywords_agree():
    model, images, labels = pattern_model()
    older = units_responding_to_pattern(model, "1", RedPatch(), images, labels, 1, top=2, random_trials=2, seed=3)
    settings = PatternUnitsSettings(top=2, random_trials=2, seed=3)
    grouped = units_responding_to_pattern(model, "1", RedPatch(), images, labels, 1, settings)
    assert older.to_dict() == grouped.to_dict()
    bad_settings = (({"top": 0}, "top"), ({"rank_by": "size"}, "rank_by"), ({"random_trials": 0}, "random_trials"))
    for bad, message in bad_settings:
        with pytest.raises(ValueError, match=message):
            PatternUnitsSettings(**bad)
    with pytest.raises(TypeError, match="PatternUnitsSettings"):
        units_responding_to_pattern(model, "1", RedPatch(), images, labels, 1, 2)


def test_unit_change_and_older_keywords_edit_the_same():
    generator, segmenter = Planted().eval(), ConceptSegmenter()
    images = generator(planted_latents(4)).detach()
    region = torch.zeros(32, 32, dtype=torch.bool)
    region[:, :16] = True
    arguments = (PlantedEncoder(), generator, "units", images, [1], region, segmenter, "green")
    older = edit_with_units(*arguments, value=3.0, batch_size=2)
    grouped = edit_with_units(*arguments, UnitChange(value=3.0), batch_size=2)
    assert torch.equal(older.edited, grouped.edited)
    np.testing.assert_array_equal(older.share_after, grouped.share_after)
    with pytest.raises(ValueError, match="exactly one"):
        UnitChange(scale=0.0, value=1.0)
    with pytest.raises(ValueError, match="exactly one"):
        UnitChange()
    with pytest.raises(TypeError, match="number or a 1-d tensor"):
        UnitChange(scale=[0.0])
    with pytest.raises(TypeError, match="not both"):
        edit_with_units(*arguments, UnitChange(scale=0.0), value=1.0)

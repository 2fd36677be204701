"""ablation_curves takes its choices in one AblationSettings; the older keywords give the same curves."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from captum_classpattern.dissection import AblationSettings, ablation_curves, rank_units_for_class

from .test_ablation import planted_classifier


def test_settings_and_older_keywords_give_the_same_curves():
    model, images, labels = planted_classifier()
    ranking = rank_units_for_class(model, "features", images, labels, 5)
    older = ablation_curves(
        model, "features", images, labels, 5, ranking, ks=[1, 2], classes=[0, 3], random_trials=2, seed=4
    )
    grouped = ablation_curves(
        model,
        "features",
        images,
        labels,
        5,
        ranking,
        AblationSettings(ks=[1, 2], classes=[0, 3], random_trials=2, seed=4),
    )
    assert older.to_dict() == grouped.to_dict()
    np.testing.assert_array_equal(older.random_removed, grouped.random_removed)
    assert len(inspect.signature(ablation_curves).parameters) <= 10


def test_bad_ablation_settings_are_refused():
    with pytest.raises(ValueError, match="random_trials"):
        AblationSettings(random_trials=0)
    with pytest.raises(ValueError, match="batch_size"):
        AblationSettings(batch_size=0)
    model, images, labels = planted_classifier()
    ranking = rank_units_for_class(model, "features", images, labels, 5)
    with pytest.raises(TypeError, match="settings= or the older ks="):
        ablation_curves(model, "features", images, labels, 5, ranking, AblationSettings(), ks=[1])
    with pytest.raises(TypeError, match="settings must be an AblationSettings"):
        ablation_curves(model, "features", images, labels, 5, ranking, {"ks": [1]})

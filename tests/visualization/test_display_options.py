"""The figure functions' display arguments grouped in PanelOptions and TopActivationsOptions."""

import inspect

import matplotlib
import numpy as np
import pytest
import torch

from captum_classpattern.visualization import (
    PanelOptions,
    TopActivationsOptions,
    plot_top_activations,
    visualize_class_pattern,
)

matplotlib.use("Agg")
SIZE = 12


def _panel():
    generator = torch.Generator().manual_seed(0)
    return torch.rand(SIZE, SIZE, generator=generator), torch.rand(1, SIZE, SIZE, generator=generator)


@pytest.mark.parametrize("method", ["blended_heat_map", "pattern"])
def test_panel_options_and_older_keywords_draw_the_same_panel(method):
    attr, image = _panel()
    older_fig, older = visualize_class_pattern(
        attr, image, method, alpha_overlay=0.3, title="t", show_colorbar=True, use_pyplot=False
    )
    display = PanelOptions(alpha_overlay=0.3, title="t", show_colorbar=True)
    grouped_fig, grouped = visualize_class_pattern(attr, image, method, display=display, use_pyplot=False)
    assert older.get_title() == grouped.get_title() == "t" and len(older_fig.axes) == len(grouped_fig.axes)
    for first, second in zip(older.get_images(), grouped.get_images()):
        np.testing.assert_array_equal(first.get_array(), second.get_array())
    assert len(inspect.signature(visualize_class_pattern).parameters) <= 10


def test_bad_display_options_are_refused():
    with pytest.raises(ValueError, match="outlier_perc"):
        PanelOptions(outlier_perc=100)
    with pytest.raises(ValueError, match="alpha_overlay"):
        PanelOptions().replace(alpha_overlay=1.5)
    with pytest.raises(ValueError, match="num_images"):
        TopActivationsOptions(num_images=0)
    attr, image = _panel()
    with pytest.raises(TypeError, match="not both"):
        visualize_class_pattern(attr, image, display=PanelOptions(), title="t", use_pyplot=False)
    with pytest.raises(TypeError, match="PanelOptions"):
        visualize_class_pattern(attr, image, display=TopActivationsOptions(), use_pyplot=False)
    with pytest.raises(TypeError, match="TopActivationsOptions"):
        plot_top_activations(None, "x", None, torch.rand(2, 1, 4, 4), [0], display=PanelOptions())
    assert len(inspect.signature(plot_top_activations).parameters) <= 10

"""Figures: every method and grid renders headless, arguments are checked up front."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless, whatever the developer's default backend is

import inspect  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from captum.attr import visualization as captum_viz  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from captum_classpattern import (
    PowerCurve,  # noqa: E402
    plot_class_patterns,
    visualize_class_pattern,
)
from captum_classpattern._utils import save_figure_atomic  # noqa: E402
from captum_classpattern.attr import Pattern, top_k_pattern  # noqa: E402
from captum_classpattern.visualization import (  # noqa: E402
    GRAY_GROUND,
    IMAGE_METHODS,
    RGB_GROUND,
    SIGNS,
    pattern_image,
    plot_anomaly_indices,
    plot_power_curves,
    plot_scan,
    plot_settings_comparison,
    plot_top_activations,
)

SIZE = 12


@pytest.fixture(autouse=True)
def close_figures():
    """Close pyplot figures a test opened, so state never leaks between tests."""
    before = set(plt.get_fignums())
    yield
    for number in set(plt.get_fignums()) - before:
        plt.close(number)


@pytest.fixture
def gray():
    """Three 1 x 12 x 12 canvases and maps in [0, 1] (maps repeated over the channel)."""
    generator = torch.Generator().manual_seed(0)
    canvases = torch.rand(3, 1, SIZE, SIZE, generator=generator)
    maps = torch.rand(3, 1, SIZE, SIZE, generator=generator)
    return canvases, maps


@pytest.fixture
def rgb():
    """Three 3 x 12 x 12 canvases and maps in [0, 1], the map equal on every channel."""
    generator = torch.Generator().manual_seed(1)
    canvases = torch.rand(3, 3, SIZE, SIZE, generator=generator)
    maps = torch.rand(3, 1, SIZE, SIZE, generator=generator).expand(3, 3, SIZE, SIZE).contiguous()
    return canvases, maps


def _drawn(ax):
    images = ax.get_images()
    assert images, "nothing was drawn on the axis"
    return np.asarray(images[-1].get_array())


# ------------------------------------------------------------------ visualize_class_pattern


@pytest.mark.parametrize("method", IMAGE_METHODS)
@pytest.mark.parametrize("layout", ["gray_tensor", "rgb_tensor", "rgb_numpy"])
def test_every_method_renders(method, layout, gray, rgb):
    canvases, maps = gray if layout == "gray_tensor" else rgb
    attr, image = maps[0], canvases[0]
    if layout == "rgb_numpy":
        attr, image = attr.permute(1, 2, 0).numpy(), image.permute(1, 2, 0).numpy()
    fig, ax = visualize_class_pattern(attr, image, method=method, use_pyplot=False, title=method)
    assert isinstance(fig, Figure) and isinstance(ax, Axes)
    assert ax.figure is fig
    assert _drawn(ax).shape[:2] == (SIZE, SIZE)
    assert ax.get_title() == method
    fig.canvas.draw()  # the whole figure renders, not just the artists


def test_heat_map_is_captums_own(rgb):
    canvases, maps = rgb
    hwc = maps[0].permute(1, 2, 0).numpy()
    _, ours = visualize_class_pattern(maps[0], canvases[0], method="blended_heat_map", use_pyplot=False)
    _, theirs = captum_viz.visualize_image_attr(
        hwc, canvases[0].permute(1, 2, 0).numpy(), method="blended_heat_map", sign="positive", use_pyplot=False
    )
    np.testing.assert_allclose(_drawn(ours), _drawn(theirs), rtol=1e-6)  # float64 here, float32 there


def test_grayscale_is_drawn_in_gray(gray):
    canvases, maps = gray
    _, ax = visualize_class_pattern(maps[0], canvases[0], method="original_image", use_pyplot=False)
    drawn = _drawn(ax)
    assert drawn.ndim == 3 and drawn.shape[2] == 3, "a 1-channel image must not go through a colour map"
    assert np.array_equal(drawn[..., 0], drawn[..., 1]) and np.array_equal(drawn[..., 1], drawn[..., 2])


def test_pattern_method_shows_exactly_the_top_k_pixels(gray):
    canvases, maps = gray
    _, ax = visualize_class_pattern(maps[0], canvases[0], method="pattern", k=7, use_pyplot=False)
    drawn = _drawn(ax)
    expected = top_k_pattern(maps[0], canvases[0], 7)
    on_ground = np.all(np.isclose(drawn, GRAY_GROUND), axis=2)
    assert int((~on_ground).sum()) == 7
    mask = expected.mask.numpy()
    np.testing.assert_allclose(drawn[mask][:, 0], canvases[0, 0].numpy()[mask])


def test_pattern_sign_chooses_the_ranking():
    attr = torch.zeros(1, 4, 4)
    attr[0, 0, 0], attr[0, 3, 3] = 1.0, -2.0
    canvas = torch.full((1, 4, 4), 0.25)
    picks = {}
    for sign in ("positive", "negative", "absolute_value"):
        _, ax = visualize_class_pattern(attr, canvas, method="pattern", sign=sign, k=1, use_pyplot=False)
        picks[sign] = tuple(np.argwhere(~np.all(np.isclose(_drawn(ax), GRAY_GROUND), axis=2))[0])
    assert picks == {"positive": (0, 0), "negative": (3, 3), "absolute_value": (3, 3)}


def test_draws_on_a_given_axis_without_pyplot(gray):
    canvases, maps = gray
    before = plt.get_fignums()
    fig = Figure()
    ax = fig.add_subplot(1, 2, 2)
    out_fig, out_ax = visualize_class_pattern(
        maps[0], canvases[0], method="pattern", plt_fig_axis=(fig, ax), use_pyplot=False
    )
    assert out_fig is fig and out_ax is ax
    visualize_class_pattern(maps[0], None, method="heat_map", use_pyplot=False)
    assert plt.get_fignums() == before, "use_pyplot=False must not create pyplot figures"


def test_use_pyplot_works_headless(gray):
    canvases, maps = gray
    fig, _ = visualize_class_pattern(maps[0], canvases[0], method="pattern", use_pyplot=True)
    assert fig.number in plt.get_fignums()


def test_colorbar_keeps_panels_aligned(gray):
    canvases, maps = gray
    heat, _ = visualize_class_pattern(maps[0], canvases[0], method="heat_map", show_colorbar=True, use_pyplot=False)
    pattern, _ = visualize_class_pattern(maps[0], canvases[0], method="pattern", show_colorbar=True, use_pyplot=False)
    assert len(heat.axes) == len(pattern.axes) == 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"method": "heatmap"}, "method must be one of 'heat_map'"),
        ({"method": 3}, "method must be one of"),
        ({"sign": "pos"}, "sign must be one of 'positive', 'absolute_value', 'negative', 'all'"),
        ({"method": "masked_image", "sign": "all"}, "cannot show sign='all'"),
        ({"method": "pattern", "sign": "all"}, "cannot show sign='all'"),
        ({"sign": "negative"}, "no negative values"),
        ({"outlier_perc": 100}, "outlier_perc"),
        ({"alpha_overlay": 2.0}, "alpha_overlay"),
        ({"method": "pattern", "k": 0}, "k must lie"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, message, gray):
    canvases, maps = gray
    with pytest.raises(ValueError, match=message):
        visualize_class_pattern(maps[0], canvases[0], use_pyplot=False, **kwargs)


def test_missing_or_mismatched_image_raises(gray):
    canvases, maps = gray
    with pytest.raises(ValueError, match="needs original_image"):
        visualize_class_pattern(maps[0], None, method="blended_heat_map", use_pyplot=False)
    with pytest.raises(ValueError, match="12 x 12 pixels but original_image is 6 x 6"):
        visualize_class_pattern(maps[0], canvases[0, :, :6, :6], method="pattern", use_pyplot=False)
    with pytest.raises(ValueError, match="pixels in"):
        visualize_class_pattern(maps[0], canvases[0] - 1, method="pattern", use_pyplot=False)


def test_unclear_layouts_raise(gray):
    canvases, maps = gray
    with pytest.raises(ValueError, match="channel-first"):
        visualize_class_pattern(np.zeros((3, SIZE, SIZE)), use_pyplot=False)
    with pytest.raises(TypeError, match="numpy array"):
        visualize_class_pattern(maps[0].tolist(), use_pyplot=False)
    with pytest.raises(ValueError, match="one image at a time"):
        visualize_class_pattern(maps, use_pyplot=False)
    with pytest.raises(ValueError, match="NaN"):
        visualize_class_pattern(torch.full((SIZE, SIZE), float("nan")), use_pyplot=False)


# ------------------------------------------------------------------ pattern_image


def test_pattern_image_grounds(gray, rgb):
    gray_pattern = top_k_pattern(gray[1][0], gray[0][0], 5)
    rgb_pattern = top_k_pattern(rgb[1][0], rgb[0][0], 5)
    assert np.allclose(pattern_image(gray_pattern)[~gray_pattern.mask.numpy()], GRAY_GROUND)
    assert np.allclose(pattern_image(rgb_pattern)[~rgb_pattern.mask.numpy()], RGB_GROUND)
    assert np.allclose(pattern_image(rgb_pattern, ground=(0, 0, 0))[~rgb_pattern.mask.numpy()], 0)
    with pytest.raises(ValueError, match="ground"):
        pattern_image(rgb_pattern, ground=(2, 0, 0))
    with pytest.raises(TypeError, match="Pattern"):
        pattern_image(gray[0][0])


# ------------------------------------------------------------------ grids


def test_class_pattern_grid(gray, tmp_path):
    canvases, maps = gray
    fig, axes = plot_class_patterns(canvases, maps, class_names=["zero", "one", "two"], powers=[0.5, 0.25, 1.0], k=0.1)
    assert isinstance(fig, Figure) and axes.shape == (3, 3)
    assert all(len(ax.get_images()) == 1 for ax in axes.ravel())
    assert axes[0, 1].get_title() == "one\npower 0.25"
    assert [axes[r, 0].get_ylabel().split("\n")[0] for r in range(3)] == ["canvas", "map", "pattern"]
    assert len(fig.axes) == 10, "nine panels and one colour bar"
    canvas_drawn = _drawn(axes[0, 0])
    assert canvas_drawn.ndim == 2 and axes[0, 0].get_images()[0].get_cmap().name == "gray"
    path = tmp_path / "grid.png"
    save_figure_atomic(fig, path, dpi=50)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_grid_uses_given_patterns_and_rgb(rgb):
    canvases, maps = rgb
    patterns = [top_k_pattern(maps[i], canvases[i], 3) for i in range(3)]
    fig, axes = plot_class_patterns(list(canvases), maps, patterns=patterns)
    drawn = _drawn(axes[2, 0])
    assert int((~np.all(np.isclose(drawn, RGB_GROUND), axis=2)).sum()) == 3
    assert axes[0, 2].get_title() == "class 2"
    fig.canvas.draw()


def test_grid_rejects_mismatches(gray):
    canvases, maps = gray
    with pytest.raises(ValueError, match="class_names has 2 entries for 3 classes"):
        plot_class_patterns(canvases, maps, class_names=["a", "b"])
    with pytest.raises(ValueError, match="do not match canvases"):
        plot_class_patterns(canvases, maps[:2])
    with pytest.raises(TypeError, match="tensor"):
        plot_class_patterns(canvases.numpy(), maps)


def test_settings_comparison(gray):
    canvases, maps = gray
    settings = {
        "natural": (canvases, maps),
        "backdoored": (canvases, maps.flip(-1)),
        "adversarial": (canvases, maps, [top_k_pattern(m, c, 4) for m, c in zip(maps, canvases)]),
    }
    fig, axes = plot_settings_comparison(settings, class_names=["a", "b", "c"], powers={"natural": [0.1, 0.2, 0.3]})
    assert axes.shape == (3, 3)
    assert [axes[r, 0].get_ylabel() for r in range(3)] == ["natural", "backdoored", "adversarial"]
    assert axes[0, 2].get_xlabel() == "power 0.30"
    fig, axes = plot_settings_comparison(settings, rows=("canvas", "map", "pattern"))
    assert axes.shape == (9, 3) and len(fig.axes) == 28


def test_settings_comparison_rejects_bad_input(gray):
    canvases, maps = gray
    with pytest.raises(ValueError, match="same number of classes"):
        plot_settings_comparison({"a": (canvases, maps), "b": (canvases[:2], maps[:2])})
    with pytest.raises(ValueError, match="rows must be one of 'canvas', 'map', 'pattern'"):
        plot_settings_comparison({"a": (canvases, maps)}, rows=("maps",))
    with pytest.raises(ValueError, match="non-empty"):
        plot_settings_comparison({})


# ------------------------------------------------------------------ curves and bars


def _curve(powers):
    return PowerCurve([1, 3, 7], [1 / 144, 3 / 144, 7 / 144], list(powers), float(np.mean(powers)))


def test_power_curves():
    curves = {"ClassPattern": [_curve([0.1, 0.4, 0.8]), _curve([0.2, 0.5, 0.6])], "Saliency": _curve([0.0, 0.1, 0.2])}
    fig, ax = plot_power_curves(curves, title="digits", floor=0.05, band="range")
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0].startswith("ClassPattern (mean of 2") and "Saliency (area 0.10)" in labels[1]
    assert len(ax.get_lines()) == 3 and len(ax.collections) == 1, "two curves, a floor and one band"
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), [0.15, 0.45, 0.7])
    with pytest.raises(ValueError, match="different k"):
        plot_power_curves({"x": [_curve([0, 0, 0]), PowerCurve([1], [0.5], [0.1], 0.1)]})
    with pytest.raises(TypeError, match="PowerCurve"):
        plot_power_curves({"x": [0.1, 0.2]})
    with pytest.raises(ValueError, match="band must be one of 'sem', 'range'"):
        plot_power_curves(curves, band="std")
    _, ax = plot_power_curves(curves, band="sem")
    band_y = ax.collections[0].get_paths()[0].vertices[:, 1]
    low, high = band_y.min(), band_y.max()
    assert 0.1 < low < high < 0.8
    _, ax = plot_power_curves(curves)
    assert not ax.collections, "no band unless asked for"


def test_anomaly_indices():
    index = np.array([0.4, 3.1, 1.0, 2.5])
    fig, ax = plot_anomaly_indices(index, class_names=["a", "b", "c", "d"], title="scan")
    colours = [matplotlib.colors.to_hex(p.get_facecolor()) for p in ax.patches]
    assert colours == ["#7f7f7f", "#d62728", "#7f7f7f", "#d62728"]
    _, ax = plot_anomaly_indices(torch.tensor(index), flagged=[1])
    assert [matplotlib.colors.to_hex(p.get_facecolor()) for p in ax.patches].count("#d62728") == 1
    _, ax = plot_anomaly_indices(index, flagged=[False, False, True, False])
    assert matplotlib.colors.to_hex(ax.patches[2].get_facecolor()) == "#d62728"
    with pytest.raises(ValueError, match="class indices"):
        plot_anomaly_indices(index, flagged=[7])
    with pytest.raises(ValueError, match="one per class"):
        plot_anomaly_indices(np.zeros((2, 2)))


def test_public_constants():
    assert IMAGE_METHODS[:5] == tuple(m.name for m in captum_viz.ImageVisualizationMethod)
    assert set(SIGNS) == {s.name for s in captum_viz.VisualizeSign}


# ------------------------------------------------------------------ Captum's vocabulary

FIGURE_FUNCTIONS = [
    visualize_class_pattern,
    plot_class_patterns,
    plot_settings_comparison,
    plot_power_curves,
    plot_anomaly_indices,
    plot_scan,
    plot_top_activations,
]


@pytest.mark.parametrize("function", FIGURE_FUNCTIONS, ids=lambda f: f.__name__)
def test_figure_functions_use_captums_names(function):
    signature = inspect.signature(function)
    assert signature.parameters["use_pyplot"].default is True, "Captum's default"
    assert "fig_size" in signature.parameters and "figsize" not in signature.parameters
    assert signature.return_annotation is not inspect.Signature.empty


def test_fig_size_is_honoured(gray):
    canvases, maps = gray
    fig, _ = plot_class_patterns(canvases, maps, fig_size=(5.0, 4.0), use_pyplot=False)
    assert tuple(fig.get_size_inches()) == pytest.approx((5.0, 4.0))
    fig, _ = plot_settings_comparison({"a": (canvases, maps)}, fig_size=(4.0, 2.0), use_pyplot=False)
    assert tuple(fig.get_size_inches()) == pytest.approx((4.0, 2.0))
    fig, _ = plot_anomaly_indices([0.5, 3.0, 1.0], fig_size=(3.0, 2.0), use_pyplot=False)
    assert tuple(fig.get_size_inches()) == pytest.approx((3.0, 2.0))
    fig, _ = visualize_class_pattern(maps[0], canvases[0], method="pattern", fig_size=(2.0, 2.0), use_pyplot=False)
    assert tuple(fig.get_size_inches()) == pytest.approx((2.0, 2.0))


def test_plots_go_through_pyplot_by_default(gray):
    canvases, maps = gray
    before = set(plt.get_fignums())
    fig, _ = plot_class_patterns(canvases, maps)
    _, ax = plot_power_curves({"x": _curve([0.1, 0.2, 0.3])})
    assert {fig.number, ax.figure.number} <= set(plt.get_fignums()) - before
    fig, ax = plt.subplots()
    assert plot_anomaly_indices([1.0, 3.0], plt_fig_axis=(fig, ax), use_pyplot=False) == (fig, ax)


def _scan_result():
    """A stand-in for backdoor.ScanResult with what plot_scan reads: class 1 flagged, with a trigger."""

    def pattern(k):
        mask = torch.zeros(SIZE, SIZE, dtype=torch.bool)
        mask.view(-1)[:k] = True
        return Pattern(mask, mask[None].float())

    return SimpleNamespace(
        classes=[0, 1, 2],
        patterns=[pattern(5), pattern(2), pattern(6)],
        flagged=[1],
        trigger_maps={1: None},
        recovered_trigger=lambda cls: pattern(3),
        anomaly_index=[0.2, 3.5, 0.4],
        direction="low",
        score="k",
        scoring=SimpleNamespace(threshold=3.0, blend_threshold=3.0),
    )


def test_plot_scan_draws_both_detectors_when_the_blend_probe_ran():
    result = _scan_result()
    result.pattern_flagged, result.blend_flagged, result.flagged = [1], [2], [1, 2]
    result.blend_anomaly_index = [0.1, 0.5, 4.0]
    result.scoring = SimpleNamespace(threshold=2.5, blend_threshold=3.0)
    fig, axes = plot_scan(result, use_pyplot=False)
    bars = axes[-1].patches
    assert len(bars) == 6  # a pattern bar and a blend bar per class
    heights = [round(bar.get_height(), 2) for bar in bars]
    assert heights == [0.2, 3.5, 0.4, 0.1, 0.5, 4.0]
    red = [matplotlib.colors.same_color(bar.get_facecolor(), "tab:red") for bar in bars]
    assert red == [False, True, False, False, False, True]
    # Without a threshold argument the line is drawn at the scan's own threshold.
    assert {"top-k patterns", "blend probe", "blend threshold 3", "threshold 2.5"} <= {
        text.get_text() for text in axes[-1].get_legend().get_texts()
    }


def test_plot_scan():
    fig, axes = plot_scan(_scan_result(), ["a", "b", "c"], fig_size=(7.0, 4.0), use_pyplot=False)
    assert isinstance(fig, Figure) and len(axes) == 4
    assert tuple(fig.get_size_inches()) == pytest.approx((7.0, 4.0))
    assert axes[1].get_title() == "b\ntrigger 3px" and axes[0].get_title() == "a\nk=5"
    drawn = _drawn(axes[0])
    assert int((~np.all(np.isclose(drawn, (0.75, 0.85, 1.0)), axis=2)).sum()) == 5
    fig.canvas.draw()

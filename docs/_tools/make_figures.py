"""Draw the committed figure of the documentation, ``docs/_static/method.png``.

It explains one search step by step. Nothing here runs during the Sphinx build (the
example gallery draws the examples' figures itself, at build time); re-run it when the
method changes (about 15 s)::

    .venv/bin/python -m docs._tools.make_figures
"""

from __future__ import annotations

import argparse
import os

import matplotlib

matplotlib.use("Agg")

import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

DOCS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STATIC = os.path.join(DOCS, "_static")

from captum_classpattern import load_digits  # noqa: E402
from captum_classpattern.attr import ClassPattern, select_canvases, top_k_pattern  # noqa: E402
from captum_classpattern.training import digits_model  # noqa: E402
from captum_classpattern.visualization import pattern_image  # noqa: E402

CLASS = 7


def _gray(ax, image, title):
    ax.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    _label(ax, title)


def _label(ax, title):
    ax.set_title(title, fontsize=11)
    ax.set_xticks([])
    ax.set_yticks([])


def method_figure(path: str) -> None:
    """Canvas, map, other-class image, composite, pattern and stamped image for one class."""
    data = load_digits(size=32)
    model = digits_model()
    classes = list(range(10))
    canvases = select_canvases(model, data.search.images, data.search.labels, classes)
    maps = ClassPattern(model).attribute(
        canvases, target=classes, baselines=data.search.images, baseline_labels=data.search.labels, seed=0
    )
    canvas, one_map = canvases[CLASS], maps[CLASS]
    pattern = top_k_pattern(one_map, canvas, 0.05)
    # An other-class held-out image the stamped pattern flips: the figure shows a success,
    # the method page gives the rates.
    others = data.eval.images[data.eval.labels == 4]
    with torch.no_grad():
        flipped = model(pattern.stamp(others)).argmax(1) == CLASS
    other = others[int(torch.nonzero(flipped)[0])] if bool(flipped.any()) else others[0]
    stamped = pattern.stamp(other)
    composite = one_map * canvas + (1 - one_map) * other
    with torch.no_grad():
        before, after = (int(model(x[None]).argmax(1)) for x in (other, stamped))

    fig = Figure(figsize=(13, 3.0))
    fig.set_layout_engine("constrained")
    axes = fig.subplots(1, 6)
    _gray(axes[0], canvas, f"canvas $x_c$\n(class {CLASS})")
    shown = axes[1].imshow(one_map[0].numpy(), cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    _label(axes[1], "map $m$\n(learned, in [0, 1])")
    fig.colorbar(shown, ax=axes[1], shrink=0.8, pad=0.02, aspect=12)
    _gray(axes[2], other, f"other-class image $x$\n(predicted {before})")
    _gray(axes[3], composite, "composite seen in the search\n$m\\,x_c + (1-m)\\,x$")
    axes[4].imshow(pattern_image(pattern), interpolation="nearest")
    _label(axes[4], f"pattern\n(top {pattern.k} pixels, 5%)")
    _gray(axes[5], stamped, f"$x$ stamped with the pattern\n(predicted {after})")
    fig.savefig(path, dpi=100)
    print(f"wrote {path} ({os.path.getsize(path) // 1024} KB)")


def main(argv=None) -> int:
    """Draw the method figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    torch.set_num_threads(1)
    method_figure(os.path.join(STATIC, "method.png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

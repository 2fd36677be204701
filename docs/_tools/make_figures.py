"""Draw the committed figures of the documentation into ``docs/_static/``.

``method.png`` explains one search step by step; the ``examples/*.png`` files are the
figures of the two plotting examples, run in full. Nothing here runs during the Sphinx
build (it would make every build train and search); re-run it when the method or the
examples change::

    .venv/bin/python docs/_tools/make_figures.py            # all figures (~2 min)
    .venv/bin/python docs/_tools/make_figures.py --method   # method.png only (~15 s)
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import tempfile

import matplotlib

matplotlib.use("Agg")

import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DOCS = os.path.dirname(HERE)
ROOT = os.path.dirname(DOCS)
STATIC = os.path.join(DOCS, "_static")
sys.path.insert(0, ROOT)

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


def _run_example(name: str, out: str) -> None:
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "examples", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--out", out])


def example_figures() -> None:
    """Run the two plotting examples in full and copy their figures into ``_static/examples``."""
    target = os.path.join(STATIC, "examples")
    os.makedirs(target, exist_ok=True)
    for name in ("natural_patterns", "captum_baselines"):
        with tempfile.TemporaryDirectory() as out:
            _run_example(name, out)
            for file in sorted(os.listdir(out)):
                if file.endswith(".png"):
                    path = os.path.join(target, f"{name}_{file}")
                    shutil.copyfile(os.path.join(out, file), path)
                    print(f"wrote {path} ({os.path.getsize(path) // 1024} KB)")


def main(argv=None) -> int:
    """Draw the method figure and, unless ``--method``, the example figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", action="store_true", help="only draw method.png")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    method_figure(os.path.join(STATIC, "method.png"))
    if not args.method:
        example_figures()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

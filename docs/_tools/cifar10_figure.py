"""Draw ``docs/_static/cifar10_patterns.png``: the ten CIFAR-10 classes' patterns in the paper's settings.

One row per setting of the PreAct-ResNet-18 (natural, patch- and blend-backdoored to
airplane, adversarially trained), one column per class: each class's 5% pattern on a white
ground with its predictive power under it. The patterns are those
``benchmarks/bench_cifar10.py`` kept in the CIFAR-10 cache, so train and measure first::

    python -m benchmarks.cifar10_models --models preact18            # hours on a CPU, resumable
    python -m benchmarks.bench_cifar10 --models preact18
    .venv/bin/python -m docs._tools.cifar10_figure                   # seconds

Nothing here runs during the Sphinx build.
"""

from __future__ import annotations

import argparse
import os
import sys

import matplotlib

matplotlib.use("Agg")

import torch  # noqa: E402

from benchmarks import cifar10_models as zoo  # noqa: E402
from captum_classpattern import Pattern  # noqa: E402
from captum_classpattern.data import CIFAR10_CLASSES  # noqa: E402
from captum_classpattern.visualization import RGB_GROUND, plot_settings_comparison  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ROWS = {"natural": "natural", "patch": "patch backdoor", "blend": "blend backdoor", "adversarial": "adversarial"}


def load_setting(path: str) -> tuple:
    """``((canvases, maps, patterns), powers)`` from a file bench_cifar10.py kept."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    canvases, masks = state["canvases"], state["masks"]
    patterns = [Pattern(mask, canvas * mask) for canvas, mask in zip(canvases, masks)]
    return (canvases, state["maps"].expand_as(canvases), patterns), state["powers"].tolist()


def main() -> int:
    """Draw the figure from the settings that have been measured; say which are missing."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="preact18", choices=list(zoo.ARCHITECTURES))
    parser.add_argument("--cache", help="the CIFAR-10 cache (default: that of cifar10_models.py)")
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "_static", "cifar10_patterns.png"))
    args = parser.parse_args()
    folder = os.path.join(zoo.cache_folder(args.cache), "patterns")
    settings, powers, missing = {}, {}, []
    for setting, label in ROWS.items():
        path = os.path.join(folder, f"{args.arch}-{setting}.pt")
        if not os.path.exists(path):
            missing.append(setting)
            continue
        settings[label], powers[label] = load_setting(path)
    if not settings:
        print(f"no patterns in {folder}: run python -m benchmarks.bench_cifar10 first", file=sys.stderr)
        return 1
    fig, _ = plot_settings_comparison(
        settings, class_names=CIFAR10_CLASSES, powers=powers, use_pyplot=False, ground=RGB_GROUND
    )
    temporary = args.out + ".tmp.png"
    fig.savefig(temporary, dpi=80)
    os.replace(temporary, args.out)  # no half-written figure if the run is killed
    print(f"wrote {args.out}" + (f"; missing settings: {', '.join(missing)}" if missing else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

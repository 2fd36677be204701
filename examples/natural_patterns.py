"""Class patterns of a naturally trained digits CNN: one per digit, and how often they flip.

For each of the ten digit classes the script takes the search-split image the model is
most confident about as the canvas, learns a ClassPattern map on the other classes'
search images, keeps the top 5% of pixels as the class pattern, and stamps it on the
held-out images of the other classes. It prints, per class, the pattern's predictive
power beside the two numbers it must be read against: the floor (how many unstamped
images the model already calls that class) and chance (as many random canvas pixels).

Run::

    python examples/natural_patterns.py            # the paper's search schedule (~30 s)
    python examples/natural_patterns.py --quick    # the package's default schedule (~15 s)

Writes ``patterns.png`` (canvas, map and pattern of every class) and ``results.json``
to ``--out`` (default ``examples_output/natural_patterns``).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from captum_classpattern import (
    floor_rate,
    load_digits,
    plot_class_patterns,
    predictive_power,
    random_pixel_power,
)
from captum_classpattern.attr import ClassPattern, select_canvases, top_k_pattern
from captum_classpattern.data import DIGIT_CLASSES
from captum_classpattern.training import accuracy, digits_model

K = 0.05  # 5% of the pixels, the paper's budget (50 of 1024 on CIFAR-10)


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options: ``--quick`` and ``--out DIR``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter search and fewer random draws (< 60 s)")
    parser.add_argument(
        "--out",
        default=os.path.join("examples_output", "natural_patterns"),
        help="folder for the figure and results.json",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the search order and the random pixels")
    return parser.parse_args(argv)


def measure(model, data, canvases, maps, seed: int, trials: int):
    """Predictive power, floor and chance of each class's top-5% pattern on the held-out split."""
    rows = []
    for cls in range(len(DIGIT_CLASSES)):
        pattern = top_k_pattern(maps[cls], canvases[cls], K)
        images, labels = data.eval.images, data.eval.labels
        rows.append(
            {
                "class": DIGIT_CLASSES[cls],
                "k": pattern.k,
                "power": predictive_power(model, pattern, images, labels, cls),
                "floor": floor_rate(model, images, labels, cls),
                "random": random_pixel_power(model, canvases[cls], images, labels, cls, K, trials=trials, seed=seed),
                "pattern": pattern,
            }
        )
    return rows


def print_table(rows) -> None:
    """The per-class table and the mean row."""
    print(f"{'class':>5} {'k':>4} {'power':>7} {'floor':>7} {'random':>7}")
    for row in rows:
        print(f"{row['class']:>5} {row['k']:>4} {row['power']:7.3f} {row['floor']:7.3f} {row['random']:7.3f}")
    mean = {key: sum(r[key] for r in rows) / len(rows) for key in ("power", "floor", "random")}
    print(f"{'mean':>5} {'':>4} {mean['power']:7.3f} {mean['floor']:7.3f} {mean['random']:7.3f}")


def main(argv=None) -> int:
    """Search, measure, print and draw the patterns of all ten digits."""
    torch.set_num_threads(1)  # small models: one thread is as fast and shares the machine
    args = parse_args(argv)
    start = time.perf_counter()
    data = load_digits(size=32)
    model = digits_model()
    print(f"digits CNN: held-out accuracy {accuracy(model, data.eval.images, data.eval.labels):.3f}")

    classes = list(range(len(DIGIT_CLASSES)))
    canvases = select_canvases(model, data.search.images, data.search.labels, classes, strategy="confident")
    schedule = "default" if args.quick else "paper"
    explainer = ClassPattern(model)
    maps = explainer.attribute(
        canvases,
        target=classes,
        baselines=data.search.images,
        baseline_labels=data.search.labels,
        schedule=schedule,
        seed=args.seed,
    )
    stats = explainer.last_stats
    print(
        f"search ({schedule} schedule): {stats.steps} steps, {stats.images_forwarded} composites, "
        f"{stats.seconds:.1f} s for all ten classes together"
    )

    rows = measure(model, data, canvases, maps, args.seed, trials=2 if args.quick else 5)
    print(f"\npredictive power of the top-{K:.0%} pattern on held-out images of the other classes")
    print_table(rows)

    os.makedirs(args.out, exist_ok=True)
    fig, _ = plot_class_patterns(
        canvases,
        maps,
        patterns=[r["pattern"] for r in rows],
        class_names=DIGIT_CLASSES,
        powers=[r["power"] for r in rows],
        use_pyplot=False,
    )
    figure_path = os.path.join(args.out, "patterns.png")
    fig.savefig(figure_path, dpi=110)
    with open(os.path.join(args.out, "results.json"), "w") as stream:
        json.dump(
            {
                "schedule": schedule,
                "seed": args.seed,
                "k_fraction": K,
                "classes": [{key: value for key, value in r.items() if key != "pattern"} for r in rows],
            },
            stream,
            indent=2,
        )
    print(f"\nwrote {figure_path} and results.json in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

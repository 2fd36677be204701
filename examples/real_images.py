"""
Class patterns on real images: CIFAR-10 when you have it
========================================================

The same search the other examples run on the digits, on photographs. Without data of
your own the script trains a small CNN on the embedded photo digits (colour digits over
crops of real photographs, nothing downloaded); given a CIFAR-10 copy
(``--cifar10 PATH``, or ``$CLASSPATTERN_CIFAR10`` without ``--quick``: torchvision's ``cifar-10-batches-py``, or
``train/`` and ``test/`` class folders) it uses CIFAR-10, and the PreAct-ResNet-18 of
``benchmarks/cifar10_models.py`` if that has been trained, or else trains a small pooled
CNN for ``--epochs`` epochs with :func:`~captum_classpattern.training.train_with_recipe`
(a few CPU-minutes per epoch; the run resumes from its last finished epoch).

For each class, a canvas (the class's most confidently classified search image) and a
5% pattern searched at the authors' search-set size (a fifth of the class's test
images), measured on held-out test images against the top-5% pixels of Saliency.

Run::

    python examples/real_images.py --quick                         # photo digits (~30 s)
    python examples/real_images.py --cifar10 ~/.cache/cifar10      # CIFAR-10

It writes ``patterns.png`` and ``results.json`` to ``--out`` (default
``examples_output/real_images``).
"""

import argparse
import json
import os
import sys
import time

import torch

from captum_classpattern import plot_class_patterns
from captum_classpattern.data import CIFAR10_CLASSES, DIGIT_CLASSES, Split, load_cifar10, load_photo_digits
from captum_classpattern.models import PreActResNet18, SmallCNN
from captum_classpattern.pipeline import search_classes
from captum_classpattern.training import TrainingRecipe, accuracy, default_cache_dir, train_with_recipe

K = 0.05


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options; in a notebook the defaults apply unless ``argv`` is given."""
    parser = argparse.ArgumentParser(description="Class patterns on photo digits or CIFAR-10.")
    parser.add_argument("--cifar10", help="a CIFAR-10 copy (default: $CLASSPATTERN_CIFAR10, except with --quick)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the CNN trained when no model is cached")
    parser.add_argument("--quick", action="store_true", help="four classes, the fast schedule")
    parser.add_argument("--out", default=os.path.join("examples_output", "real_images"))
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    if argv is None and "ipykernel" in sys.modules:
        argv = []
    args = parser.parse_args(argv)
    if args.cifar10 is None and not args.quick:  # quick runs (tests, the docs build) stay on the embedded data
        args.cifar10 = os.environ.get("CLASSPATTERN_CIFAR10")
    return args


args = parse_args()
PROGRESS = not args.no_progress and sys.stderr.isatty()
start = time.perf_counter()

# %%
# The data and the model
# ----------------------
#
# CIFAR-10's test set is split per class into a search fifth (200 images a class, the
# authors' search-set size) and held-out images the patterns are measured on.


def split_per_class(split: Split, search_share: float) -> tuple:
    """``(search, held_out)``: the first ``search_share`` of each class's images, and the rest."""
    first, rest = [], []
    for cls in split.labels.unique():
        where = torch.nonzero(split.labels == cls).flatten()
        cut = int(round(search_share * where.numel()))
        first.append(where[:cut])
        rest.append(where[cut:])
    pick = [torch.cat(parts).sort().values for parts in (first, rest)]
    return tuple(Split(split.images[index], split.labels[index]) for index in pick)


def cifar10_model(root: str, epochs: int) -> torch.nn.Module:
    """The benchmarks' PreAct-ResNet-18 if cached, else a pooled CNN trained here (resumable)."""
    cache = os.path.join(default_cache_dir(), "cifar10")
    zoo_weights = os.path.join(cache, "preact18-natural-s0.pt")
    if os.path.exists(zoo_weights):
        model = PreActResNet18(width=16)
        model.load_state_dict(torch.load(zoo_weights, map_location="cpu", weights_only=True))
        print(f"using {zoo_weights}")
        return model.eval()
    os.makedirs(cache, exist_ok=True)
    train = load_cifar10(root, train=True)
    torch.manual_seed(0)
    model = SmallCNN(in_channels=3, num_classes=10, width=32)
    checkpoint = os.path.join(cache, f"example-gap-{epochs}ep.partial.pt")
    run = train_with_recipe(
        model,
        train.images,
        train.labels,
        TrainingRecipe(epochs=epochs),
        checkpoint=checkpoint,
        show_progress=PROGRESS,
        description="CIFAR-10 CNN",
    )
    print(f"trained a pooled CNN for {epochs} epochs in {run.minutes:.1f} minutes")
    return run.model


if args.cifar10:
    names = CIFAR10_CLASSES
    search, held_out = split_per_class(load_cifar10(args.cifar10), 0.2)
    model = cifar10_model(args.cifar10, args.epochs)
else:
    names = DIGIT_CLASSES
    data = load_photo_digits()
    search, held_out = data.search, data.eval
    torch.manual_seed(0)
    # Digits are not mirror-symmetric and fill the frame: no flips, no crops.
    recipe = TrainingRecipe(epochs=6 if args.quick else 12, batch_size=64, peak_lr=0.1, flip=False, crop_padding=0)
    model = train_with_recipe(SmallCNN(3, 10, 16), data.train.images, data.train.labels, recipe).model
print(f"held-out accuracy {accuracy(model, held_out.images, held_out.labels):.3f}")

# %%
# Search and measure
# ------------------
#
# :func:`~captum_classpattern.pipeline.search_classes` searches every class's map in one
# batched loop and measures each pattern, its floor, random canvas pixels and Saliency's
# top-k pixels on the held-out images.

classes = list(range(4 if args.quick else 10))
outcome = search_classes(
    model,
    search,
    held_out,
    classes,
    k=K,
    class_names=names,
    baselines=("Saliency",),
    schedule="fast" if args.quick else "default",
    show_progress=PROGRESS,
)
print(f"{'class':>10} {'power':>7} {'floor':>7} {'random':>7} {'Saliency':>9}")
for row in outcome.report.classes:
    print(
        f"{row.name:>10} {row.predictive_power:7.3f} {row.floor:7.3f} {row.random:7.3f} "
        f"{row.baselines['Saliency']:9.3f}"
    )

# %%
# Draw the patterns
# -----------------

os.makedirs(args.out, exist_ok=True)
rows = outcome.report.classes
fig, _ = plot_class_patterns(
    outcome.canvases,
    outcome.maps,
    patterns=outcome.patterns,
    class_names=[names[c] for c in classes],
    powers=[row.predictive_power for row in rows],
    use_pyplot=False,
)
figure_path = os.path.join(args.out, "patterns.png")
fig.savefig(figure_path, dpi=110)
with open(os.path.join(args.out, "results.json"), "w") as stream:
    json.dump({"data": "cifar10" if args.cifar10 else "photo digits", "rows": [r.to_dict() for r in rows]}, stream)
print(f"wrote {figure_path} and results.json in {time.perf_counter() - start:.1f} s")

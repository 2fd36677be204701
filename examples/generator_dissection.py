"""
Dissecting a generator
======================

GAN dissection in the style of Bau et al. (2020), on a small generator of concept images:
which units of a generator layer draw which concept, and are they *causal*: does switching
them off remove the concept, and switching them on in a region add it there? The story:

1. the generator is the decoder of a small autoencoder trained on
   :class:`~captum_classpattern.dissection.ConceptDataset` images (coloured shapes on
   textured ground); latent codes are encoded fresh images, perturbed;
2. a segmenter that knows the concepts (colours from the palette, the shape from a small
   classifier) labels the generated pixels, and
   :func:`~captum_classpattern.dissection.dissect_generator` matches each unit of the
   decoder's 8 x 8 layer against them (IoU);
3. :func:`~captum_classpattern.dissection.ablation_effect`: switching off a concept's top
   10 units against 10 random units;
4. :func:`~captum_classpattern.dissection.insertion_effect`: switching a colour's units on
   in a square, split by whether the square lies on the object or on the ground;
5. :func:`~captum_classpattern.dissection.edit_with_units`: editing *real* images through
   the same units (encode, switch units, decode).

Run::

    python examples/generator_dissection.py --quick --out out/generator   # < 1 minute
    python examples/generator_dissection.py --out out/generator           # a few minutes

Figures and ``summary.json`` are written to ``--out`` (default
``out/generator_dissection``). This page shows a ``--quick`` run (a smaller autoencoder
trained for seconds); the numbers of the full generator are in :doc:`../dissection/generator`.
"""

import argparse
import json
import os
import sys
import time

import torch
from matplotlib.figure import Figure

from captum_classpattern.dissection import (
    CausalSettings,
    ConceptDataset,
    ablation_effect,
    dissect_generator,
    edit_with_units,
    insertion_effect,
    intervene,
)
from captum_classpattern.training import concept_autoencoder, concept_latents, concept_segmenter
from captum_classpattern.visualization import plot_generated_edits

LAYER = "relu1"
SETTINGS = {
    "quick": dict(width=32, train=1500, epochs=6, shape_images=1000, shape_epochs=3, latents=120, draws=2),
    "full": dict(width=64, train=2500, epochs=8, shape_images=2000, shape_epochs=6, latents=300, draws=3),
}


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options: ``--quick``, ``--out DIR``, ``--threads`` and ``--no-progress``.

    In a notebook, where ``sys.argv`` holds the kernel's own options, the defaults apply
    unless ``argv`` is given (``parse_args(["--quick"])``).
    """
    parser = argparse.ArgumentParser(description="Dissect a small generator and switch its units off and on.")
    parser.add_argument("--quick", action="store_true", help="a smaller generator trained for seconds (< 1 minute)")
    parser.add_argument("--out", default="out/generator_dissection", help="folder for figures and summary.json")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars (shown on a terminal only)")
    if argv is None and "ipykernel" in sys.modules:
        argv = []
    return parser.parse_args(argv)


def log(started, message: str) -> None:
    """Print with the wall and CPU seconds since ``started`` (wall, CPU); the CPU is often shared."""
    wall, cpu = time.perf_counter() - started[0], time.process_time() - started[1]
    print(f"[{wall:5.1f}s, {cpu:5.1f}s cpu] {message}", flush=True)


def save(fig: Figure, out: str, name: str) -> str:
    """Save ``fig`` as ``out/name`` and return the path."""
    path = os.path.join(out, name)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


args = parse_args()
PROGRESS = not args.no_progress and sys.stderr.isatty()  # no bars in logs, notebooks or the docs build
torch.set_num_threads(args.threads)
settings = SETTINGS["quick" if args.quick else "full"]
os.makedirs(args.out, exist_ok=True)
started = (time.perf_counter(), time.process_time())
summary: dict = {"mode": "quick" if args.quick else "full", "layer": LAYER}

# %%
# 1. Generator and segmenter
# --------------------------
#
# Both are trained once and cached by their settings (``$CLASSPATTERN_CACHE``). The
# generator is ``autoencoder.decoder``: it maps an 8 x 8 latent code to a 32 x 32 image.

autoencoder = concept_autoencoder(
    width=settings["width"], images=settings["train"], epochs=settings["epochs"], show_progress=PROGRESS
)
segmenter = concept_segmenter(images=settings["shape_images"], epochs=settings["shape_epochs"], show_progress=PROGRESS)
generator = autoencoder.decoder
latents = concept_latents(autoencoder, settings["latents"], seed=0)
with torch.inference_mode():
    generated = generator(latents)
log(started, f"generator and segmenter ready; {len(latents)} latent codes")

# %%
# 2. Dissection of the decoder's 8 x 8 layer
# ------------------------------------------
#
# Each unit is thresholded at the top 1% of its activations over all generated images and
# matched against the segmented concepts.

result = dissect_generator(generator, LAYER, latents, segmenter, quantile=0.01, show_progress=PROGRESS)
result.to_json(os.path.join(args.out, "dissection.json"))
summary["detectors"] = result.detectors()
log(started, f"dissection: {int(result.is_detector.sum())} of {result.num_units} units are detectors")
for line in result.table(detectors_only=True, sort_by="iou").splitlines()[:9]:
    print("    " + line)

# %%
# 3. Switching units off
# ----------------------
#
# For each concept present in the generated images: its share of the pixels, and the share
# of it that is removed when its top 10 units are set to zero, against 10 random units.

causal = CausalSettings(units=10, random_draws=settings["draws"], boost=3.0)
ablation = ablation_effect(generator, LAYER, latents, segmenter, result, settings=causal)
ablation.to_json(os.path.join(args.out, "ablation.json"))
summary["ablation"] = ablation.summary()
for concept, before, top, rand in zip(
    ablation.concepts, ablation.area_before, ablation.removed_top, ablation.removed_random
):
    print(f"    {concept:<9} area {before:.3f}: top 10 units remove {top:.2f} of it, 10 random units {rand:.2f}")
red_units = result.units_for("red", detectors_only=False)[:10]
with torch.inference_mode(), intervene(generator, LAYER, red_units, scale=0.0):
    without_red = generator(latents)
fig, _ = plot_generated_edits(
    generated, without_red, num_images=8, row_labels=("generated", "red off"), use_pyplot=False
)
save(fig, args.out, "red_units_off.png")

# %%
# 4. Switching units on in a region
# ---------------------------------
#
# The top 10 units of each colour are set to three times their dissection threshold in a
# central square. Whether the square lay on the object or on the ground is the context.

square = torch.zeros(32, 32, dtype=torch.bool)
square[10:22, 10:22] = True
summary["insertion"] = {}
for colour in ("red", "green", "blue", "yellow"):
    effect = insertion_effect(generator, LAYER, latents, segmenter, result, colour, square, causal)
    summary["insertion"][colour] = effect.summary()
    stats = effect.summary()
    print(
        f"    {colour:<7} share of the square before -> after: on the object {stats['object']['share_before']:.2f} -> "
        f"{stats['object']['share_after']:.2f}, on the ground {stats['ground']['share_before']:.2f} -> "
        f"{stats['ground']['share_after']:.2f}"
    )
values = torch.tensor([causal.boost * float(result.thresholds[u]) for u in red_units])
with torch.inference_mode(), intervene(generator, LAYER, red_units, value=values, mask=square):
    with_red = generator(latents)
fig, _ = plot_generated_edits(
    generated, with_red, square, num_images=8, row_labels=("generated", "red on"), use_pyplot=False
)
save(fig, args.out, "red_units_on_in_square.png")

# %%
# 5. Editing real images
# ----------------------
#
# Real concept images are encoded, the blue units switched on in the square, and decoded.

real = ConceptDataset(8, seed=4000).tensors()[0]
blue_units = result.units_for("blue", detectors_only=False)[:10]
blue_values = torch.tensor([causal.boost * float(result.thresholds[u]) for u in blue_units])
edit = edit_with_units(
    autoencoder.encoder, generator, LAYER, real, blue_units, square, segmenter, "blue", value=blue_values
)
summary["editing"] = {"share_before": float(edit.share_before.mean()), "share_after": float(edit.share_after.mean())}
log(
    started,
    f"editing real images: blue's share of the square {edit.share_before.mean():.2f} -> {edit.share_after.mean():.2f}",
)
fig, _ = plot_generated_edits(real, edit.edited, square, num_images=8, row_labels=("real", "blue on"), use_pyplot=False)
save(fig, args.out, "real_images_blue_on.png")

# %%
# Save the summary
# ----------------

summary["seconds"] = time.perf_counter() - started[0]
with open(os.path.join(args.out, "summary.json"), "w", encoding="utf-8") as stream:
    json.dump(summary, stream, indent=1, default=float)
log(started, f"figures and summary.json in {args.out}")

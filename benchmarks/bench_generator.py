"""Causal effects of the units of a trained concept generator: ablation against random units, insertion by context.

The generator is the decoder of :func:`~captum_classpattern.training.concept_autoencoder`
(cached after its first training); latent codes are encoded fresh concept images, perturbed
(:func:`~captum_classpattern.training.concept_latents`); the segmenter reads colours from the
palette and shapes with a small classifier
(:func:`~captum_classpattern.training.concept_segmenter`). For each generator seed:

1. the segmenter's pixel IoU per concept on real concept images and on the autoencoder's
   reconstructions of them;
2. :func:`~captum_classpattern.dissection.dissect_generator` of one decoder layer;
3. :func:`~captum_classpattern.dissection.ablation_effect`: the share of each concept's area
   removed by switching off its top ``--units`` units, against as many random units
   (``--draws`` random sets per concept), averaged over the concepts that cover at least
   ``--min-area`` of the generated pixels (the ratios of rarer concepts are noise);
4. :func:`~captum_classpattern.dissection.insertion_effect` for every colour in a central
   square: the colour's share of the square before and after, split by whether the square
   lay on the object or on the ground;
5. :func:`~captum_classpattern.dissection.edit_with_units` on real images: each colour's
   units switched on in the same square, and the object's own colour units switched off
   over the whole image.

Usage::

    python -m benchmarks.bench_generator [--quick] [--seeds 0,1] [--latents 400] [--layer relu1]

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Optional, Sequence

import numpy as np
import torch

from benchmarks._harness import add_quick_option, add_threads_option, emit_json, set_threads
from captum_classpattern.dissection import (
    CausalSettings,
    ConceptDataset,
    ablation_effect,
    dissect_generator,
    edit_with_units,
    insertion_effect,
    segmentation_iou,
)
from captum_classpattern.training import concept_autoencoder, concept_latents, concept_segmenter

COLOURS = ("red", "green", "blue", "yellow")


def _rounded(values: dict) -> dict:
    return {key: round(float(value), 4) for key, value in values.items()}


def _square(side: int = 32, low: int = 10, high: int = 22) -> torch.Tensor:
    region = torch.zeros(side, side, dtype=torch.bool)
    region[low:high, low:high] = True
    return region


def _edits(autoencoder, segmenter, result, settings: CausalSettings, count: int) -> dict:
    """Switch colour units on in the square of real images, and each image's own colour off everywhere."""
    data = ConceptDataset(count, 32, seed=4000)
    images = data.tensors()[0]
    region = _square()
    added = {}
    for colour in COLOURS:
        units = result.units_for(colour, detectors_only=False)[: settings.units]
        values = torch.tensor([settings.boost * float(result.thresholds[u]) for u in units])
        edit = edit_with_units(
            autoencoder.encoder,
            autoencoder.decoder,
            result.layer,
            images,
            units,
            region,
            segmenter,
            colour,
            value=values,
        )
        added[colour] = _rounded({"share_before": edit.share_before.mean(), "share_after": edit.share_after.mean()})
    removed = {}
    everywhere = torch.ones(32, 32, dtype=torch.bool)
    for colour in COLOURS:
        own = torch.tensor([data.attributes(i)["color"] == colour for i in range(count)])
        if not own.any():
            continue
        units = result.units_for(colour, detectors_only=False)[: settings.units]
        edit = edit_with_units(
            autoencoder.encoder,
            autoencoder.decoder,
            result.layer,
            images[own],
            units,
            everywhere,
            segmenter,
            colour,
            scale=0.0,
        )
        removed[colour] = {
            "share_before": float(edit.share_before.mean()),
            "share_after": float(edit.share_after.mean()),
        }
    return {"switched_on_in_square": added, "own_colour_switched_off": removed}


def run_seed(seed: int, args: argparse.Namespace, segmenter) -> dict:
    """All measurements for the generator trained with ``seed``."""
    started = time.time()
    autoencoder = concept_autoencoder(seed=seed, show_progress=args.progress)
    trained = time.time() - started
    real = ConceptDataset(args.real, 32, seed=7)
    images, masks = real.tensors()[:2]
    with torch.no_grad():
        reconstructed = autoencoder(images)
    latents = concept_latents(autoencoder, args.latents, seed=seed)
    result = dissect_generator(autoencoder.decoder, args.layer, latents, segmenter, quantile=args.quantile)
    settings = CausalSettings(units=args.units, random_draws=args.draws, seed=seed, boost=args.boost)
    ablation = ablation_effect(autoencoder.decoder, args.layer, latents, segmenter, result, settings=settings)
    common = ablation.area_before >= args.min_area  # ratios of rarer concepts are noise
    colours = np.array([concept in COLOURS for concept in ablation.concepts])
    insertion = {}
    for colour in COLOURS:
        effect = insertion_effect(
            autoencoder.decoder, args.layer, latents, segmenter, result, colour, _square(), settings
        )
        insertion[colour] = {context: _rounded(stats) for context, stats in effect.summary().items()}
    contexts = ("object", "ground")
    mean_insertion = {
        context: _rounded(
            {key: np.nanmean([insertion[c][context][key] for c in COLOURS]) for key in insertion["red"][context]}
        )
        for context in ("all", *contexts)
    }
    return {
        "seed": seed,
        "train_or_load_seconds": round(trained, 1),
        "reconstruction_mse": round(float(((reconstructed - images) ** 2).mean()), 5),
        "segmenter_iou_reconstructed": _rounded(segmentation_iou(segmenter, (reconstructed, masks))),
        "detectors": result.detectors(),
        "ablation_summary": _rounded(
            {
                "removed_top": ablation.removed_top[common].mean(),
                "removed_random": ablation.removed_random[common].mean(),
                "concepts": int(common.sum()),
            }
        ),
        "ablation_summary_all_concepts": _rounded(ablation.summary()),
        "ablation_summary_colours": _rounded(
            {
                "removed_top": ablation.removed_top[colours].mean(),
                "removed_random": ablation.removed_random[colours].mean(),
            }
        ),
        "ablation": {
            concept: {
                "area_before": round(float(before), 4),
                "removed_top": round(float(top), 4),
                "removed_random": round(float(rand), 4),
            }
            for concept, before, top, rand in zip(
                ablation.concepts, ablation.area_before, ablation.removed_top, ablation.removed_random
            )
        },
        "insertion": insertion,
        "insertion_mean_over_colours": mean_insertion,
        "editing": _edits(autoencoder, segmenter, result, settings, args.real if args.quick else 2 * args.real),
        "seconds": round(time.time() - started, 1),
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Measure every generator seed; print one line per seed and, last, one JSON line. Returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_quick_option(parser, "fewer latents, draws and real images; one seed")
    parser.add_argument("--seeds", default="0,1", help="comma-separated generator seeds")
    parser.add_argument("--latents", type=int, default=300, help="generated images per measurement")
    parser.add_argument("--layer", default="relu1", help="decoder layer to dissect and intervene on")
    parser.add_argument("--units", type=int, default=10)
    parser.add_argument("--draws", type=int, default=3, help="random unit sets per concept")
    parser.add_argument("--boost", type=float, default=3.0, help="switched-on value, in dissection thresholds")
    parser.add_argument("--quantile", type=float, default=0.01)
    parser.add_argument("--min-area", type=float, default=0.01, help="concepts in the ablation mean: area >= this")
    parser.add_argument("--real", type=int, default=100, help="real images for the segmenter and editing")
    add_threads_option(parser, 1)
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.latents, args.draws, args.real = "0", min(args.latents, 120), min(args.draws, 3), 40
    set_threads(args)
    started = time.time()
    segmenter = concept_segmenter(show_progress=args.progress)
    real = ConceptDataset(args.real, 32, seed=7)
    runs = [run_seed(int(seed), args, segmenter) for seed in args.seeds.split(",")]
    for run in runs:
        print(
            f"seed {run['seed']}: top {args.units} units remove {run['ablation_summary']['removed_top']:.3f} of a "
            f"concept's area, {args.units} random units {run['ablation_summary']['removed_random']:.3f}; insertion "
            f"(mean over colours) {json.dumps(run['insertion_mean_over_colours'])}"
        )
    summary = {
        f"{key}_{part}": round(float(np.mean([r[f"ablation_summary{suffix}"][f"removed_{part}"] for r in runs])), 4)
        for key, suffix in (("removed", ""), ("colours_removed", "_colours"))
        for part in ("top", "random")
    }
    emit_json(
        {
            "settings": {k: v for k, v in vars(args).items() if k != "progress"},
            "segmenter_iou_real": _rounded(segmentation_iou(segmenter, real)),
            "summary": summary,
            "runs": runs,
            "seconds": round(time.time() - started, 1),
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Measuring the patterns of a search: their power, the floor, random pixels and the Captum baselines."""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from .._utils import phase, tuned_threads
from ..attr import Pattern, random_pattern, top_k_pattern
from ..data import Split
from ..metrics import (
    CaptumBaseline,
    captum_attribution,
    floor_rate,
    predictive_power,
    random_pixel_power,
    wilson_interval,
)
from ._budget import PowerSample, measure_patterns, rates
from ._report import ClassReport

RANDOM_TRIALS = 5
"""Random-pixel patterns per class for the chance level, as :func:`~captum_classpattern.metrics.random_pixel_power`."""


def measure_on_split(
    model: Callable,
    held_out: Split,
    classes: Sequence[int],
    canvases: Tensor,
    patterns: Sequence[Pattern],
    count: int,
    baselines: Sequence[CaptumBaseline],
    names: Sequence[Optional[str]],
    seed: int,
    show_progress: bool,
) -> List[ClassReport]:
    """The report rows of ``classes``, each class measured on every held-out image of the other classes."""
    eval_images, eval_labels = held_out.images, held_out.labels
    rows = []
    for i, cls in enumerate(tqdm(classes, desc="measuring patterns", disable=not show_progress)):
        with phase("measurement"):
            power = predictive_power(model, patterns[i], eval_images, eval_labels, cls)
            floor = floor_rate(model, eval_images, eval_labels, cls)
        with phase("baselines"):
            chance = random_pixel_power(model, canvases[i], eval_images, eval_labels, cls, count, seed=seed)
            measured = {
                baseline.name: predictive_power(
                    model,
                    top_k_pattern(class_attribution(model, baseline, canvases[i], cls, seed), canvases[i], count),
                    eval_images,
                    eval_labels,
                    cls,
                )
                for baseline in baselines
            }
        rows.append(
            ClassReport(
                class_=cls,
                k=count,
                predictive_power=power,
                floor=floor,
                random=chance,
                baselines=measured,
                name=names[i],
            )
        )
    return rows


def measure_on_sample(
    model: Callable,
    sample: PowerSample,
    classes: Sequence[int],
    canvases: Tensor,
    patterns: Sequence[Pattern],
    count: int,
    baselines: Sequence[CaptumBaseline],
    names: Sequence[Optional[str]],
    seed: int,
    forward_batch: int,
) -> List[ClassReport]:
    """The report rows of ``classes``, every pattern measured on the sample in one pass over it.

    Per class: its pattern, :data:`RANDOM_TRIALS` random-pixel patterns (drawn as
    :func:`~captum_classpattern.metrics.random_pixel_power` draws them) and each baseline's
    top-k pattern.
    """
    stamped, targets = [], []
    with phase("baselines"):  # the attributions; every pattern is measured together below
        for i, cls in enumerate(classes):
            generator = torch.Generator().manual_seed(seed)
            stamped += [patterns[i]] + [random_pattern(canvases[i], count, generator) for _ in range(RANDOM_TRIALS)]
            stamped += [
                top_k_pattern(class_attribution(model, baseline, canvases[i], cls, seed), canvases[i], count)
                for baseline in baselines
            ]
            targets += [cls] * (1 + RANDOM_TRIALS + len(baselines))
    with phase("measurement"):
        tally = measure_patterns(model, stamped, targets, sample, classes, forward_batch, canvases.device)
    powers = rates(tally.hits, tally.measured, "the patterns")
    floors = rates(tally.floor_hits, tally.floor_measured, "the floor")
    per_class = 1 + RANDOM_TRIALS + len(baselines)
    rows = []
    for i, cls in enumerate(classes):
        first = i * per_class
        hits, measured = int(tally.hits[first]), int(tally.measured[first])
        rows.append(
            ClassReport(
                class_=cls,
                k=count,
                predictive_power=powers[first],
                floor=floors[i],
                random=float(np.mean(powers[first + 1 : first + 1 + RANDOM_TRIALS])),
                baselines={b.name: powers[first + 1 + RANDOM_TRIALS + j] for j, b in enumerate(baselines)},
                name=names[i],
                power_interval=wilson_interval(hits, measured, sample.confidence),
                measured=measured,
            )
        )
    return rows


def class_attribution(model: Callable, baseline: CaptumBaseline, canvas: Tensor, cls: int, seed: int) -> Tensor:
    """A Captum baseline's attribution, its random draws (if any) seeded by the seed and the class.

    Stochastic Captum methods draw from the global generator; seeding it per class (and
    restoring it afterwards) keeps a class's result independent of the classes searched before
    it, so chunks, ranks and resumed runs agree (``NoiseTunnel`` noise included). The default
    methods draw nothing.
    """
    devices = [canvas.device] if canvas.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed * 1_000_003 + cls)
        with tuned_threads(f"captum {baseline.name}", canvas, model):
            return captum_attribution(model, baseline, canvas, cls)

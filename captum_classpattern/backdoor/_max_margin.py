"""MM-BD (Wang et al., IEEE S&P 2024): data-free backdoor detection by the maximum classification margin.

A backdoor target class is one the model can be driven to with an unusually large margin:
the trigger is a shortcut that clean features cannot match. For every class ``t`` the
detector starts from random images in [0, 1] and climbs the margin
``f_t(x) - max_{k != t} f_k(x)`` by gradient ascent (on the images clipped to [0, 1]);
the class's statistic is the largest margin reached. The largest statistic is then tested
against a gamma distribution fitted to the others: the p-value of the maximum of ``K``
draws is ``1 - F(r_max) ** K``, and the model is flagged (with the argmax as its target)
when it is at most ``alpha``. No clean data is needed.

Defaults are the authors' (``images_per_class=30``, ``steps=300``, step size ``1e-2``,
stopping when the loss changes by less than a relative ``1e-5``, ``alpha=0.05``). All
classes climb together, one batch through the model per step; each class stops on its
own criterion.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from scipy import stats
from torch import Tensor
from tqdm.auto import tqdm

from .._utils import (
    Replaceable,
    channels_last_inputs,
    check_positive_float,
    check_positive_int,
    check_seed,
    evaluation_mode,
)
from ._checks import check_model, check_number, check_settings


@dataclass(frozen=True)
class MaxMarginSettings(Replaceable):
    """Settings of :func:`max_margin_detection` (the MM-BD authors' values by default).

    Attributes:
        images_per_class: random starting images per class (default 30).
        steps: at most this many gradient steps (default 300).
        step_size: the step on the images, in [0, 1] pixel units per unit gradient
            (default 0.01).
        tolerance: a class stops when its loss changes by less than this share of itself
            (default 1e-5).
        alpha: the p-value at or below which the model is flagged (default 0.05).

    Example:
        >>> max_margin_detection(model, (3, 32, 32), MaxMarginSettings(steps=100))
    """

    images_per_class: int = 30
    steps: int = 300
    step_size: float = 0.01
    tolerance: float = 1e-5
    alpha: float = 0.05

    def __post_init__(self) -> None:
        check_positive_int(self.images_per_class, "images_per_class")
        check_positive_int(self.steps, "steps")
        check_positive_float(self.step_size, "step_size")
        check_number(self.tolerance, "tolerance", 0.0, 1.0)
        check_number(self.alpha, "alpha", 0.0, 1.0, low_open=True, high_open=True)


@dataclass(frozen=True)
class MaxMarginResult:
    """What :func:`max_margin_detection` found.

    Attributes:
        statistics: the largest margin reached for each class (index = class).
        p_value: the p-value of the largest statistic under the gamma null of the others.
        flagged: whether ``p_value <= alpha``.
        target: the class with the largest statistic (the suspected target when flagged).
        score: ``-log10(p_value)``, a per-model detection score (higher is more suspect).
        steps_taken: the steps each class ran before it stopped.
        seconds: wall time.
        settings: the settings it ran with.
    """

    statistics: List[float]
    p_value: float
    flagged: bool
    target: int
    score: float
    steps_taken: List[int]
    seconds: float
    settings: MaxMarginSettings

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict."""
        record = dataclasses.asdict(self)
        record["settings"] = dataclasses.asdict(self.settings)
        return record


def class_margins(logits: Tensor, classes: Tensor) -> Tensor:
    """``f_t - max_{k != t} f_k`` for each row's class ``t``."""
    own = logits.gather(1, classes[:, None]).squeeze(1)
    others = logits.scatter(1, classes[:, None], -math.inf)
    return own - others.max(dim=1).values


def gamma_p_value(statistics: Sequence[float]) -> float:
    """The p-value of the largest statistic, the others fitted by a gamma distribution.

    Args:
        statistics: one statistic per class (at least 3).

    Returns:
        ``1 - F(r_max) ** K`` with ``F`` the gamma CDF fitted (shape, location, scale) to
        the statistics other than the largest and ``K`` the number of classes.

    Raises:
        ValueError: fewer than 3 statistics or a non-finite one.
    """
    values = np.asarray(statistics, dtype=np.float64)
    if values.size < 3 or not np.isfinite(values).all():
        raise ValueError("the gamma null needs at least 3 finite per-class statistics.")
    largest = int(values.argmax())
    null = np.delete(values, largest)
    if np.ptp(null) == 0:
        # A degenerate null (all equal): any larger maximum is infinitely unlikely.
        return 0.0 if values[largest] > null[0] else 1.0
    shape, loc, scale = stats.gamma.fit(null)
    cdf = float(stats.gamma.cdf(values[largest], a=shape, loc=loc, scale=scale))
    return float(1.0 - cdf**values.size)


def _climb(
    model: Any, starts: Tensor, classes: Tensor, settings: MaxMarginSettings, show_progress: bool
) -> Tuple[Tensor, Tensor]:
    """Gradient ascent of every start's margin; returns the final margins and steps per class."""
    num_classes = int(classes.max()) + 1
    images = starts.clone().requires_grad_(True)
    live = torch.ones(num_classes, dtype=torch.bool)
    steps_taken = torch.zeros(num_classes, dtype=torch.long)
    last = torch.full((num_classes,), math.inf, dtype=torch.float64)
    margins = torch.zeros(starts.shape[0])
    for _ in tqdm(range(settings.steps), desc="MM-BD", disable=not show_progress, leave=False):
        margins = class_margins(model(images.clamp(0.0, 1.0)), classes)
        per_class = margins.new_zeros(num_classes).index_add(0, classes, -margins)
        (grad,) = torch.autograd.grad(per_class.sum(), images)
        with torch.no_grad():
            moving = live.to(images.device)[classes].to(images.dtype).view(-1, *([1] * (images.dim() - 1)))
            images -= settings.step_size * grad * moving
        losses = per_class.detach().double().cpu()
        steps_taken += live.long()
        settled = (last - losses).abs() / losses.abs().clamp_min(1e-12) < settings.tolerance
        live &= ~settled
        last = losses
        if not live.any():
            break
    return margins.detach().cpu(), steps_taken


def max_margin_detection(
    model: Any,
    image_shape: Sequence[int],
    settings: Optional[MaxMarginSettings] = None,
    *,
    seed: int = 0,
    show_progress: bool = False,
) -> MaxMarginResult:
    """Run MM-BD on a classifier: is it backdoored, and which class is the target?

    Args:
        model: the classifier, taking N x C x H x W images in [0, 1] and returning logits.
            Used in eval mode; its mode and parameters are left as they were.
        image_shape: ``(C, H, W)`` of the model's input.
        settings: :class:`MaxMarginSettings` (default: the authors' values).
        seed: seed of the random starting images.
        show_progress: a progress bar over the steps.

    Returns:
        A :class:`MaxMarginResult`.

    Raises:
        TypeError: a model that is not callable, or settings of another type.
        ValueError: an image shape that is not three positive ints, or a model with
            fewer than 3 classes.

    Example:
        >>> found = max_margin_detection(model, (3, 32, 32))
        >>> found.flagged, found.target, found.p_value
    """
    check_model(model)
    settings = settings if settings is not None else MaxMarginSettings()
    check_settings(settings, MaxMarginSettings, "settings")
    check_seed(seed)
    shape = tuple(image_shape)
    if len(shape) != 3 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
        raise ValueError(f"image_shape must be (C, H, W) positive ints, got {image_shape!r}.")
    began = time.perf_counter()
    parameters = list(model.parameters()) if hasattr(model, "parameters") else []
    device = parameters[0].device if parameters else torch.device("cpu")
    with evaluation_mode(model, "max_margin_detection"):
        model = channels_last_inputs(model)
        with torch.no_grad():
            num_classes = int(model(torch.zeros(1, *shape, device=device)).shape[1])
        if num_classes < 3:
            raise ValueError(f"MM-BD needs at least 3 classes to fit its null; the model has {num_classes}.")
        generator = torch.Generator().manual_seed(seed)
        count = settings.images_per_class
        starts = torch.rand(num_classes * count, *shape, generator=generator).to(device)
        classes = torch.arange(num_classes, device=device).repeat_interleave(count)
        margins, steps_taken = _climb(model, starts, classes, settings, show_progress)
    statistics = margins.view(num_classes, count).max(dim=1).values.double().cpu().tolist()
    p_value = gamma_p_value(statistics)
    return MaxMarginResult(
        statistics=statistics,
        p_value=p_value,
        flagged=p_value <= settings.alpha,
        target=int(np.argmax(statistics)),
        score=float(-math.log10(max(p_value, 1e-300))),
        steps_taken=steps_taken.tolist(),
        seconds=time.perf_counter() - began,
        settings=settings,
    )

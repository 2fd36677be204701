"""Search schedules: the settings of the class-pattern map optimisation.

A :class:`SearchSchedule` holds them; four are predefined:

* :data:`PAPER_SCHEDULE` reproduces Zhao et al.'s CIFAR-10 settings: map initialised to
  0.5, ``alpha = 0.2``, signed gradient steps of 0.02 clamped to [0, 1], batches of 4
  other-class images, 5 epochs over the search set (``schedule="paper"``);
* :data:`PAPER_IMAGENET_SCHEDULE`, their ImageNet settings: the same, but 1 epoch over
  the search set (``schedule="paper-imagenet"``);
* :data:`DEFAULT_SCHEDULE` is what :class:`~captum_classpattern.attr.ClassPattern` uses
  when no schedule is given, and what ``SearchSchedule()`` builds: the same loss and signed,
  clamped steps, but 600 steps on one other-class image per canvas, with the step
  cosine-annealed from 0.1 to 0.001;
* :data:`FAST_SCHEDULE`, a quick look at a third of the default's images: 100 steps on
  batches of 2, annealed from 0.1 to 0.01 (``schedule="fast"``).

Whatever the schedule, all canvases are searched in one batched loop in which each canvas
has its own stream of search images, so searching several classes together does not
change a class's result.

Example:
    >>> from captum_classpattern.attr import DEFAULT_SCHEDULE, FAST_SCHEDULE, PAPER_SCHEDULE
    >>> DEFAULT_SCHEDULE.steps, DEFAULT_SCHEDULE.batch_size, DEFAULT_SCHEDULE.final_step_size
    (600, 1, 0.001)
    >>> FAST_SCHEDULE.steps, FAST_SCHEDULE.batch_size, FAST_SCHEDULE.final_step_size
    (100, 2, 0.01)
    >>> PAPER_SCHEDULE.replace(epochs=1) == PAPER_IMAGENET_SCHEDULE
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Union

from .._utils import Replaceable

_OPTIMIZERS = ("sign", "adam")


@dataclass(frozen=True)
class SearchSchedule(Replaceable):
    """Settings of the map optimisation; frozen and validated when built.

    The field defaults are those of :data:`DEFAULT_SCHEDULE`. Derive a variant with
    :meth:`replace`.

    Attributes:
        optimizer: ``"sign"`` (signed gradient descent on the map itself, clamped to
            [0, 1], as in the paper) or ``"adam"`` (Adam on logits ``theta`` with
            ``map = sigmoid(theta)``, so the map stays in (0, 1) without clamping).
        step_size: the signed step (``"sign"``) or Adam's learning rate (``"adam"``); the
            first step's size when ``final_step_size`` is set.
        alpha: weight of the cross-entropy term; ``1 - alpha`` weighs the map's size.
        init: the initial map value at every pixel, in (0, 1).
        batch_size: other-class images per canvas per step (tensor search sets only; a
            DataLoader's own batches are used as they come).
        epochs: passes over the search set. Exactly one of ``epochs`` and ``steps`` is set.
        steps: number of update steps per canvas.
        betas: Adam's moment decay rates.
        final_step_size: when set, the step is cosine-annealed from ``step_size`` (first
            step) towards this value (last step), per canvas over its own number of
            steps; ``None`` keeps the step constant, as the paper does. With ``epochs``
            and a DataLoader the loader must have a length, so that the number of steps
            is known in advance.

    Raises:
        ValueError: an unknown optimizer, ``init`` outside (0, 1), ``alpha`` outside
            [0, 1], a non-positive step size or batch size, or not exactly one of
            ``epochs`` and ``steps`` set to a positive int.
    """

    optimizer: str = "sign"
    step_size: float = 0.1
    alpha: float = 0.2
    init: float = 0.5
    batch_size: int = 1
    epochs: Optional[int] = None
    steps: Optional[int] = 600
    betas: tuple = (0.9, 0.999)
    final_step_size: Optional[float] = 0.001

    def __post_init__(self) -> None:
        if self.optimizer not in _OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {_OPTIMIZERS}, got {self.optimizer!r}.")
        if not 0.0 < self.init < 1.0:
            raise ValueError(f"init must lie in (0, 1), got {self.init}.")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {self.alpha}.")
        if self.step_size <= 0:
            raise ValueError(f"step_size must be positive, got {self.step_size}.")
        if self.final_step_size is not None and not (
            isinstance(self.final_step_size, (int, float)) and 0 < self.final_step_size < math.inf
        ):
            raise ValueError(f"final_step_size must be a positive number or None, got {self.final_step_size!r}.")
        if int(self.batch_size) != self.batch_size or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {self.batch_size}.")
        if (self.epochs is None) == (self.steps is None):
            raise ValueError("set exactly one of epochs and steps (the other to None).")
        for name in ("epochs", "steps"):
            value = getattr(self, name)
            if value is not None and (int(value) != value or value < 1):
                raise ValueError(f"{name} must be a positive int, got {value}.")

    @property
    def anneals(self) -> bool:
        """Whether the step size changes during the search (``final_step_size`` is set)."""
        return self.final_step_size is not None

    def step_size_at(self, progress: float) -> float:
        """The step size after a fraction ``progress`` in [0, 1] of the steps.

        Cosine annealing from :attr:`step_size` at ``progress = 0`` towards
        :attr:`final_step_size` at ``progress = 1``; constant when that is ``None``.
        """
        if self.final_step_size is None:
            return self.step_size
        first, last = self.step_size, self.final_step_size
        return last + (first - last) * 0.5 * (1.0 + math.cos(math.pi * progress))


PAPER_SCHEDULE = SearchSchedule(
    optimizer="sign", step_size=0.02, alpha=0.2, init=0.5, batch_size=4, epochs=5, steps=None, final_step_size=None
)
"""Zhao et al.'s CIFAR-10 settings: signed steps of 0.02, batches of 4, 5 epochs, ``alpha = 0.2``."""

PAPER_IMAGENET_SCHEDULE = PAPER_SCHEDULE.replace(epochs=1)
"""Zhao et al.'s ImageNet settings: signed steps of 0.02, batches of 4, 1 epoch, ``alpha = 0.2``.

Their patterns keep k = 2,500 of the 224 x 224 pixels (about 5%).
"""

DEFAULT_SCHEDULE = SearchSchedule()
"""The default: 600 signed steps, cosine-annealed from 0.1 to 0.001, on one image per canvas, ``alpha = 0.2``."""

FAST_SCHEDULE = SearchSchedule(steps=100, batch_size=2, final_step_size=0.01)
"""A quick look at a third of the default's images: 100 signed steps annealed from 0.1 to 0.01, batches of 2."""

NAMED_SCHEDULES = {
    "default": DEFAULT_SCHEDULE,
    "fast": FAST_SCHEDULE,
    "paper": PAPER_SCHEDULE,
    "paper-imagenet": PAPER_IMAGENET_SCHEDULE,
}
"""The schedules a ``schedule=`` argument or the command line's ``--schedule`` accepts by name."""


def resolve_schedule(schedule: Union[str, SearchSchedule, None]) -> SearchSchedule:
    """Accept a :class:`SearchSchedule`, a name of :data:`NAMED_SCHEDULES` or ``None`` (the default).

    Raises:
        ValueError: an unknown name or another type.
    """
    if schedule is None:
        return DEFAULT_SCHEDULE
    if isinstance(schedule, SearchSchedule):
        return schedule
    if isinstance(schedule, str) and schedule in NAMED_SCHEDULES:
        return NAMED_SCHEDULES[schedule]
    raise ValueError(f"schedule must be a SearchSchedule or one of {sorted(NAMED_SCHEDULES)}, got {schedule!r}.")

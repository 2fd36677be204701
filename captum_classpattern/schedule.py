"""Search schedules: how the class-pattern map is optimised.

:data:`PAPER_SCHEDULE` reproduces Zhao et al. (2021) exactly: map initialised to 0.5,
``alpha = 0.2``, signed gradient steps of 0.02 clamped to [0, 1], batches of 4
other-class images, 5 epochs over the search set, one class at a time (the batched search
gives each canvas its own stream, so searching several classes together does not change a
class's result).

:data:`DEFAULT_SCHEDULE` is what :class:`~captum_classpattern.ClassPattern` uses when no
schedule is given: the same signed steps, larger (0.05) and on larger batches (16), for a
fixed 60 steps with all classes batched together. It was chosen by measurement
(``benchmarks/bench_search.py``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Union

_OPTIMIZERS = ("sign", "adam")


@dataclass(frozen=True)
class SearchSchedule:
    """Settings of the map optimisation.

    Attributes:
        optimizer: ``"sign"`` (signed gradient descent on the map itself, clamped to
            [0, 1], as in the paper) or ``"adam"`` (Adam on logits ``theta`` with
            ``map = sigmoid(theta)``, so the map stays in (0, 1) without clamping).
        step_size: the signed step (``"sign"``) or Adam's learning rate (``"adam"``).
        alpha: weight of the cross-entropy term; ``1 - alpha`` weighs the map's size.
        init: the initial map value at every pixel, in (0, 1).
        batch_size: other-class images per canvas per step (tensor search sets only; a
            DataLoader's own batches are used as they come).
        epochs: passes over the search set. Exactly one of ``epochs`` and ``steps`` is set.
        steps: number of update steps per canvas.
        betas: Adam's moment decay rates.
    """

    optimizer: str = "sign"
    step_size: float = 0.05
    alpha: float = 0.2
    init: float = 0.5
    batch_size: int = 16
    epochs: Optional[int] = None
    steps: Optional[int] = 60
    betas: tuple = (0.9, 0.999)

    def __post_init__(self) -> None:
        if self.optimizer not in _OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {_OPTIMIZERS}, got {self.optimizer!r}.")
        if not 0.0 < self.init < 1.0:
            raise ValueError(f"init must lie in (0, 1), got {self.init}.")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {self.alpha}.")
        if self.step_size <= 0:
            raise ValueError(f"step_size must be positive, got {self.step_size}.")
        if int(self.batch_size) != self.batch_size or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {self.batch_size}.")
        if (self.epochs is None) == (self.steps is None):
            raise ValueError("set exactly one of epochs and steps (the other to None).")
        for name in ("epochs", "steps"):
            value = getattr(self, name)
            if value is not None and (int(value) != value or value < 1):
                raise ValueError(f"{name} must be a positive int, got {value}.")

    def replace(self, **changes) -> "SearchSchedule":
        """A copy with some settings changed, e.g. ``PAPER_SCHEDULE.replace(epochs=1)``."""
        return replace(self, **changes)


PAPER_SCHEDULE = SearchSchedule(optimizer="sign", step_size=0.02, alpha=0.2, init=0.5, batch_size=4, epochs=5, steps=None)
DEFAULT_SCHEDULE = SearchSchedule()

_NAMED = {"paper": PAPER_SCHEDULE, "default": DEFAULT_SCHEDULE}


def resolve_schedule(schedule: Union[str, SearchSchedule, None]) -> SearchSchedule:
    """Accept a :class:`SearchSchedule`, ``"paper"``, ``"default"`` or ``None`` (default)."""
    if schedule is None:
        return DEFAULT_SCHEDULE
    if isinstance(schedule, SearchSchedule):
        return schedule
    if isinstance(schedule, str) and schedule in _NAMED:
        return _NAMED[schedule]
    raise ValueError(f"schedule must be a SearchSchedule or one of {sorted(_NAMED)}, got {schedule!r}.")

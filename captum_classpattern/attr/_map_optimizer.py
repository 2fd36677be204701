"""The one update rule of every pattern search: signed steps (or Adam) on per-canvas tensors, with annealing."""

from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from ._schedule import SearchSchedule


class MapOptimizer:
    """One optimised tensor of a search (the maps, or the pasted values), a row per canvas.

    ``"sign"`` optimises the tensor itself (signed steps, clamped to [0, 1]); ``"adam"``
    optimises logits ``theta`` with ``tensor = sigmoid(theta)``. A canvas moves only on the
    steps where it is ``active`` (it had images in the batch), and an annealed step size
    follows each canvas's own progress, so a canvas's result does not depend on the
    canvases searched with it.

    ``evidence`` (kept when asked for) accumulates, per canvas and entry, the negated
    gradient of every step (how strongly, summed over the search, the loss pushed the
    entry up); the top-k rule uses it to order map pixels of equal value.
    """

    def __init__(self, plan: SearchSchedule, theta: Tensor, planned: Optional[Tensor], evidence: bool = True) -> None:
        """Start from ``theta`` (in the optimiser's own space: the tensor for ``"sign"``, logits for ``"adam"``).

        Args:
            plan: the schedule: optimizer, step sizes, annealing, Adam's betas.
            theta: ``canvases x ...`` starting parameters (taken over, not copied).
            planned: the number of steps of each canvas (needed when ``plan`` anneals).
            evidence: keep the summed negated gradients (the maps' tie-break).
        """
        self.plan = plan
        self.theta = theta
        self.taken = torch.zeros(theta.shape[0], device=theta.device, dtype=torch.long)
        self.evidence = torch.zeros_like(theta) if evidence else None
        if plan.optimizer == "adam":
            self.moment1 = torch.zeros_like(self.theta)
            self.moment2 = torch.zeros_like(self.theta)
        self.lockstep: Optional[int] = None
        if plan.anneals:
            assert planned is not None  # the search refuses an annealed plan without a step count
            self._plan_step_sizes(planned.cpu(), theta.dtype, theta.device)

    @classmethod
    def uniform(
        cls, plan: SearchSchedule, shape: Tuple[int, ...], like: Tensor, planned: Optional[Tensor]
    ) -> MapOptimizer:
        """Maps of ``shape`` starting at ``plan.init`` everywhere, with evidence, on ``like``'s device and dtype."""
        start = plan.init if plan.optimizer == "sign" else math.log(plan.init / (1 - plan.init))
        return cls(plan, torch.full(shape, start, device=like.device, dtype=like.dtype), planned)

    def _plan_step_sizes(self, planned: Tensor, dtype: torch.dtype, device: torch.device) -> None:
        """Tabulate the annealed step sizes once, one row per distinct number of steps.

        Every canvas reads its step from the same float table whether it is searched alone
        or with others, so both give identical numbers. While all canvases plan the same
        number of steps and have all been active at every step, they share one step size,
        read as a Python float (no tensor work per step).
        """
        totals, self.group = torch.unique(planned.clamp(min=1), return_inverse=True)
        longest = int(totals.max())
        final = self.plan.final_step_size
        assert final is not None  # only annealed plans build a table
        table = torch.full((totals.numel(), longest), float(final), dtype=torch.float64)
        for row, total in enumerate(totals.tolist()):
            table[row, :total] = torch.tensor(
                [self.plan.step_size_at(t / total) for t in range(total)], dtype=torch.float64
            )
        self.table_cpu = table.to(dtype)
        self.table = self.table_cpu.to(device)
        self.group = self.group.to(device)
        self.lockstep = 0 if totals.numel() == 1 else None

    def _per_canvas(self, values: Tensor) -> Tensor:
        """A per-canvas vector shaped to broadcast over ``theta``'s other dimensions."""
        return values.view((-1,) + (1,) * (self.theta.dim() - 1))

    def to_map(self, theta: Tensor) -> Tensor:
        """The tensor in [0, 1] that ``theta`` stands for."""
        return theta if self.plan.optimizer == "sign" else torch.sigmoid(theta)

    def maps(self) -> Tensor:
        """The current tensor, detached."""
        return self.to_map(self.theta).detach()

    def map_to_theta_gradient(self, grad: Tensor) -> Tensor:
        """Chain rule from the tensor to ``theta`` (the identity for ``"sign"``)."""
        if self.plan.optimizer == "sign":
            return grad
        maps = torch.sigmoid(self.theta)
        return grad.mul_(maps * (1 - maps))

    def _step_sizes(self) -> Union[float, Tensor]:
        if not self.plan.anneals:
            return self.plan.step_size
        last = self.table.shape[1] - 1
        if self.lockstep is not None:
            return float(self.table_cpu[0, min(self.lockstep, last)])
        return self._per_canvas(self.table[self.group, self.taken.clamp(max=last)])

    def step(self, grad: Tensor, active: Optional[Tensor]) -> None:
        """Update the canvases marked in ``active`` (a bool tensor; ``None``: all) with ``grad``.

        ``grad`` (with respect to ``theta``) is consumed (overwritten).
        """
        keep = None if active is None else self._per_canvas(active)
        # An inactive canvas's gradient is zero (no rows, no size term), so it adds nothing.
        if self.evidence is not None:
            self.evidence.sub_(grad)
        size = self._step_sizes()
        if self.plan.optimizer == "sign":
            stepped = self.theta - grad.sign_().mul_(size)
            stepped.clamp_(0.0, 1.0)
        else:
            stepped = self._adam(grad, size, keep)
        self.theta = stepped if keep is None else torch.where(keep, stepped, self.theta)
        self.taken += 1 if active is None else active.to(self.taken.dtype)
        self.lockstep = self.lockstep + 1 if keep is None and self.lockstep is not None else None

    def _adam(self, grad: Tensor, size: Union[float, Tensor], keep: Optional[Tensor]) -> Tensor:
        beta1, beta2 = self.plan.betas
        moment1 = beta1 * self.moment1 + (1 - beta1) * grad
        moment2 = beta2 * self.moment2 + (1 - beta2) * grad * grad
        self.moment1 = moment1 if keep is None else torch.where(keep, moment1, self.moment1)
        self.moment2 = moment2 if keep is None else torch.where(keep, moment2, self.moment2)
        t = self._per_canvas((self.taken + 1).to(self.theta.dtype))
        update = (self.moment1 / (1 - beta1**t)) / ((self.moment2 / (1 - beta2**t)).sqrt() + 1e-8)
        return self.theta - size * update

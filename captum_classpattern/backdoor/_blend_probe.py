"""The scan's dense probe: one full-image pattern per class, blended faintly over other-class images.

A top-k stamp changes a few pixels a lot; a blended trigger (``(1 - a) x + a t``) changes
every pixel a little, and no small stamp reproduces it. The probe learns, for every class
at once, one full-image pattern ``t`` that makes the blend ``(1 - a) x + a t`` classify as
the class at a fixed small strength ``a``, then measures the share of held-out
other-class images each pattern flips at a grid of strengths. On a clean model every
class needs about the same strength; a class with a planted blend trigger flips most
images at a fraction of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Sequence

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from .._utils import predict, tuned_threads
from ..attr import make_search_set
from ._scan_scores import AUC_POWER, held_out_others, log_odds
from ._scan_search import stamp_loss

BLEND_STRENGTHS = (0.02, 0.04, 0.06, 0.08, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3)
"""The blend strengths ``a`` every class's probe pattern is measured at."""

# The value step is cosine-annealed from ScanSettings.value_step down to this share of it.
_FINAL_STEP_SHARE = 0.2


@dataclass
class BlendTable:
    """The predictive power of each class's blended probe pattern at each blend strength.

    Attributes:
        strengths: the blend strengths ``a`` measured, increasing.
        powers: K x len(strengths) shares of held-out other-class images classified as
            the class after blending its pattern in at that strength.
        counts: the number of held-out images each class's powers were measured on.
    """

    strengths: List[float]
    powers: np.ndarray
    counts: List[int]

    def typical_strength(self) -> float:
        """The median over the classes of the smallest strength whose power reaches 0.5.

        Classes that never reach it count as twice the largest strength.
        """
        reached = []
        for row in self.powers:
            above = np.flatnonzero(row >= AUC_POWER)
            reached.append(self.strengths[int(above[0])] if above.size else 2.0 * self.strengths[-1])
        return float(np.median(reached))

    def class_scores(self) -> np.ndarray:
        """Each class's mean log-odds of the power over the strengths up to :meth:`typical_strength`.

        The range adapts to the model: it ends where a typical class of *this* model
        starts to flip images, so a model that is easy to flip everywhere is not
        suspicious for that alone. High is suspicious.
        """
        upto = self.typical_strength()
        columns = [j for j, strength in enumerate(self.strengths) if strength <= upto + 1e-12] or [0]
        return np.array(
            [float(np.mean(log_odds(self.powers[row, columns], self.counts[row]))) for row in range(len(self.powers))]
        )

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict."""
        return {"strengths": list(self.strengths), "powers": self.powers.tolist(), "counts": list(self.counts)}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> BlendTable:
        """The table from :meth:`to_dict`'s output."""
        return cls(
            strengths=[float(s) for s in data["strengths"]],
            powers=np.asarray(data["powers"], dtype=np.float64),
            counts=[int(c) for c in data["counts"]],
        )


@dataclass
class BlendProbe:
    """What the scan's blend probe found on a model, and on the reference models.

    Attributes:
        patterns: K x C x H x W learned full-image patterns, one per scanned class: blend
            one in with ``(1 - a) x + a * pattern`` to see what it does.
        table: the share of held-out other-class images each pattern flips at each
            strength (:class:`BlendTable`).
        reference_tables: the same probe's tables on each reference model (empty without
            a reference).
    """

    patterns: Tensor
    table: BlendTable
    reference_tables: List[BlendTable] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict (the patterns as nested lists)."""
        return {
            "table": self.table.to_dict(),
            "reference_tables": [table.to_dict() for table in self.reference_tables],
            "patterns": self.patterns.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Dict[str, Any], dtype: torch.dtype = torch.float32) -> BlendProbe:
        """The probe from :meth:`to_dict`'s output, its patterns on the CPU."""
        return cls(
            patterns=torch.tensor(data["patterns"], dtype=dtype),
            table=BlendTable.from_dict(data["table"]),
            reference_tables=[BlendTable.from_dict(table) for table in data.get("reference_tables", [])],
        )


def learn_blend_patterns(
    model: Callable,
    targets: Tensor,
    images: Tensor,
    labels: Tensor,
    *,
    strength: float,
    steps: int,
    batch_size: int,
    value_step: float,
    seed: int,
    show_progress: bool = False,
) -> Tensor:
    """Signed-gradient search of one full-image pattern per class, blended in at ``strength``.

    All classes step together in one model call per step, each on its own stream of
    other-class images; the loss is each class's mean cross-entropy (no size term: the
    blend covers the whole image). The step is cosine-annealed from ``value_step`` to a
    fifth of it. Gradients are taken with ``torch.autograd.grad``, so the model's
    parameters never receive a ``.grad``.

    Args:
        model: the classifier, in evaluation mode.
        targets: the K classes.
        images: the search images (other-class images are drawn for each class).
        labels: their labels.
        strength: the blend strength ``a`` of the search.
        steps: the number of steps.
        batch_size: other-class images per class per step.
        value_step: the first signed step on the pattern.
        seed: seeds the order of the search images.
        show_progress: show a tqdm progress bar.

    Returns:
        K x C x H x W patterns in [0, 1].
    """
    count = targets.numel()
    shape = tuple(images.shape[1:])
    patterns = torch.full((count,) + shape, 0.5, dtype=images.dtype, device=images.device)
    keep = torch.full((count,) + shape[1:], float(strength), dtype=images.dtype, device=images.device)
    search = make_search_set(images, labels, targets, shape, batch_size, seed)
    targets_dev = targets.to(images.device)
    progress = tqdm(total=steps, desc="Class pattern scan: blend probe", disable=not show_progress)
    for step, (batch, active) in enumerate(search.steps(None, steps)):
        owner = batch.owner.to(images.device)
        counts = torch.bincount(owner, minlength=count).clamp(min=1).to(images.dtype)
        leaf = patterns.detach().requires_grad_(True)
        with torch.enable_grad(), tuned_threads("blend probe", batch.images, model):
            _, loss = stamp_loss(model, batch.images.to(images.device), owner, keep, leaf, targets_dev, counts)
            (grad,) = torch.autograd.grad(loss, [leaf])
        cosine = 0.5 * (1.0 + math.cos(math.pi * step / steps))
        size = value_step * (_FINAL_STEP_SHARE + (1.0 - _FINAL_STEP_SHARE) * cosine)
        live = active.to(images.device).view(-1, 1, 1, 1)
        patterns = torch.where(live, (patterns - size * grad.sign()).clamp(0.0, 1.0), patterns)
        progress.update(1)
    progress.close()
    return patterns.detach()


def measure_blend_powers(
    model: Callable,
    patterns: Tensor,
    targets: Tensor,
    images: Tensor,
    labels: Tensor,
    strengths: Sequence[float] = BLEND_STRENGTHS,
    *,
    max_images: int = 300,
    seed: int = 0,
    batch_size: int = 1024,
) -> BlendTable:
    """The share of held-out other-class images each class's pattern flips at each strength.

    At most ``max_images`` other-class images per class (the same seeded subsets as the
    scan's power table) are used.

    Returns:
        The :class:`BlendTable`.
    """
    powers = np.zeros((targets.numel(), len(strengths)))
    counts = []
    generator = torch.Generator().manual_seed(seed)
    with torch.inference_mode():
        for row, target in enumerate(targets.tolist()):
            others = held_out_others(images, labels, target, generator, max_images)
            counts.append(int(others.shape[0]))
            for column, strength in enumerate(strengths):
                blended = (1.0 - strength) * others + strength * patterns[row]
                hits = int((predict(model, blended, batch_size=batch_size, who="scan") == target).sum())
                powers[row, column] = hits / others.shape[0]
    return BlendTable(strengths=[float(s) for s in strengths], powers=powers, counts=counts)

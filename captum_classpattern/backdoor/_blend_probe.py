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

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Sequence

import numpy as np
import torch
from torch import Tensor

from .._utils import predict
from ..attr import BlendObjective, search_patterns
from ._scan_scores import AUC_POWER, held_out_others, log_odds
from ._settings import ScanSettings

BLEND_STRENGTHS = (0.02, 0.04, 0.06, 0.08, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3)
"""The blend strengths ``a`` every class's probe pattern is measured at."""


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
    settings: ScanSettings,
    *,
    seed: int,
    show_progress: bool = False,
) -> Tensor:
    """Search one full-image pattern per class, blended in at ``settings.blend_strength``.

    All classes step together in one model call per step, each on its own stream of
    other-class images (:func:`~captum_classpattern.attr.search_patterns` with a
    :class:`~captum_classpattern.attr.BlendObjective`); the patterns start grey, the loss
    is each class's mean cross-entropy (no size term: the blend covers the whole image),
    and the signed step is cosine-annealed from ``settings.value_step`` to a fifth of it
    (:attr:`ScanSettings.blend_schedule`).

    Args:
        model: the classifier, in evaluation mode.
        targets: the K classes.
        images: the search images (other-class images are drawn for each class).
        labels: their labels.
        settings: the probe's strength, steps, batch size and step.
        seed: seeds the order of the search images.
        show_progress: show a tqdm progress bar.

    Returns:
        K x C x H x W patterns in [0, 1].
    """
    grey = torch.full((targets.numel(),) + tuple(images.shape[1:]), 0.5, dtype=images.dtype, device=images.device)
    _, patterns = search_patterns(
        model, grey, targets, images, labels, BlendObjective(settings.blend_strength), settings.blend_schedule,
        seed=seed, show_progress=show_progress, description="Class pattern scan: blend probe",
    )  # fmt: skip
    return patterns


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

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
from typing import Any, Callable, ClassVar, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from .._utils import predict
from ..attr import BlendObjective, search_patterns
from ._scan_scores import AUC_POWER, held_out_indices, log_odds
from ._settings import ScanSettings

BLEND_STRENGTHS = (0.02, 0.04, 0.06, 0.08, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3)
"""The blend strengths ``a`` every class's probe pattern is measured at."""


@dataclass
class BlendTable:
    """The predictive power of each class's blended probe pattern at each blend strength.

    Attributes:
        strengths: the blend strengths ``a`` measured, increasing.
        powers: K x len(strengths) shares of held-out other-class images classified as
            the class after blending its pattern in at that strength (NaN where the
            measurement stopped early: strengths above both the class's first power of
            0.5 and :meth:`typical_strength`, which no score uses).
        counts: the number of held-out images each class's powers were measured on.
    """

    strengths: List[float]
    powers: np.ndarray
    counts: List[int]

    def typical_strength(self) -> float:
        """The median over the classes of the smallest strength whose power reaches 0.5.

        Classes that never reach it count as twice the largest strength.
        """
        reached = [self.first_reaching(row) for row in range(len(self.powers))]
        return float(np.median([2.0 * self.strengths[-1] if r is None else r for r in reached]))

    def first_reaching(self, row: int, power: float = AUC_POWER) -> Optional[float]:
        """The smallest strength at which class ``row`` flips at least ``power`` of the images (``None``: none)."""
        above = np.flatnonzero(self.powers[row] >= power)
        return self.strengths[int(above[0])] if above.size else None

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
        """A JSON-ready dict; NaN powers are written as ``None``."""
        powers = [[None if np.isnan(v) else float(v) for v in row] for row in np.asarray(self.powers)]
        return {"strengths": list(self.strengths), "powers": powers, "counts": list(self.counts)}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> BlendTable:
        """The table from :meth:`to_dict`'s output."""
        return cls(
            strengths=[float(s) for s in data["strengths"]],
            powers=np.array([[np.nan if v is None else v for v in row] for row in data["powers"]], dtype=np.float64),
            counts=[int(c) for c in data["counts"]],
        )


class ProbeRecord:
    """What a dense probe keeps: its learned tensor (named by ``TENSOR``), its table, the references' tables.

    Shared by :class:`BlendProbe` and :class:`~captum_classpattern.backdoor.WarpProbe`,
    which differ only in what they learn.
    """

    TENSOR: ClassVar[str]
    table: BlendTable
    reference_tables: List[BlendTable]

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict (the learned tensor as nested lists)."""
        return {
            "table": self.table.to_dict(),
            "reference_tables": [table.to_dict() for table in self.reference_tables],
            self.TENSOR: getattr(self, self.TENSOR).tolist(),
        }

    @classmethod
    def from_dict(cls, data: Dict[str, Any], dtype: torch.dtype = torch.float32) -> Any:
        """The probe from :meth:`to_dict`'s output, its tensor on the CPU."""
        return cls(  # type: ignore[call-arg]
            **{cls.TENSOR: torch.tensor(data[cls.TENSOR], dtype=dtype)},
            table=BlendTable.from_dict(data["table"]),
            reference_tables=[BlendTable.from_dict(table) for table in data.get("reference_tables", [])],
        )


@dataclass
class BlendProbe(ProbeRecord):
    """What the scan's blend probe found on a model, and on the reference models.

    Attributes:
        patterns: K x C x H x W learned full-image patterns, one per scanned class: blend
            one in with ``(1 - a) x + a * pattern`` to see what it does.
        table: the share of held-out other-class images each pattern flips at each
            strength (:class:`BlendTable`).
        reference_tables: the same probe's tables on each reference model (empty without
            a reference).
    """

    TENSOR: ClassVar[str] = "patterns"
    patterns: Tensor
    table: BlendTable
    reference_tables: List[BlendTable] = field(default_factory=list)


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
    max_images: int = 150,
    seed: int = 0,
    batch_size: int = 1024,
    full_table: bool = False,
) -> BlendTable:
    """The share of held-out other-class images each class's pattern flips at each strength.

    At most ``max_images`` other-class images per class (the same seeded subsets as the
    scan's power table) are used; without ``full_table`` the strengths no score uses are
    left unmeasured (see :func:`measure_probe`).

    Returns:
        The :class:`BlendTable`.
    """

    def blended(batch: Tensor, row: int, strength: float) -> Tensor:
        return (1.0 - strength) * batch + strength * patterns[row]

    return measure_probe(
        model, blended, targets, images, labels, strengths, max_images=max_images, seed=seed, batch_size=batch_size,
        full_table=full_table,
    )  # fmt: skip


def measure_probe(
    model: Callable,
    apply: Callable[[Tensor, int, float], Tensor],
    targets: Tensor,
    images: Tensor,
    labels: Tensor,
    strengths: Sequence[float],
    *,
    max_images: int = 150,
    seed: int = 0,
    batch_size: int = 1024,
    full_table: bool = False,
) -> BlendTable:
    """The share of held-out other-class images a dense probe sends to each class at each strength.

    The scores (:meth:`BlendTable.class_scores`) use each class's powers up to the typical
    strength only, the median of the strengths at which the classes first reach a power of
    0.5. So the strengths are measured in two passes: each class up to where it first
    reaches 0.5, then every class up to the typical strength; the rest stay NaN. The
    scores are those of the full table; ``full_table`` measures every strength.

    Args:
        model: the classifier.
        apply: ``apply(batch, row, strength)``: the batch with class ``row``'s probe
            applied at ``strength`` (a blend, a warp).
        targets: the K classes.
        images: the held-out images; ``labels`` their labels.
        labels: the held-out labels.
        strengths: the strengths measured, increasing.
        max_images: at most this many other-class images per class (the same seeded
            subsets as the scan's power table).
        seed: seeds the subsets.
        batch_size: images per model call.
        full_table: measure every strength for every class.

    Returns:
        The :class:`BlendTable`.
    """
    powers = np.full((targets.numel(), len(strengths)), np.nan)
    generator = torch.Generator().manual_seed(seed)
    classes = targets.tolist()
    # Indices, not images: the second pass comes back to a class's subset.
    subsets = [held_out_indices(labels, target, generator, max_images).to(images.device) for target in classes]

    def measure(row: int, column: int) -> float:
        others = images[subsets[row]]
        predicted = predict(
            model, others, transform=_at(apply, row, strengths[column]), batch_size=batch_size, who="scan"
        )
        powers[row, column] = int((predicted == classes[row]).sum()) / others.shape[0]
        return float(powers[row, column])

    for row in range(targets.numel()):
        for column in range(len(strengths)):
            if measure(row, column) >= AUC_POWER and not full_table:
                break
    counts = [int(subset.numel()) for subset in subsets]
    table = BlendTable(strengths=[float(s) for s in strengths], powers=powers, counts=counts)
    typical = table.typical_strength()
    for row, column in np.argwhere(np.isnan(powers)):
        if strengths[column] <= typical + 1e-12:
            measure(int(row), int(column))
    return table


def _at(apply: Callable[[Tensor, int, float], Tensor], row: int, strength: float) -> Callable[[Tensor], Tensor]:
    """``apply`` with its class and strength bound: a transform of a batch."""
    return lambda batch: apply(batch, row, strength)

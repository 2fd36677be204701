"""The scan's scores: predictive power of each class's top-k patterns, and one number per class from it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Collection, Dict, List, Optional, Union

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from .._utils import predict
from ..attr import pixel_budget

# Which end of each score is suspicious: a backdoor needs a small pattern (low k, low L1),
# and patterns of a given size have unusual power (high).
DIRECTION = {"power_auc": "high", "min_k": "low", "power_at_k": "high", "mask_l1": "low"}
# power_auc's adaptive range ends where a typical class's pattern flips half the images.
AUC_POWER = 0.5


def budget_grid(height: int, width: int, max_fraction: float) -> List[int]:
    """Pattern sizes 1, 2, 3, 4, 5, 6, 7, 8, 10, ... (about 15% apart) up to ``max_fraction`` of the image."""
    top = max(1, int(round(max_fraction * height * width)))
    ks: List[int] = []
    k = 1.0
    while int(round(k)) <= top:
        if not ks or int(round(k)) != ks[-1]:
            ks.append(int(round(k)))
        k *= 1.15
    if ks[-1] != top:
        ks.append(top)
    return ks


@dataclass
class PowerTable:
    """The predictive power of each class's top-k patterns, for each evaluated size k.

    Attributes:
        ks: the pattern sizes evaluated, in pixels, increasing.
        powers: K x len(ks) predictive powers (NaN where the scan stopped early: sizes above
            ``power_auc``'s range once the power threshold was reached).
        counts: the number of held-out images each class's powers were measured on.
    """

    ks: List[int]
    powers: np.ndarray
    counts: List[int]

    def smallest_sizes(self, threshold: float) -> List[float]:
        """Each class's smallest size reaching a power of ``threshold`` (see :func:`min_k`)."""
        return [min_k(self.powers[row], self.ks, threshold) for row in range(self.powers.shape[0])]

    def auc_size(self, auc_k: Union[int, float, str], height: int, width: int) -> int:
        """The largest size ``power_auc`` averages over (see :class:`ScoringSettings`'s ``auc_k``)."""
        if auc_k != "median":
            return pixel_budget(auc_k, height, width)  # type: ignore[arg-type]
        sizes = self.smallest_sizes(AUC_POWER)
        # Classes that never reach the power count as twice the largest size; cap at the image.
        return int(min(self.ks[-1], max(1, round(float(np.median(sizes))))))

    def class_scores(
        self, score: str, maps: Optional[Tensor], sizes: List[float], fixed_k: int, auc_k: int
    ) -> np.ndarray:
        """The raw score of every class, on the scale the anomaly index is computed on.

        Args:
            score: ``"power_auc"``, ``"min_k"``, ``"power_at_k"`` or ``"mask_l1"``.
            maps: K x H x W maps (for ``"mask_l1"``; ``None`` for the other scores).
            sizes: each class's smallest size at the power threshold (for ``"min_k"``).
            fixed_k: the size of ``"power_at_k"``.
            auc_k: the largest size ``"power_auc"`` averages over.

        Returns:
            K scores: log-odds for ``"power_auc"``, powers for ``"power_at_k"``, logs of
            sizes or L1 norms for ``"min_k"`` and ``"mask_l1"``.

        Raises:
            ValueError: the table lacks entries the score needs.
        """
        table, ks = self.powers, self.ks
        if score == "power_auc":
            columns = [j for j, size in enumerate(ks) if size <= auc_k]
            raw = np.array([log_odds(table[row, columns], self.counts[row]).mean() for row in range(table.shape[0])])
        elif score == "min_k":
            # Sizes are compared on a log scale: natural pattern sizes spread multiplicatively.
            raw = np.log(sizes)
        elif score == "power_at_k":
            raw = table[:, ks.index(fixed_k)]
        elif maps is not None:
            raw = np.log(maps.sum((1, 2)).clamp(min=1e-6).cpu().double().numpy())
        else:
            raise ValueError("score='mask_l1' needs the maps.")
        if not np.all(np.isfinite(raw)):
            raise ValueError(
                f"the power table lacks the entries score={score!r} needs: scan with ScoringSettings(full_table=True)."
            )
        return raw

    def filled(self) -> PowerTable:
        """A copy whose unmeasured sizes take the power of the largest measured size below them.

        The scan stops measuring a class once its power reaches the thresholds; powers
        hardly fall with more pixels, so the last measured value stands in for the rest.
        Sizes below the first measured one stay NaN.

        Returns:
            The filled :class:`PowerTable`.
        """
        powers = np.array(self.powers, dtype=np.float64)
        for column in range(1, powers.shape[1]):
            missing = np.isnan(powers[:, column])
            powers[missing, column] = powers[missing, column - 1]
        return PowerTable(ks=list(self.ks), powers=powers, counts=list(self.counts))

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict; NaN powers are written as ``None``."""
        return {
            "ks": list(self.ks),
            "counts": list(self.counts),
            "powers": [[None if math.isnan(v) else float(v) for v in row] for row in np.asarray(self.powers)],
        }

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> PowerTable:
        """Rebuild a table from :meth:`to_dict`'s output.

        Args:
            data: the dict.

        Returns:
            The :class:`PowerTable`.
        """
        ks = [int(k) for k in data["ks"]]
        powers = np.array([[np.nan if v is None else v for v in row] for row in data["powers"]], dtype=np.float64)
        return cls(ks=ks, powers=powers.reshape(-1, len(ks)), counts=[int(c) for c in data["counts"]])


def shown_scores(score: str, raw: np.ndarray) -> List[float]:
    """Raw scores on the scale they are reported on: sizes and L1 norms leave the log scale."""
    shown = raw if score in ("power_auc", "power_at_k") else np.exp(raw)
    return [float(v) for v in shown]


def reference_raw(table: PowerTable, scoring: Any, height: int, width: int) -> np.ndarray:
    """A reference model's raw score of each class, on the scale the suspect's is compared on.

    The reference's table is filled where its scan stopped early (:meth:`PowerTable.filled`)
    and scored like the suspect's: the same score, power threshold and ``k``; ``power_auc``
    averages over the sizes up to where a typical class of the *reference* reaches a power
    of 0.5, so that each model is measured against its own typical class.

    Args:
        table: the reference's power table.
        scoring: the suspect's :class:`ScoringSettings` (``k`` in pixels).
        height: the image height.
        width: the image width.

    Returns:
        K raw scores.
    """
    filled = table.filled()
    auc_k = filled.auc_size("median", height, width)
    sizes = filled.smallest_sizes(scoring.power_threshold)
    return filled.class_scores(scoring.score, None, sizes, int(scoring.k), auc_k)


def measure_powers(
    model: Callable,
    maps: Tensor,
    values: Tensor,
    targets: Tensor,
    images: Tensor,
    labels: Tensor,
    ks: List[int],
    *,
    stop_at: Optional[float] = None,
    always: Collection[int] = (),
    max_images: int = 150,
    seed: int = 0,
    known: Optional[PowerTable] = None,
    batch_size: int = 1024,
    show_progress: bool = False,
) -> PowerTable:
    """Predictive power of every class's top-k pattern for each k (other-class images only).

    Sizes are evaluated in increasing order; with ``stop_at`` a class stops once its
    power reaches that value (later entries stay NaN), except for the sizes in
    ``always``. Entries of a ``known`` table are kept, so a second call fills in sizes
    found to be needed later. At most ``max_images`` other-class images (a seeded subset,
    the same in every call) are used per class, which bounds the cost at a precision of a
    few points.

    Returns:
        The :class:`PowerTable` (``known``, filled in, when given).
    """
    table = np.full((len(targets), len(ks)), np.nan) if known is None else known.powers
    counts = []
    generator = torch.Generator().manual_seed(seed)
    with torch.inference_mode():
        classes = tqdm(targets.tolist(), desc="Class pattern scan: measuring", disable=not show_progress)
        for row, target in enumerate(classes):
            others = held_out_others(images, labels, target, generator, max_images)
            counts.append(int(others.shape[0]))
            order = torch.argsort(maps[row].flatten(), descending=True, stable=True)
            reached = False
            for column, k in enumerate(ks):
                if not np.isnan(table[row, column]):
                    reached = reached or (stop_at is not None and table[row, column] >= stop_at)
                    continue
                if reached and k not in always:
                    continue
                mask = torch.zeros(order.numel(), dtype=torch.bool, device=maps.device)
                mask[order[:k]] = True
                stamped = torch.where(mask.view_as(maps[row]), values[row], others)
                hits = int((predict(model, stamped, batch_size=batch_size, who="scan") == target).sum())
                table[row, column] = hits / others.shape[0]
                reached = reached or (stop_at is not None and table[row, column] >= stop_at)
    if known is None:
        return PowerTable(ks=list(ks), powers=table, counts=counts)
    known.counts = counts
    return known


def held_out_others(images: Tensor, labels: Tensor, target: int, generator: torch.Generator, max_images: int) -> Tensor:
    """A seeded subset of at most ``max_images`` of ``images`` outside class ``target``.

    Draws one permutation from ``generator``: measurements that walk the classes in the same
    order with generators seeded alike see the same subsets.
    """
    return images[held_out_indices(labels, target, generator, max_images).to(images.device)]


def held_out_indices(labels: Tensor, target: int, generator: torch.Generator, max_images: int) -> Tensor:
    """The indices of :func:`held_out_others`' subset (the same draw from ``generator``)."""
    pool = torch.nonzero(labels != target).flatten()
    return pool[torch.randperm(pool.numel(), generator=generator)[:max_images]]


def min_k(powers: np.ndarray, ks: List[int], threshold: float) -> float:
    """Smallest k whose power reaches ``threshold``, interpolated on a log-k scale.

    The interpolation turns the discrete grid into a continuous score so that the MAD is
    not zero when several classes land on the same grid point. A class that never reaches
    the threshold gets twice the largest size.
    """
    above = np.flatnonzero(powers >= threshold)
    if above.size == 0:
        return 2.0 * ks[-1]
    j = int(above[0])
    if j == 0:
        return float(ks[0])
    p0, p1 = powers[j - 1], powers[j]
    t = (threshold - p0) / max(p1 - p0, 1e-12)
    return float(math.exp(math.log(ks[j - 1]) + t * (math.log(ks[j]) - math.log(ks[j - 1]))))


def log_odds(powers: np.ndarray, count: int) -> np.ndarray:
    """Log-odds of a share measured on ``count`` images, with half an image added to each side."""
    hits = np.asarray(powers, dtype=np.float64) * count
    return np.log((hits + 0.5) / (count - hits + 0.5))


def reference_spread(references: np.ndarray) -> float:
    """How much a class's score varies between clean models, as seen by a suspect compared with their mean.

    The standard deviation of each class's score over the ``n`` references, pooled over the
    classes (the root of the mean per-class variance), times ``sqrt(1 + 1/n)`` because the
    suspect is compared with the mean of only ``n`` references.

    Args:
        references: an n x K array (n >= 2) of the references' raw scores.

    Returns:
        The spread, on the scores' scale.
    """
    count = references.shape[0]
    return math.sqrt(float(references.var(axis=0, ddof=1).mean())) * math.sqrt(1.0 + 1.0 / count)

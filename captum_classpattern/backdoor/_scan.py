"""Backdoor scan with class patterns, and a per-image suspicion score.

:func:`scan` searches one class pattern per class (all classes in one batched
optimisation), scores each class by how easily small patterns make the model predict it,
and flags outliers with the MAD anomaly index of Neural Cleanse (METHOD.md §2).

The usual defender holds only clean images, none of which carries the trigger, so a
pattern whose values are copied from a clean canvas (the paper's search, available here as
``values="canvas"``) can only *select* canvas pixels: a white corner patch cannot be
expressed with the black corner pixels of a digit. :func:`scan` therefore learns the
pasted values too (``values="learned"``): a map ``m`` and values ``v`` in [0, 1] per class,
composite ``m * v + (1 - m) * x``, loss ``alpha * CE + (1 - alpha) * sum(m) / (H W / 2)``,
signed gradient steps as in the paper. In the last half of the steps the composite uses
the binarised map (``harden``), so that what is optimised is a real top-k stamp: with a
soft map the learned values act as a faint blend over the whole image that no top-k
stamp reproduces.

Default variant, chosen by measurement on development models that the benchmark does not
use (``benchmarks/bench_backdoor.py --variants``; numbers in ``notes/issue4.md``): learned
values started from grey, hardened map, and the score ``"power_auc"``: the mean log-odds
of the predictive power of the top-k patterns over k = 1 pixel up to the size at which a
typical (median) class reaches a power of 0.5. It uses the whole small-k end of the power
curve rather than one threshold crossing (``"min_k"``, noisier) or one size
(``"power_at_k"``: most classes sit at zero power there, their scores tie and the MAD
collapses to zero, so almost anything gets flagged); the log-odds keep differences between
weak classes visible.

What a clean-data scan cannot tell apart: a class with a *natural* backdoor, i.e. a
handful of learned pixels that flip most images to it without any poisoning, looks like a
poisoned class. How often that happens depends on the model more than on the score: on the
16 x 16 digits, CNNs with global average pooling (:class:`~captum_classpattern.SmallCNN`)
had such a class in 6 of 10 clean models, CNNs whose head sees positions
(:class:`~captum_classpattern.SpatialCNN`, like the BadNets and Neural Cleanse MNIST
models) in 1 of 10 (``benchmarks/bench_backdoor.py``; Neural Cleanse flagged 2 and 1 of
the same models). Such a flag is a true statement about the model (the pattern is a usable
trigger) and a false alarm only about poisoning.

The detection search stops at the fewest pixels that work, often 2 to 6 of a 3 x 3 patch.
For each flagged class a second search recovers the trigger as one compact region (its size
penalty also counts the map's total variation; ``trigger_smoothness``): on the benchmark's
held-out models its Jaccard index with the true patch was 0.38 on average (0.18 from the
detection map; Neural Cleanse 0.17). The training images that :func:`suspicion_scores`
flags carry the whole trigger, and their patterns recover it better (0.67).

:func:`suspicion_scores` is for a defender who holds the suspect training set: every
training image becomes the canvas of its own label's pattern (the paper's fixed-canvas
search via :class:`~captum_classpattern.ClassPattern`). A poisoned image carries the
trigger, so a pattern of a few of its pixels flips almost every other-class image; a
clean image's pattern of the same size flips few.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from .._utils import (
    call_model,
    check_choice,
    check_device,
    check_images,
    check_labels,
    check_positive_float,
    check_positive_int,
    evaluation_mode,
    expand_targets,
    num_classes_of,
)
from ..attr import ClassPattern, Pattern, SearchSchedule, make_search_set, pixel_budget, select_canvases, top_k_mask
from ..metrics import flag_outliers, trigger_jaccard

VALUE_MODES = ("learned", "canvas")
INITS = ("image", "grey")
SCORES = ("power_auc", "min_k", "power_at_k", "mask_l1")
# Which end of each score is suspicious: a backdoor needs a small pattern (low k, low L1)
# and patterns of a given size have unusual power (high).
DIRECTION = {"power_auc": "high", "min_k": "low", "power_at_k": "high", "mask_l1": "low"}
# power_auc's adaptive range ends where a typical class's pattern flips half the images.
AUC_POWER = 0.5


# ----------------------------------------------------------------------------- checks


def _check_model(model: Any) -> None:
    if not callable(model):
        raise TypeError(f"model must be a callable returning logits (e.g. an nn.Module), got {type(model).__name__}.")


# ----------------------------------------------------------------------------- flags


# ----------------------------------------------------------------------------- result


@dataclass
class ScanResult:
    """What :func:`scan` found.

    Attributes:
        classes: the scanned classes, in order; every per-class list follows it.
        scores: the score of each class (see ``score``): mean log-odds of the power for
            ``"power_auc"``, a pattern size in pixels for ``"min_k"``, a power for
            ``"power_at_k"``, the map's L1 norm for ``"mask_l1"``.
        anomaly_index: the MAD anomaly index of each class's score.
        flagged: flagged classes (one-sided outliers with index above the threshold),
            most anomalous first.
        patterns: the recovered :class:`~captum_classpattern.Pattern` of each class: its
            top-k pixels with the searched values, ``k`` the smallest evaluated size that
            reaches the power threshold (``k`` itself for ``score="power_at_k"``).
        powers: predictive power of each recovered pattern on the held-out images.
        maps: K x H x W learned maps (pixel importance of each class's pattern).
        values: K x C x H x W pasted values (learned, or the fixed canvases).
        score: the score used: ``"power_auc"``, ``"min_k"``, ``"power_at_k"`` or ``"mask_l1"``.
        direction: ``"low"`` or ``"high"``: which end of the score is suspicious.
        ks: the pattern sizes evaluated.
        power_table: K x len(ks) predictive powers (NaN where the scan stopped early:
            sizes above ``power_auc``'s range once the power threshold was reached).
        eval_counts: the number of held-out images each class's powers were measured on.
        trigger_maps: the recovered trigger of each flagged class (and of the class the
            Jaccard is measured on): an H x W map from a second search whose size penalty
            also counts the map's total variation (see :func:`scan`'s ``trigger_smoothness``).
        trigger_values: the pasted values C x H x W of those triggers.
        trigger_jaccard: Jaccard index between the recovered top-k trigger pixels (k =
            trigger area) and the true trigger mask, when one was given; ``None`` otherwise.
        jaccard_class: the class whose pattern ``trigger_jaccard`` was measured on.
        seconds: wall time of the scan.
        settings: the settings the scan ran with.
    """

    classes: List[int]
    scores: List[float]
    anomaly_index: List[float]
    flagged: List[int]
    patterns: List[Pattern]
    powers: List[float]
    maps: Tensor
    values: Tensor
    score: str
    direction: str
    ks: List[int]
    power_table: np.ndarray
    eval_counts: List[int] = field(default_factory=list)
    trigger_maps: Dict[int, Tensor] = field(default_factory=dict)
    trigger_values: Dict[int, Tensor] = field(default_factory=dict)
    trigger_jaccard: Optional[float] = None
    jaccard_class: Optional[int] = None
    seconds: float = 0.0
    settings: Dict[str, Any] = field(default_factory=dict)

    def most_suspicious(self) -> int:
        """The class with the largest anomaly index on the suspicious side."""
        values = np.asarray(self.scores)
        median = np.median(values)
        side = values < median if self.direction == "low" else values > median
        index = np.where(side, np.asarray(self.anomaly_index), -1.0)
        return self.classes[int(np.argmax(index))]

    def recovered_trigger(self, cls: int, k: Optional[int] = None) -> Pattern:
        """The recovered trigger of class ``cls`` as a pattern with its learned values.

        Args:
            cls: a class with a recovered trigger (a flagged class, or the Jaccard class).
            k: keep the top ``k`` pixels of the trigger map; by default the pixels the
                search selected (map >= 0.5).

        Raises:
            ValueError: no trigger was recovered for ``cls``.
        """
        if cls not in self.trigger_maps:
            raise ValueError(f"no trigger was recovered for class {cls}; recovered: {sorted(self.trigger_maps)} "
                             "(triggers are recovered for flagged classes and the trigger_target).")
        trigger_map, values = self.trigger_maps[cls], self.trigger_values[cls]
        mask = trigger_map >= 0.5 if k is None else top_k_mask(trigger_map, pixel_budget(k, *trigger_map.shape))
        return Pattern(mask, torch.where(mask, values, torch.zeros_like(values)))

    def jaccard(self, true_mask: Tensor, cls: int, source: str = "trigger") -> float:
        """Jaccard index of class ``cls``'s top-k pixels (k = mask area) with ``true_mask``.

        Args:
            true_mask: the true H x W trigger mask.
            cls: the class to compare.
            source: ``"trigger"`` (default): the recovered trigger map when ``cls`` has one,
                else the detection search's map; ``"search"``: always the detection map.

        Raises:
            ValueError: ``cls`` was not scanned, the mask does not fit the images, or an
                unknown ``source``.
        """
        check_choice(source, ("trigger", "search"), "source")
        if cls not in self.classes:
            raise ValueError(f"class {cls} was not scanned (scanned: {self.classes}).")
        if not isinstance(true_mask, Tensor) or tuple(true_mask.shape) != tuple(self.maps.shape[1:]):
            raise ValueError(f"true_mask must be an H x W tensor of shape {tuple(self.maps.shape[1:])}.")
        area = int(true_mask.bool().sum())
        if area == 0:
            raise ValueError("true_mask is empty.")
        if source == "trigger" and cls in self.trigger_maps:
            scores = self.trigger_maps[cls]
        else:
            scores = self.maps[self.classes.index(cls)]
        return trigger_jaccard(top_k_mask(scores.cpu(), area), true_mask)

    def rescore(self, score: str, *, power_threshold: Optional[float] = None, k: Optional[int] = None,
                auc_k: Union[int, float, str, None] = None, threshold: Optional[float] = None) -> "ScanResult":
        """The same search scored another way (no new search).

        Args:
            score: ``"power_auc"``, ``"min_k"``, ``"power_at_k"`` or ``"mask_l1"``.
            power_threshold: the power ``"min_k"`` asks for (default: the scan's).
            k: the size of ``"power_at_k"``, one of :attr:`ks` (default: the scan's).
            auc_k: the largest size ``"power_auc"`` averages over: pixels, a fraction of
                the image or ``"median"`` (default: the size the scan used).
            threshold: the anomaly-index threshold (default: the scan's).

        Returns:
            A new :class:`ScanResult` sharing this one's maps and values.

        Raises:
            ValueError: an unknown score, a ``k`` that was not evaluated, or powers the
                scan stopped computing early (scan with ``full_table=True``).
        """
        check_choice(score, SCORES, "score")
        settings = dict(self.settings)
        power_threshold = settings.get("power_threshold", 0.8) if power_threshold is None else power_threshold
        k = settings.get("k", self.ks[0]) if k is None else k
        height, width = self.maps.shape[-2:]
        auc_k = settings.get("auc_k", self.ks[0]) if auc_k is None else auc_k
        auc_k = _auc_size(self.power_table, self.ks, auc_k, height, width)
        threshold = settings.get("threshold", 2.0) if threshold is None else threshold
        if k not in self.ks:
            raise ValueError(f"k={k} was not evaluated; choose one of {self.ks}.")
        result = _assemble(self.classes, self.maps, self.values, self.ks, self.power_table, self.eval_counts,
                           score=score, power_threshold=power_threshold, fixed_k=k, auc_k=auc_k,
                           threshold=threshold)
        settings.update(score=score, power_threshold=power_threshold, k=k, auc_k=auc_k, threshold=threshold)
        result.settings = settings
        result.seconds = self.seconds
        # The triggers were recovered for this scan's flags; they are kept as they are.
        result.trigger_maps, result.trigger_values = dict(self.trigger_maps), dict(self.trigger_values)
        return result

    def as_dict(self) -> Dict[str, Any]:
        """A JSON-ready summary (no tensors)."""
        return {
            "classes": self.classes,
            "score": self.score,
            "direction": self.direction,
            "scores": [float(s) for s in self.scores],
            "anomaly_index": [float(a) for a in self.anomaly_index],
            "flagged": self.flagged,
            "pattern_sizes": [p.k for p in self.patterns],
            "powers": [float(p) for p in self.powers],
            "ks": self.ks,
            "power_table": np.asarray(self.power_table).round(4).tolist(),
            "trigger_classes": sorted(self.trigger_maps),
            "trigger_sizes": {str(c): int((m >= 0.5).sum()) for c, m in sorted(self.trigger_maps.items())},
            "trigger_jaccard": self.trigger_jaccard,
            "jaccard_class": self.jaccard_class,
            "seconds": round(self.seconds, 3),
            "settings": self.settings,
        }


# ----------------------------------------------------------------------------- search


def _pick_canvases(model, images, labels, classes, init) -> Tensor:
    if init == "grey":
        return torch.full((len(classes),) + tuple(images.shape[1:]), 0.5, dtype=images.dtype, device=images.device)
    return select_canvases(model, images, labels, classes, strategy="confident").to(images.device)


def _total_variation(maps: Tensor) -> Tensor:
    """Sum of absolute differences between 4-neighbour pixels of K x H x W maps."""
    return (maps[:, 1:, :] - maps[:, :-1, :]).abs().sum() + (maps[:, :, 1:] - maps[:, :, :-1]).abs().sum()


def _learn_patterns(model, canvases, targets, images, labels, *, learn_values, steps, batch_size, step_size,
                    value_step, alpha, harden, seed, show_progress, smoothness=0.0,
                    description="Class pattern scan") -> Tuple[Tensor, Tensor]:
    """Signed-gradient search of one map (and, if asked, one value image) per class.

    One model call per step holds the composites of every class; gradients are taken with
    ``torch.autograd.grad`` with respect to the map and values only, so the model's
    parameters never receive a ``.grad``.

    For the last ``harden`` share of the steps the composite uses the binarised map
    ``m >= 0.5`` (straight-through gradient). A soft map lets learned values act as a
    faint full-image blend that the top-k stamp cannot reproduce (measured: soft
    composites flipped 86-99% of images while their top-k stamps flipped 1-42%); the
    hard phase makes the searched composite a real top-k stamp.

    ``smoothness`` adds that multiple of the map's total variation to its size penalty,
    which favours one compact blob over scattered pixels (used to recover triggers).
    """
    device = canvases.device
    count, _, height, width = canvases.shape
    maps = torch.full((count, height, width), 0.5, device=device, dtype=canvases.dtype)
    values = canvases.detach().clone()
    search = make_search_set(images, labels, targets, tuple(canvases.shape[1:]), batch_size, seed)
    targets_dev = targets.to(device)
    half_area = height * width / 2.0
    hard_from = steps - int(round(harden * steps))
    progress = tqdm(total=steps, desc=description, disable=not show_progress)
    for step, (batch, active) in enumerate(search.steps(None, steps)):
        owner = batch.owner.to(device)
        rows = batch.images.to(device)
        counts = torch.bincount(owner, minlength=count).clamp(min=1).to(canvases.dtype)
        leaf_m = maps.detach().requires_grad_(True)
        leaf_v = values.detach().requires_grad_(learn_values)
        with torch.enable_grad():
            used = leaf_m
            if step >= hard_from:
                used = (leaf_m >= 0.5).to(leaf_m.dtype) + leaf_m - leaf_m.detach()
            keep = used[owner].unsqueeze(1)
            composite = keep * leaf_v[owner] + (1 - keep) * rows
            logits = call_model(model, (composite,))
            # Per-class mean cross-entropy, so a class's loss does not depend on its neighbours.
            ce = (F.cross_entropy(logits, targets_dev[owner], reduction="none") / counts[owner]).sum()
            size = leaf_m.sum()
            if smoothness:
                size = size + smoothness * _total_variation(leaf_m)
            loss = alpha * ce + (1 - alpha) * size / half_area
            wrt = [leaf_m, leaf_v] if learn_values else [leaf_m]
            grads = torch.autograd.grad(loss, wrt)
        live = active.to(device).view(-1, 1, 1)
        maps = torch.where(live, (maps - step_size * grads[0].sign()).clamp(0.0, 1.0), maps)
        if learn_values:
            values = torch.where(live.unsqueeze(1), (values - value_step * grads[1].sign()).clamp(0.0, 1.0), values)
        progress.update(1)
    progress.close()
    return maps.detach(), values.detach()


def _budget_grid(height: int, width: int, max_fraction: float) -> List[int]:
    """Pattern sizes 1, 2, 3, 4, 5, 6, 7, 8, 10, ... (about 15% apart) up to ``max_fraction``."""
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


def _power_table(model, maps, values, targets, images, labels, ks, *, stop_at=None, always=(), max_images=300,
                 seed=0, table=None, batch_size=1024) -> Tuple[np.ndarray, List[int]]:
    """Predictive power of every class's top-k pattern for each k (other-class images only).

    Sizes are evaluated in increasing order; with ``stop_at`` a class stops once its
    power reaches that value (later entries stay NaN), except for the sizes in
    ``always``. Entries of a given ``table`` that are already known are kept, so a second
    call fills in sizes found to be needed later. At most ``max_images`` other-class
    images (a seeded subset, the same in every call) are used per class, which bounds the
    cost at a precision of a few points.

    Returns:
        ``(table, counts)``: K x len(ks) powers and the number of images per class.
    """
    table = np.full((len(targets), len(ks)), np.nan) if table is None else table
    counts = []
    generator = torch.Generator().manual_seed(seed)
    with torch.inference_mode():
        for row, target in enumerate(targets.tolist()):
            pool = torch.nonzero(labels != target).flatten()
            pool = pool[torch.randperm(pool.numel(), generator=generator)[:max_images]]
            others = images[pool.to(images.device)]
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
                hits = 0
                for start in range(0, stamped.shape[0], batch_size):
                    predicted = call_model(model, (stamped[start:start + batch_size],)).argmax(1)
                    hits += int((predicted == target).sum())
                table[row, column] = hits / others.shape[0]
                reached = reached or (stop_at is not None and table[row, column] >= stop_at)
    return table, counts


def _auc_size(table: np.ndarray, ks: List[int], auc_k: Union[int, float, str], height: int, width: int) -> int:
    """The largest size ``power_auc`` averages over (see :func:`scan`'s ``auc_k``)."""
    if auc_k != "median":
        return pixel_budget(auc_k, height, width)  # type: ignore[arg-type]
    sizes = [_min_k(table[row], ks, AUC_POWER) for row in range(table.shape[0])]
    # Classes that never reach the power count as twice the largest size; cap at the image.
    return int(min(ks[-1], max(1, round(float(np.median(sizes))))))


def _log_odds(powers: np.ndarray, count: int) -> np.ndarray:
    """Log-odds of a share measured on ``count`` images, with half an image added to each side."""
    hits = np.asarray(powers, dtype=np.float64) * count
    return np.log((hits + 0.5) / (count - hits + 0.5))


def _min_k(powers: np.ndarray, ks: List[int], threshold: float) -> float:
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


def _second_set(model, images, labels, other, other_labels, name: str, check_shape: bool = False):
    """Validate an optional second image set, defaulting to ``(images, labels)``; check devices."""
    if other is None:
        if other_labels is not None:
            raise ValueError(f"{name[:-len('images')]}labels given without {name}.")
        other, other_labels = images, labels
    else:
        check_images(other, name)
        other_labels = check_labels(other, other_labels, f"{name}'")
        if check_shape and tuple(other.shape[1:]) != tuple(images.shape[1:]):
            raise ValueError(f"{name} are {tuple(other.shape[1:])} per image but images are "
                             f"{tuple(images.shape[1:])}.")
    check_device(model, images, "images")
    check_device(model, other, name)
    return other, other_labels


def scan(
    model: Callable,
    images: Tensor,
    labels: Tensor,
    *,
    eval_images: Optional[Tensor] = None,
    eval_labels: Optional[Tensor] = None,
    classes: Optional[Sequence[int]] = None,
    values: str = "learned",
    init: str = "grey",
    score: str = "power_auc",
    power_threshold: float = 0.8,
    k: Union[int, float] = 0.02,
    auc_k: Union[int, float, str] = "median",
    max_fraction: float = 1.0,
    max_eval: int = 300,
    harden: float = 0.5,
    trigger_smoothness: float = 2.0,
    trigger_alpha: float = 0.5,
    full_table: bool = False,
    steps: int = 150,
    batch_size: int = 24,
    step_size: float = 0.05,
    value_step: float = 0.05,
    alpha: float = 0.2,
    threshold: float = 2.0,
    trigger_mask: Optional[Tensor] = None,
    trigger_target: Optional[int] = None,
    seed: int = 0,
    show_progress: bool = False,
) -> ScanResult:
    """Scan a classifier for backdoors with one class pattern per class.

    Args:
        model: the classifier, returning N x num_classes logits for images in [0, 1]. Its
            mode, parameters, buffers and gradients are left as found.
        images: clean images N x C x H x W in [0, 1] the patterns are searched on (no
            trigger needed: a defender's held-out set).
        labels: their labels.
        eval_images: held-out images the patterns' predictive power is measured on;
            defaults to ``images``.
        eval_labels: their labels.
        classes: the classes to scan (default: every output class; at least three).
        values: ``"learned"`` (default: the pasted values are optimised too) or
            ``"canvas"`` (the paper's search: values copied from a clean canvas).
        init: the starting values: ``"grey"`` (default, 0.5 everywhere; only with
            ``values="learned"``) or ``"image"`` (the class's most confidently classified
            image).
        score: ``"power_auc"`` (default: mean log-odds of the predictive power of the
            top-k patterns over sizes ``1 .. auc_k`` pixels, high is suspicious),
            ``"min_k"`` (smallest size reaching ``power_threshold``, log scale, low is
            suspicious), ``"power_at_k"`` (power at size ``k``, high is suspicious) or
            ``"mask_l1"`` (L1 norm of the learned map, log scale, low is suspicious).
        power_threshold: the power ``"min_k"`` and the recovered patterns ask for.
        k: the pattern size of ``"power_at_k"`` (pixels, or a fraction of the image).
        auc_k: the largest pattern size ``"power_auc"`` averages over: pixels, a
            fraction of the image, or ``"median"`` (default): the median over classes of
            the smallest size whose power reaches 0.5, i.e. where a typical class starts to
            flip images. A fixed range leaves the weak classes at zero power, where their
            scores tie and the MAD collapses.
        max_fraction: the largest pattern size evaluated, as a fraction of the image.
        max_eval: at most this many held-out images per class measure the power.
        harden: share of the steps (at the end) that use the binarised map, so that the
            searched composite is a real top-k stamp (0 keeps the map soft throughout).
        trigger_smoothness: after detection, the trigger of each flagged class (and of
            ``trigger_target``) is searched again with this multiple of the map's total
            variation added to its size penalty, so that it comes out as one compact region
            instead of the 2-6 scattered pixels the model minimally obeys (0 skips the
            second search; only with ``values="learned"``).
        trigger_alpha: the weight of the cross-entropy in that second search (a larger
            value than ``alpha`` keeps pushing the region to where the model responds most
            once it already works). Both defaults were chosen on development models
            (``notes/issue4.md``).
        full_table: measure every size for every class (slower); needed to
            :meth:`~ScanResult.rescore` with scores that use large sizes.
        steps: optimisation steps (all classes step together).
        batch_size: other-class images per class per step.
        step_size: signed step on the map.
        value_step: signed step on the values (``values="learned"``).
        alpha: weight of the cross-entropy; ``1 - alpha`` weighs the map's size.
        threshold: anomaly-index threshold for flagging (Neural Cleanse: 2).
        trigger_mask: the true H x W trigger mask, when known (evaluation): the result's
            ``trigger_jaccard`` compares it with the recovered top pixels.
        trigger_target: the class the Jaccard is measured on (default: the most
            suspicious class).
        seed: seeds the order of the search images.
        show_progress: show a tqdm progress bar.

    Returns:
        A :class:`ScanResult`.

    Raises:
        TypeError: a model that is not callable, or images/labels of the wrong type.
        ValueError: bad shapes, pixels outside [0, 1], fewer than three classes, a class
            without images, an unknown option or a non-positive setting.

    Example:
        >>> result = scan(model, clean.images, clean.labels, eval_images=held.images,
        ...               eval_labels=held.labels)
        >>> result.flagged          # e.g. [0]: class 0 looks backdoored
        >>> result.patterns[0].stamp(images)
    """
    started = time.perf_counter()
    _check_model(model)
    check_images(images, "images")
    labels = check_labels(images, labels, "images'")
    eval_images, eval_labels = _second_set(model, images, labels, eval_images, eval_labels, "eval_images",
                                           check_shape=True)
    check_choice(values, VALUE_MODES, "values")
    check_choice(init, INITS, "init")
    check_choice(score, SCORES, "score")
    if values == "canvas" and init == "grey":
        raise ValueError("a fixed grey canvas carries no class information: use init='image' with values='canvas'.")
    steps = check_positive_int(steps, "steps")
    batch_size = check_positive_int(batch_size, "batch_size")
    for name, value in (("step_size", step_size), ("value_step", value_step), ("threshold", threshold)):
        check_positive_float(value, name)
    if not 0.0 < power_threshold <= 1.0:
        raise ValueError(f"power_threshold must lie in (0, 1], got {power_threshold!r}.")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha!r}.")
    if not 0.0 < max_fraction <= 1.0:
        raise ValueError(f"max_fraction must lie in (0, 1], got {max_fraction!r}.")
    if isinstance(trigger_smoothness, bool) or not isinstance(trigger_smoothness, (int, float)) \
            or not 0.0 <= trigger_smoothness < math.inf:
        raise ValueError(f"trigger_smoothness must be a finite number >= 0, got {trigger_smoothness!r}.")
    if not 0.0 <= trigger_alpha <= 1.0:
        raise ValueError(f"trigger_alpha must lie in [0, 1], got {trigger_alpha!r}.")
    height, width = images.shape[-2:]
    fixed_k = pixel_budget(k, height, width)
    if auc_k != "median":
        pixel_budget(auc_k, height, width)  # checked now, used after the search
    if trigger_mask is not None:
        if not isinstance(trigger_mask, Tensor) or tuple(trigger_mask.shape) != (height, width):
            raise ValueError(f"trigger_mask must be an H x W tensor of shape {(height, width)}.")
        if not bool(trigger_mask.bool().any()):
            raise ValueError("trigger_mask is empty.")

    with evaluation_mode(model, "scan"):
        num_classes = num_classes_of(model, images[:1])
        if classes is None:
            classes = list(range(num_classes))
        targets = expand_targets(list(classes), len(classes), num_classes)
        if targets.numel() < 3:
            raise ValueError("scan needs at least three classes: the anomaly index compares each class with the rest.")
        if targets.unique().numel() != targets.numel():
            raise ValueError(f"classes must not repeat, got {targets.tolist()}.")
        if trigger_target is not None and int(trigger_target) not in targets.tolist():
            raise ValueError(f"trigger_target {trigger_target} is not among the scanned classes {targets.tolist()}.")
        for target in targets.tolist():
            if not bool((labels == target).any()) and init == "image":
                raise ValueError(f"class {target} has no images to take a canvas from: pass init='grey'.")
            if not bool((eval_labels != target).any()):
                raise ValueError(f"no held-out images outside class {target} to measure the pattern on.")
        canvases = _pick_canvases(model, images, labels, targets.tolist(), init)
        maps, learned = _learn_patterns(
            model, canvases, targets, images, labels, learn_values=(values == "learned"), steps=steps,
            batch_size=batch_size, step_size=step_size, value_step=value_step, alpha=alpha, harden=harden,
            seed=seed, show_progress=show_progress,
        )
        ks = sorted(set(_budget_grid(height, width, max_fraction)) | {fixed_k})
        measure = dict(max_images=max_eval, seed=seed)
        eval_labels = eval_labels.to(eval_images.device)
        # Each class needs its sizes up to where its power reaches both thresholds ...
        table, counts = _power_table(model, maps, learned, targets, eval_images, eval_labels, ks,
                                     stop_at=None if full_table else max(power_threshold, AUC_POWER),
                                     always={fixed_k}, **measure)
        # ... and power_auc needs every size up to its range, known only now.
        auc_size = _auc_size(table, ks, auc_k, height, width)
        table, counts = _power_table(model, maps, learned, targets, eval_images, eval_labels, ks, stop_at=0.0,
                                     always={size for size in ks if size <= auc_size}, table=table, **measure)

        result = _assemble(targets.tolist(), maps, learned, ks, table, counts, score=score,
                           power_threshold=power_threshold, fixed_k=fixed_k, auc_k=auc_size, threshold=threshold)
        jaccard_class = None
        if trigger_mask is not None:
            jaccard_class = result.most_suspicious() if trigger_target is None else int(trigger_target)
        wanted = list(dict.fromkeys(result.flagged + ([] if jaccard_class is None else [jaccard_class])))
        if wanted and trigger_smoothness > 0 and values == "learned":
            # A second, smaller search for the suspicious classes only: the detection search
            # stops at the fewest pixels that work; a total-variation penalty makes the
            # recovered trigger one compact region, which is what an attacker stamps.
            recover = torch.tensor(wanted, dtype=targets.dtype)
            trigger_maps, trigger_values = _learn_patterns(
                model, _pick_canvases(model, images, labels, wanted, init), recover, images, labels,
                learn_values=True, steps=steps, batch_size=batch_size, step_size=step_size, value_step=value_step,
                alpha=trigger_alpha, harden=harden, seed=seed, show_progress=show_progress,
                smoothness=trigger_smoothness,
                description="Trigger recovery")
            result.trigger_maps = {cls: trigger_maps[row] for row, cls in enumerate(wanted)}
            result.trigger_values = {cls: trigger_values[row] for row, cls in enumerate(wanted)}

    result.settings = {"values": values, "init": init, "score": score, "power_threshold": power_threshold,
                       "k": fixed_k, "auc_k": auc_size, "steps": steps, "batch_size": batch_size, "alpha": alpha,
                       "harden": harden, "trigger_smoothness": trigger_smoothness, "trigger_alpha": trigger_alpha,
                       "threshold": threshold, "seed": seed}
    if jaccard_class is not None:
        result.trigger_jaccard = result.jaccard(trigger_mask.cpu(), jaccard_class)
        result.jaccard_class = jaccard_class
    result.seconds = time.perf_counter() - started
    return result


def _assemble(classes: List[int], maps: Tensor, values: Tensor, ks: List[int], table: np.ndarray,
              counts: List[int], *, score: str, power_threshold: float, fixed_k: int, auc_k: int,
              threshold: float) -> ScanResult:
    """Scores, anomaly indices, flags and recovered patterns from one search's maps and powers."""
    sizes = [_min_k(table[row], ks, power_threshold) for row in range(table.shape[0])]
    if score == "power_auc":
        columns = [j for j, size in enumerate(ks) if size <= auc_k]
        raw = np.array([_log_odds(table[row, columns], counts[row]).mean() for row in range(table.shape[0])])
    elif score == "min_k":
        # Sizes are compared on a log scale: natural pattern sizes spread multiplicatively.
        raw = np.log(sizes)
    elif score == "power_at_k":
        raw = table[:, ks.index(fixed_k)]
    else:
        raw = np.log(maps.sum((1, 2)).clamp(min=1e-6).cpu().double().numpy())
    if not np.all(np.isfinite(raw)):
        raise ValueError(f"the power table lacks the entries score={score!r} needs: scan with full_table=True.")
    direction = DIRECTION[score]
    index, flagged_rows = flag_outliers(raw, direction, threshold)
    # The recovered pattern: the smallest evaluated size reaching the power threshold (the
    # largest size if none does), or the fixed size for score="power_at_k".
    if score == "power_at_k":
        pattern_sizes = [fixed_k] * len(sizes)
    else:
        pattern_sizes = [next((k for k in ks if k >= size), ks[-1]) for size in sizes]
    patterns, powers = [], []
    for row, size in enumerate(pattern_sizes):
        mask = top_k_mask(maps[row], size)
        patterns.append(Pattern(mask, torch.where(mask, values[row], torch.zeros_like(values[row]))))
        powers.append(float(table[row, ks.index(size)]))
    shown = {"power_auc": raw, "power_at_k": raw}.get(score, np.exp(raw))
    return ScanResult(
        classes=list(classes),
        scores=[float(v) for v in shown],
        anomaly_index=[float(a) for a in index],
        flagged=[classes[r] for r in flagged_rows],
        patterns=patterns,
        powers=powers,
        maps=maps,
        values=values,
        score=score,
        direction=direction,
        ks=list(ks),
        power_table=table,
        eval_counts=list(counts),
    )


# ----------------------------------------------------------------------------- per image


@dataclass
class SuspicionResult:
    """Per-image suspicion scores from :func:`suspicion_scores`.

    Attributes:
        indices: indices (into the scored data set) of the scored images.
        scores: predictive power of each scored image's top-k pattern.
        threshold: the power above which an image is flagged.
        flagged: indices of the flagged images (sorted).
        k: the pattern size in pixels.
        maps: the searched map of each scored image (scored x H x W, CPU).
        seconds: wall time.
    """

    indices: Tensor
    scores: Tensor
    threshold: float
    flagged: Tensor
    k: int
    maps: Optional[Tensor] = None
    seconds: float = 0.0

    def recovered_trigger(self, k: int) -> Tensor:
        """The ``k`` pixels the flagged images' patterns use most: an estimate of the trigger.

        Args:
            k: number of pixels (e.g. the true trigger's area when measuring recovery).

        Returns:
            An H x W bool mask: the top-k pixels of the flagged images' mean map.

        Raises:
            ValueError: nothing was flagged, or the maps were not kept.
        """
        if self.maps is None or self.flagged.numel() == 0:
            raise ValueError("no flagged images to estimate a trigger from.")
        maps = self.maps[torch.isin(self.indices, self.flagged)].float()
        height, width = maps.shape[-2:]
        # How often each pixel is among an image's own top-k pixels (the pixels that made
        # it suspicious); the mean map (< 1) only breaks ties between equal counts.
        own = torch.stack([top_k_mask(one, self.k) for one in maps]).float().sum(0)
        return top_k_mask(own + maps.mean(0), pixel_budget(k, height, width))

    def precision_recall(self, poisoned_indices: Union[Tensor, Sequence[int]]) -> Tuple[float, float]:
        """Precision and recall of the flagged images against the truly poisoned ones.

        Args:
            poisoned_indices: the indices recorded by
                :class:`~captum_classpattern.PoisonedDataset`.

        Returns:
            ``(precision, recall)``; precision is 1.0 when nothing is flagged and recall
            is 1.0 when nothing was poisoned.
        """
        truth = set(torch.as_tensor(poisoned_indices).reshape(-1).tolist())
        found = set(self.flagged.tolist())
        hits = len(truth & found)
        precision = hits / len(found) if found else 1.0
        recall = hits / len(truth) if truth else 1.0
        return precision, recall


def suspicion_scores(
    model: Callable,
    images: Tensor,
    labels: Tensor,
    *,
    classes: Optional[Sequence[int]] = None,
    reference_images: Optional[Tensor] = None,
    reference_labels: Optional[Tensor] = None,
    k: Union[int, float] = 0.015,
    threshold: float = 0.8,
    steps: int = 10,
    step_size: float = 0.1,
    batch_size: int = 8,
    chunk: int = 128,
    max_reference: int = 128,
    seed: int = 0,
    show_progress: bool = False,
) -> SuspicionResult:
    """Score every image of a (suspect) data set by the power of its own class pattern.

    Each image is the canvas of a pattern for its own label, searched with
    :class:`~captum_classpattern.ClassPattern` (many canvases per batched call). Its top-k
    pixels are stamped on other-class reference images; the share classified as the
    image's label is its score. A poisoned image carries the trigger, so a tiny pattern
    of it flips nearly everything; a clean image's does not.

    Args:
        model: the classifier (left as found).
        images: the data set to score, N x C x H x W in [0, 1] (e.g. the training set).
        labels: its labels (as recorded, i.e. poisoned items carry the target label).
        classes: score only images with these labels (e.g. the classes :func:`scan`
            flagged); default every image.
        reference_images: other-class images to search on and measure power on; default
            the data set itself.
        reference_labels: their labels.
        k: pattern size (pixels, or a fraction of the image; the default 1.5% is 4 of 256
            pixels: a fraction of a 3 x 3 trigger, too few for a clean image to flip most others).
        threshold: images whose score reaches this power are flagged.
        steps: search steps per canvas (short: a trigger is found fast).
        step_size: the first signed step on the map (annealed to a tenth of it).
        batch_size: reference images per canvas per step.
        chunk: canvases searched per batched call (bounds memory).
        max_reference: reference images per class the power is measured on (a seeded
            random subset, to bound the cost).
        seed: seeds the search and the subset.
        show_progress: show a tqdm progress bar over chunks.

    Returns:
        A :class:`SuspicionResult`.

    Raises:
        TypeError: a model that is not callable, or images/labels of the wrong type.
        ValueError: bad shapes or settings, or no reference image outside a class.

    Example:
        >>> poisoned = PoisonedDataset((x, y), PatchTrigger(), target=0)
        >>> train_x, train_y = poisoned.tensors()
        >>> result = suspicion_scores(model, train_x, train_y)
        >>> result.precision_recall(poisoned.poisoned_indices)
    """
    started = time.perf_counter()
    _check_model(model)
    check_images(images, "images")
    labels = check_labels(images, labels, "images'")
    reference_images, reference_labels = _second_set(model, images, labels, reference_images, reference_labels,
                                                     "reference_images")
    steps = check_positive_int(steps, "steps")
    batch_size = check_positive_int(batch_size, "batch_size")
    chunk = check_positive_int(chunk, "chunk")
    check_positive_float(step_size, "step_size")
    max_reference = check_positive_int(max_reference, "max_reference")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must lie in (0, 1], got {threshold!r}.")
    height, width = images.shape[-2:]
    count = pixel_budget(k, height, width)
    if classes is None:
        selected = torch.arange(labels.numel())
    else:
        wanted = torch.as_tensor(list(classes), dtype=torch.long)
        selected = torch.nonzero(torch.isin(labels, wanted)).flatten()
    generator = torch.Generator().manual_seed(seed)
    reference_of: Dict[int, Tensor] = {}
    for cls in labels[selected].unique().tolist():
        pool = torch.nonzero(reference_labels != cls).flatten()
        if pool.numel() == 0:
            raise ValueError(f"no reference images outside class {cls}.")
        pick = pool[torch.randperm(pool.numel(), generator=generator)[:max_reference]]
        reference_of[cls] = reference_images[pick.to(reference_images.device)]

    explainer = ClassPattern(model)
    # Signed steps annealed from step_size to a tenth of it, kept short: a trigger on the
    # canvas wins within a few steps, while longer searches saturate more pixels at 1.0 and
    # the top-k then picks among ties. Every field is spelled out so that a change of the
    # package's default schedule does not change these scores.
    schedule = SearchSchedule(optimizer="sign", step_size=step_size, final_step_size=step_size / 10, alpha=0.2,
                              init=0.5, batch_size=batch_size, steps=steps, epochs=None)
    scores = torch.zeros(selected.numel())
    kept_maps = torch.zeros(selected.numel(), height, width)
    with evaluation_mode(model, "suspicion_scores"):
        for begin in tqdm(range(0, selected.numel(), chunk), desc="Per-image suspicion", disable=not show_progress):
            rows = selected[begin:begin + chunk]
            canvases = images[rows.to(images.device)]
            targets = labels[rows]
            maps = explainer.attribute(canvases, target=targets, baselines=reference_images,
                                       baseline_labels=reference_labels, schedule=schedule, seed=seed)
            with torch.inference_mode():
                for j in range(rows.numel()):
                    kept_maps[begin + j] = maps[j, 0].cpu()
                    mask = top_k_mask(maps[j, 0], count)
                    cls = int(targets[j])
                    stamped = torch.where(mask, canvases[j], reference_of[cls])
                    predicted = call_model(model, (stamped,)).argmax(1)
                    scores[begin + j] = (predicted == cls).float().mean().cpu()
    flagged = selected[scores >= threshold].sort().values
    return SuspicionResult(indices=selected, scores=scores, threshold=float(threshold), flagged=flagged, k=count,
                           maps=kept_maps, seconds=time.perf_counter() - started)

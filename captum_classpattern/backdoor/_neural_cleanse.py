"""Neural Cleanse (Wang et al., S&P 2019): the trigger reverse-engineering baseline.

For every class ``c`` it learns a free mask ``m`` (H x W) and pattern ``p`` (C x H x W),
both through ``(tanh(.) + 1) / 2`` so they stay in [0, 1], such that ``(1 - m) x + m p`` is
classified as ``c`` for clean images ``x`` of other classes. The loss is
``CE + lambda * |m|_1`` with Adam (betas (0.5, 0.9)). ``lambda`` starts at 0; once the
attack succeeds for ``patience`` epochs it is set to ``init_cost``, then multiplied by
``cost_multiplier`` after ``patience`` successful epochs or divided by its power 1.5 after
``patience`` failing ones, as in the authors' code. The smallest mask that succeeded is
kept; its L1 norm is the class's score, and low outliers of the MAD anomaly index are
flagged.

All classes are optimised together: each step sends the composites of every class
through the model once. Classes do not interact (disjoint parameters, per-class loss
and ``lambda``), so the result equals separate runs with the same batches.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from .._utils import channels_last_inputs, check_device, check_images, check_labels, check_seed, evaluation_mode
from ..attr import search_batches, stamp_loss, top_k_mask
from ..metrics import flag_outliers, trigger_jaccard
from ._checks import check_model, check_settings, check_trigger_mask, scanned_classes
from ._settings import NeuralCleanseSettings

_DEFAULT_NEURAL_CLEANSE = NeuralCleanseSettings()


@dataclass
class NeuralCleanseResult:
    """What :func:`neural_cleanse` found.

    Attributes:
        classes: the scanned classes; every per-class list follows this order.
        norms: L1 norm of each class's smallest successful mask (of its final mask when
            the attack never reached the success threshold, see ``succeeded``).
        anomaly_index: MAD anomaly index of each norm.
        flagged: classes whose norm is a low outlier (index above the threshold), most
            anomalous first.
        masks: K x H x W masks in [0, 1].
        patterns: K x C x H x W patterns in [0, 1].
        succeeded: whether each class's attack reached the success threshold.
        attack_success: the attack success of each kept mask during the search.
        trigger_jaccard: Jaccard index between the top-k mask pixels (k = trigger area)
            of ``jaccard_class`` and the true trigger mask, when one was given.
        jaccard_class: the class ``trigger_jaccard`` was measured on.
        seconds: wall time.
        settings: the settings the search ran with.
        seed: the seed it ran with.
    """

    classes: List[int]
    norms: List[float]
    anomaly_index: List[float]
    flagged: List[int]
    masks: Tensor
    patterns: Tensor
    succeeded: List[bool]
    attack_success: List[float]
    trigger_jaccard: Optional[float] = None
    jaccard_class: Optional[int] = None
    seconds: float = 0.0
    settings: NeuralCleanseSettings = field(default_factory=NeuralCleanseSettings)
    seed: int = 0

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict: the summary first, then the masks and patterns as nested lists.

        :meth:`from_dict` rebuilds the result (tensors on the CPU).
        """
        return {
            "classes": list(self.classes),
            "norms": [float(n) for n in self.norms],
            "anomaly_index": [float(a) for a in self.anomaly_index],
            "flagged": list(self.flagged),
            "succeeded": list(self.succeeded),
            "attack_success": [float(a) for a in self.attack_success],
            "trigger_jaccard": self.trigger_jaccard,
            "jaccard_class": self.jaccard_class,
            "seconds": self.seconds,
            "settings": self.settings.to_dict(),
            "seed": self.seed,
            "dtype": str(self.masks.dtype).replace("torch.", ""),
            "masks": self.masks.tolist(),
            "patterns": self.patterns.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> NeuralCleanseResult:
        """Rebuild a result from :meth:`to_dict`'s output.

        Args:
            data: the dict (e.g. read back from JSON).

        Returns:
            The :class:`NeuralCleanseResult`.
        """
        dtype = getattr(torch, data.get("dtype", "float32"))
        return cls(
            classes=[int(c) for c in data["classes"]],
            norms=[float(n) for n in data["norms"]],
            anomaly_index=[float(a) for a in data["anomaly_index"]],
            flagged=[int(c) for c in data["flagged"]],
            masks=torch.tensor(data["masks"], dtype=dtype),
            patterns=torch.tensor(data["patterns"], dtype=dtype),
            succeeded=[bool(s) for s in data["succeeded"]],
            attack_success=[float(a) for a in data["attack_success"]],
            trigger_jaccard=data.get("trigger_jaccard"),
            jaccard_class=data.get("jaccard_class"),
            seconds=float(data.get("seconds", 0.0)),
            settings=NeuralCleanseSettings.from_dict(data.get("settings", {})),
            seed=int(data.get("seed", 0)),
        )


def _atanh_of(values: Tensor) -> Tensor:
    # Inverse of (tanh(t) + 1) / 2, clipped away from 0 and 1 so it stays finite.
    return torch.atanh((values * 2 - 1).clamp(-0.999, 0.999))


def _unit(param: Tensor) -> Tensor:
    return (torch.tanh(param) + 1) / 2


class _TriggerState:
    """Every class's mask and pattern, their optimiser, ``lambda`` and the smallest successful mask so far.

    :meth:`step` takes one optimisation step on a batch and tallies the attack success;
    :meth:`end_epoch` keeps the masks that improved and moves ``lambda``
    (:meth:`adjust_cost`).
    """

    def __init__(
        self,
        model: Callable,
        targets: Tensor,
        image_shape: Tuple[int, ...],
        settings: NeuralCleanseSettings,
        generator: torch.Generator,
        device: torch.device,
    ) -> None:
        count, (height, width) = targets.numel(), image_shape[-2:]
        self.model, self.settings, self.device = model, settings, device
        self.targets = targets.to(device)
        # Random initial mask and pattern, as in the authors' code.
        self.mask_param = _atanh_of(torch.rand(count, height, width, generator=generator)).to(device)
        self.pattern_param = _atanh_of(torch.rand(count, *image_shape, generator=generator)).to(device)
        self.mask_param.requires_grad_(True)
        self.pattern_param.requires_grad_(True)
        self.optimizer = torch.optim.Adam([self.mask_param, self.pattern_param], lr=settings.lr, betas=(0.5, 0.9))
        self.cost = torch.zeros(count, device=device)
        self.best_norm = torch.full((count,), float("inf"), device=device)
        self.best_mask = torch.zeros(count, height, width, device=device)
        self.best_pattern = torch.zeros(count, *image_shape, device=device)
        self.best_success = torch.zeros(count, device=device)
        # Epochs in a row: successful at lambda = 0, successful and failing at lambda > 0.
        self.set_counter = torch.zeros(count, dtype=torch.long)
        self.up_counter = torch.zeros(count, dtype=torch.long)
        self.down_counter = torch.zeros(count, dtype=torch.long)
        # This epoch's tallies.
        self.hits = torch.zeros(count, device=device)
        self.seen = torch.zeros(count, device=device)
        self.norm_sum = torch.zeros(count, device=device)

    def step(self, images: Tensor, owner: Tensor) -> None:
        """One Adam step of every class on its rows (``owner``: the class row of each image); tally hits and norms."""
        count = self.targets.numel()
        owner = owner.to(self.device)
        rows = images.to(self.device)
        per_class = torch.bincount(owner, minlength=count).clamp(min=1).to(rows.dtype)
        with torch.enable_grad():
            mask = _unit(self.mask_param)
            logits, ce = stamp_loss(self.model, rows, owner, mask, _unit(self.pattern_param), self.targets, per_class)
            norms = mask.sum((1, 2))
            loss = ce + (self.cost * norms).sum()
            # Gradients of our own tensors only: the model's parameters get no .grad.
            grads = torch.autograd.grad(loss, [self.mask_param, self.pattern_param])
        self.mask_param.grad, self.pattern_param.grad = grads
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            self.hits.index_add_(0, owner, (logits.argmax(1) == self.targets[owner]).to(self.hits.dtype))
            self.seen.index_add_(0, owner, torch.ones(owner.numel(), dtype=logits.dtype, device=self.device))
            self.norm_sum += norms.detach()

    @torch.no_grad()
    def end_epoch(self) -> None:
        """Keep each class's mask if it succeeded with a smaller mean norm; move ``lambda``; reset the tallies."""
        success = self.hits / self.seen.clamp(min=1)
        mean_norm = self.norm_sum / self.settings.steps_per_epoch
        ok = success >= self.settings.success_threshold
        better = ok & (mean_norm < self.best_norm)
        current_mask, current_pattern = self.current()
        self.best_norm = torch.where(better, mean_norm, self.best_norm)
        self.best_mask[better] = current_mask[better]
        self.best_pattern[better] = current_pattern[better]
        self.best_success = torch.where(better, success, self.best_success)
        self.adjust_cost(ok)
        self.hits.zero_()
        self.seen.zero_()
        self.norm_sum.zero_()

    @torch.no_grad()
    def adjust_cost(self, succeeded: Tensor) -> None:
        """Move each class's ``lambda`` after an epoch: ``succeeded`` says whose attack reached the threshold."""
        settings = self.settings
        ok = succeeded.cpu()
        zero = (self.cost == 0).cpu()
        # lambda = 0: wait for `patience` successful epochs, then start at init_cost.
        self.set_counter = torch.where(zero & ok, self.set_counter + 1, torch.zeros_like(self.set_counter))
        start = zero & (self.set_counter >= settings.patience)
        # lambda > 0: move it up after `patience` successes, down after `patience` failures.
        self.up_counter = torch.where(~zero & ok, self.up_counter + 1, torch.zeros_like(self.up_counter))
        self.down_counter = torch.where(~zero & ~ok, self.down_counter + 1, torch.zeros_like(self.down_counter))
        raise_cost = (self.up_counter >= settings.patience).to(self.device)
        lower_cost = (self.down_counter >= settings.patience).to(self.device)
        cost = torch.where(start.to(self.device), torch.full_like(self.cost, settings.init_cost), self.cost)
        cost = torch.where(raise_cost, cost * settings.cost_multiplier, cost)
        self.cost = torch.where(lower_cost, cost / settings.cost_multiplier**1.5, cost)
        self.up_counter[raise_cost.cpu()] = 0
        self.down_counter[lower_cost.cpu()] = 0

    def current(self) -> Tuple[Tensor, Tensor]:
        """The current masks and patterns, detached."""
        return _unit(self.mask_param).detach(), _unit(self.pattern_param).detach()

    def outcome(self) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(masks, patterns, norms, succeeded)``: the smallest successful mask of each class, else its last."""
        succeeded = torch.isfinite(self.best_norm)
        final_mask, final_pattern = self.current()
        keep = succeeded.view(-1, 1, 1)
        masks = torch.where(keep, self.best_mask, final_mask)
        patterns = torch.where(keep.unsqueeze(1), self.best_pattern, final_pattern)
        norms = torch.where(succeeded, self.best_norm, final_mask.sum((1, 2)))
        return masks, patterns, norms, succeeded


def neural_cleanse(
    model: Callable,
    images: Tensor,
    labels: Tensor,
    settings: NeuralCleanseSettings = _DEFAULT_NEURAL_CLEANSE,
    *,
    classes: Optional[Sequence[int]] = None,
    trigger_mask: Optional[Tensor] = None,
    trigger_target: Optional[int] = None,
    seed: int = 0,
    show_progress: bool = False,
) -> NeuralCleanseResult:
    """Reverse-engineer a trigger for every class and flag outliers, as Neural Cleanse does.

    Args:
        model: the classifier (mode, parameters, buffers and gradients left as found).
        images: clean images N x C x H x W in [0, 1].
        labels: their labels (a class's own images are not used for its trigger).
        settings: the optimisation and flagging settings (:class:`NeuralCleanseSettings`).
        classes: classes to scan (default every output class; at least three).
        trigger_mask: the true trigger's H x W mask, for the Jaccard index.
        trigger_target: the class the Jaccard is measured on (default: the class with
            the smallest norm).
        seed: seeds the initial mask and pattern and the batches.
        show_progress: show a tqdm progress bar.

    Returns:
        A :class:`NeuralCleanseResult`.

    Raises:
        TypeError: a model that is not callable, settings of the wrong type, or
            images/labels of the wrong type.
        ValueError: bad shapes, fewer than three classes, or a ``trigger_target`` that
            is not scanned.

    Example:
        >>> result = neural_cleanse(model, clean.images, clean.labels)
        >>> result.flagged, result.norms
    """
    started = time.perf_counter()
    seed = check_seed(seed)
    check_model(model)
    check_settings(settings, NeuralCleanseSettings, "settings")
    check_images(images, "images")
    labels = check_labels(images, labels, "images'")
    check_device(model, images, "images")
    check_trigger_mask(trigger_mask, *images.shape[-2:])

    with evaluation_mode(model, "neural_cleanse"):
        model = channels_last_inputs(model)
        targets = scanned_classes(model, images, classes, "neural_cleanse", [(labels, "labels")])
        class_list = targets.tolist()
        if trigger_target is not None and int(trigger_target) not in class_list:
            raise ValueError(f"trigger_target {trigger_target} was not scanned (scanned: {class_list}).")
        state = _TriggerState(
            model, targets, tuple(images.shape[1:]), settings, torch.Generator().manual_seed(seed), images.device
        )
        batches = search_batches(images, labels, targets, settings.batch_size, settings.steps, seed)
        progress = tqdm(total=settings.steps, desc="Neural Cleanse", disable=not show_progress)
        for step, (rows, owner) in enumerate(batches):
            state.step(rows, owner)
            progress.update(1)
            if (step + 1) % settings.steps_per_epoch == 0:
                state.end_epoch()
        progress.close()

    masks, patterns, norm_tensor, succeeded = state.outcome()
    norms = norm_tensor.cpu().double().numpy()
    index, flagged_rows = flag_outliers(norms.tolist(), "low", settings.threshold)
    result = NeuralCleanseResult(
        classes=class_list,
        norms=[float(n) for n in norms],
        anomaly_index=[float(a) for a in index],
        flagged=[class_list[r] for r in flagged_rows],
        masks=masks,
        patterns=patterns,
        succeeded=[bool(s) for s in succeeded.cpu()],
        attack_success=[float(s) for s in state.best_success.cpu()],
        settings=settings,
        seed=seed,
    )
    if trigger_mask is not None:
        cls = class_list[int(np.argmin(norms))] if trigger_target is None else int(trigger_target)
        recovered = top_k_mask(masks[class_list.index(cls)].cpu(), int(trigger_mask.bool().sum()))
        result.trigger_jaccard = trigger_jaccard(recovered, trigger_mask)
        result.jaccard_class = cls
    result.seconds = time.perf_counter() - started
    return result

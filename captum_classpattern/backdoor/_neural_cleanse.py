"""Neural Cleanse (Wang et al., S&P 2019): the trigger reverse-engineering baseline.

For every class ``c`` it learns a free mask ``m`` (H x W) and pattern ``p`` (C x H x W),
both through ``(tanh(.) + 1) / 2`` so they stay in [0, 1], such that ``(1 - m) x + m p`` is
classified as ``c`` for clean images ``x`` of other classes. The loss is
``CE + lambda * |m|_1`` with Adam (lr 0.1, betas (0.5, 0.9)). ``lambda`` starts at 0; once
the attack succeeds (>= 99%) for ``patience`` epochs it is set to ``init_cost`` and then
multiplied by 1.5 after ``patience`` successful epochs or divided by ``1.5 ** 1.5`` after
``patience`` failing ones, as in the authors' code. The smallest mask that succeeded is
kept; its L1 norm is the class's score, and a low outlier (MAD anomaly index > 2) is
flagged (METHOD.md §2).

All classes are optimised together: each step sends the composites of every class
through the model once. Classes do not interact (disjoint parameters, per-class loss
and ``lambda``), so the result equals separate runs with the same batches.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from .._utils import (
    call_model,
    check_device,
    check_images,
    check_labels,
    check_positive_float,
    check_positive_int,
    evaluation_mode,
    expand_targets,
    num_classes_of,
)
from ..attr import make_search_set, top_k_mask
from ..metrics import flag_outliers, trigger_jaccard


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
    settings: Dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> Dict[str, Any]:
        """A JSON-ready summary (no tensors)."""
        return {
            "classes": self.classes,
            "norms": [round(float(n), 4) for n in self.norms],
            "anomaly_index": [float(a) for a in self.anomaly_index],
            "flagged": self.flagged,
            "succeeded": self.succeeded,
            "attack_success": [round(float(a), 4) for a in self.attack_success],
            "trigger_jaccard": self.trigger_jaccard,
            "jaccard_class": self.jaccard_class,
            "seconds": round(self.seconds, 3),
            "settings": self.settings,
        }


def _atanh_of(values: Tensor) -> Tensor:
    # Inverse of (tanh(t) + 1) / 2, clipped away from 0 and 1 so it stays finite.
    return torch.atanh((values * 2 - 1).clamp(-0.999, 0.999))


def neural_cleanse(
    model: Callable,
    images: Tensor,
    labels: Tensor,
    *,
    classes: Optional[Sequence[int]] = None,
    steps: int = 300,
    steps_per_epoch: int = 10,
    batch_size: int = 32,
    lr: float = 0.1,
    init_cost: float = 1e-3,
    cost_multiplier: float = 1.5,
    patience: int = 5,
    success_threshold: float = 0.99,
    threshold: float = 2.0,
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
        classes: classes to scan (default every output class; at least three).
        steps: optimisation steps (all classes step together).
        steps_per_epoch: steps per "epoch", the unit at which the attack success is
            averaged and ``lambda`` adjusted.
        batch_size: other-class images per class per step.
        lr: Adam's learning rate.
        init_cost: the first non-zero ``lambda``.
        cost_multiplier: ``lambda`` is multiplied by this to go up, divided by its
            power 1.5 to go down.
        patience: epochs of success (or failure) before ``lambda`` moves.
        success_threshold: attack success a mask must reach to be kept.
        threshold: anomaly-index threshold for flagging.
        trigger_mask: the true trigger's H x W mask, for the Jaccard index.
        trigger_target: the class the Jaccard is measured on (default: the class with
            the smallest norm).
        seed: seeds the initial mask and pattern and the batches.
        show_progress: show a tqdm progress bar.

    Returns:
        A :class:`NeuralCleanseResult`.

    Raises:
        TypeError: a model that is not callable, or images/labels of the wrong type.
        ValueError: bad shapes or settings, or fewer than three classes.

    Example:
        >>> result = neural_cleanse(model, clean.images, clean.labels)
        >>> result.flagged, result.norms
    """
    started = time.perf_counter()
    if not callable(model):
        raise TypeError(f"model must be a callable returning logits, got {type(model).__name__}.")
    check_images(images, "images")
    labels = check_labels(images, labels, "images'")
    check_device(model, images, "images")
    steps = check_positive_int(steps, "steps")
    steps_per_epoch = check_positive_int(steps_per_epoch, "steps_per_epoch")
    batch_size = check_positive_int(batch_size, "batch_size")
    patience = check_positive_int(patience, "patience")
    for name, value in (("lr", lr), ("init_cost", init_cost), ("threshold", threshold)):
        check_positive_float(value, name)
    if check_positive_float(cost_multiplier, "cost_multiplier") <= 1.0:
        raise ValueError(f"cost_multiplier must exceed 1, got {cost_multiplier}.")
    if not 0.0 < success_threshold <= 1.0:
        raise ValueError(f"success_threshold must lie in (0, 1], got {success_threshold!r}.")
    height, width = images.shape[-2:]
    bad_mask = not isinstance(trigger_mask, Tensor) or tuple(trigger_mask.shape) != (height, width)
    if trigger_mask is not None and bad_mask:
        raise ValueError(f"trigger_mask must be an H x W tensor of shape {(height, width)}.")

    device = images.device
    with evaluation_mode(model, "neural_cleanse"):
        num_classes = num_classes_of(model, images[:1])
        wanted = list(range(num_classes)) if classes is None else list(classes)
        targets = expand_targets(wanted, len(wanted), num_classes)
        if targets.numel() < 3:
            raise ValueError("neural_cleanse needs at least three classes to compare.")
        if targets.unique().numel() != targets.numel():
            raise ValueError(f"classes must not repeat, got {targets.tolist()}.")
        count = targets.numel()
        generator = torch.Generator().manual_seed(seed)
        # Random initial mask and pattern, as in the authors' code.
        mask_param = _atanh_of(torch.rand(count, height, width, generator=generator)).to(device)
        pattern_param = _atanh_of(torch.rand(count, *images.shape[1:], generator=generator)).to(device)
        mask_param.requires_grad_(True)
        pattern_param.requires_grad_(True)
        optimizer = torch.optim.Adam([mask_param, pattern_param], lr=lr, betas=(0.5, 0.9))
        search = make_search_set(images, labels, targets, tuple(images.shape[1:]), batch_size, seed)
        targets_dev = targets.to(device)

        cost = torch.zeros(count, device=device)
        best_norm = torch.full((count,), float("inf"), device=device)
        best_mask = torch.zeros(count, height, width, device=device)
        best_pattern = torch.zeros(count, *images.shape[1:], device=device)
        best_success = torch.zeros(count, device=device)
        set_counter = torch.zeros(count, dtype=torch.long)
        up_counter = torch.zeros(count, dtype=torch.long)
        down_counter = torch.zeros(count, dtype=torch.long)
        hits = torch.zeros(count, device=device)
        seen = torch.zeros(count, device=device)
        norm_sum = torch.zeros(count, device=device)
        progress = tqdm(total=steps, desc="Neural Cleanse", disable=not show_progress)
        for step, (batch, active) in enumerate(search.steps(None, steps)):
            owner = batch.owner.to(device)
            rows = batch.images.to(device)
            per_class = torch.bincount(owner, minlength=count).clamp(min=1).to(rows.dtype)
            with torch.enable_grad():
                mask = (torch.tanh(mask_param) + 1) / 2
                pattern = (torch.tanh(pattern_param) + 1) / 2
                keep = mask[owner].unsqueeze(1)
                composite = (1 - keep) * rows + keep * pattern[owner]
                logits = call_model(model, (composite,))
                ce = F.cross_entropy(logits, targets_dev[owner], reduction="none")
                norms = mask.sum((1, 2))
                loss = (torch.zeros(count, device=device).index_add(0, owner, ce) / per_class + cost * norms).sum()
                # Gradients of our own tensors only: the model's parameters get no .grad.
                grads = torch.autograd.grad(loss, [mask_param, pattern_param])
            mask_param.grad, pattern_param.grad = grads
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            with torch.no_grad():
                hits.index_add_(0, owner, (logits.argmax(1) == targets_dev[owner]).to(hits.dtype))
                seen.index_add_(0, owner, torch.ones_like(ce))
                norm_sum += norms.detach()
            progress.update(1)
            if (step + 1) % steps_per_epoch:
                continue
            with torch.no_grad():
                success = hits / seen.clamp(min=1)
                mean_norm = norm_sum / steps_per_epoch
                ok = success >= success_threshold
                better = ok & (mean_norm < best_norm)
                current_mask = ((torch.tanh(mask_param) + 1) / 2).detach()
                current_pattern = ((torch.tanh(pattern_param) + 1) / 2).detach()
                best_norm = torch.where(better, mean_norm, best_norm)
                best_mask[better] = current_mask[better]
                best_pattern[better] = current_pattern[better]
                best_success = torch.where(better, success, best_success)
                ok_cpu = ok.cpu()
                zero = (cost == 0).cpu()
                # lambda = 0: wait for `patience` successful epochs, then start at init_cost.
                set_counter = torch.where(zero & ok_cpu, set_counter + 1, torch.zeros_like(set_counter))
                start = zero & (set_counter >= patience)
                # lambda > 0: move it up after `patience` successes, down after `patience` failures.
                up_counter = torch.where(~zero & ok_cpu, up_counter + 1, torch.zeros_like(up_counter))
                down_counter = torch.where(~zero & ~ok_cpu, down_counter + 1, torch.zeros_like(down_counter))
                raise_cost = (up_counter >= patience).to(device)
                lower_cost = (down_counter >= patience).to(device)
                cost = torch.where(start.to(device), torch.full_like(cost, init_cost), cost)
                cost = torch.where(raise_cost, cost * cost_multiplier, cost)
                cost = torch.where(lower_cost, cost / cost_multiplier ** 1.5, cost)
                up_counter[raise_cost.cpu()] = 0
                down_counter[lower_cost.cpu()] = 0
                hits.zero_()
                seen.zero_()
                norm_sum.zero_()
        progress.close()

    succeeded = torch.isfinite(best_norm)
    final_mask = ((torch.tanh(mask_param) + 1) / 2).detach()
    final_pattern = ((torch.tanh(pattern_param) + 1) / 2).detach()
    keep = succeeded.view(-1, 1, 1)
    masks = torch.where(keep, best_mask, final_mask)
    patterns = torch.where(keep.unsqueeze(1), best_pattern, final_pattern)
    norms = torch.where(succeeded, best_norm, final_mask.sum((1, 2))).cpu().double().numpy()
    index, flagged_rows = flag_outliers(norms, "low", threshold)
    class_list = targets.tolist()
    result = NeuralCleanseResult(
        classes=class_list,
        norms=[float(n) for n in norms],
        anomaly_index=[float(a) for a in index],
        flagged=[class_list[r] for r in flagged_rows],
        masks=masks,
        patterns=patterns,
        succeeded=[bool(s) for s in succeeded.cpu()],
        attack_success=[float(s) for s in best_success.cpu()],
        settings={"steps": steps, "steps_per_epoch": steps_per_epoch, "batch_size": batch_size, "lr": lr,
                  "init_cost": init_cost, "cost_multiplier": cost_multiplier, "patience": patience,
                  "success_threshold": success_threshold, "threshold": threshold, "seed": seed},
    )
    if trigger_mask is not None:
        cls = class_list[int(np.argmin(norms))] if trigger_target is None else int(trigger_target)
        if cls not in class_list:
            raise ValueError(f"trigger_target {cls} was not scanned.")
        area = int(trigger_mask.bool().sum())
        if area == 0:
            raise ValueError("trigger_mask is empty.")
        recovered = top_k_mask(masks[class_list.index(cls)].cpu(), area)
        result.trigger_jaccard = trigger_jaccard(recovered, trigger_mask)
        result.jaccard_class = cls
    result.seconds = time.perf_counter() - started
    return result

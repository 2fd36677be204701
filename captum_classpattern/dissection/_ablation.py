"""Unit ablation: which units does a class need, and which carry a class pattern?

The classifier half of Bau et al. (PNAS 2020), METHOD.md §4: a unit is removed by zeroing
its channel at the layer's output; units are ranked for a class by how much that class's
balanced accuracy drops when each is removed alone; removing a class's top-k units is then
compared with removing all the others, and with removing k random units. The link to class
patterns (METHOD.md §1): the units that a class pattern drives when it is stamped on
other-class images, and how much of the pattern's predictive power they carry.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._utils import evaluation_mode
from ._hooks import LayerSpec, _LayerTap, _model_device, _resolve_layer

Units = Union[int, Sequence[int], Tensor]


def _unit_index(units: Units, width: Optional[int]) -> Tensor:
    """Validate ``units`` and return them as a 1-d int64 tensor."""
    if isinstance(units, Tensor):
        if units.is_floating_point() or units.dim() > 1:
            raise TypeError("units must be an int, a sequence of ints or a 1-d integer tensor.")
        index = units.reshape(-1).long().cpu()
    elif isinstance(units, (int, np.integer)) and not isinstance(units, bool):
        index = torch.tensor([int(units)])
    else:
        try:
            values = [int(u) for u in units]  # type: ignore[union-attr]
        except (TypeError, ValueError):
            raise TypeError("units must be an int, a sequence of ints or a 1-d integer tensor.") from None
        index = torch.tensor(values, dtype=torch.long)
    if index.numel() and int(index.min()) < 0:
        raise ValueError(f"units must be non-negative channel indices, got {index.tolist()}.")
    if width is not None and index.numel() and int(index.max()) >= width:
        raise ValueError(
            f"unit {int(index.max())} is out of range: the layer has {width} units (0..{width - 1})."
        )
    return index


def _declared_width(module: nn.Module) -> Optional[int]:
    """The output width a module declares (Conv, Linear, BatchNorm), if any."""
    for attribute in ("out_channels", "out_features", "num_features"):
        value = getattr(module, attribute, None)
        if isinstance(value, int):
            return value
    return None


def _keep_factors(output: Tensor, keep: Tensor) -> Tensor:
    """Multiply channel dim 1 of ``output`` by ``keep`` (G x C: one row per replica)."""
    if not isinstance(output, Tensor) or output.dim() < 2:
        raise TypeError("ablation needs a layer whose output is one tensor N x C (x ...); units are channels.")
    if keep.shape[1] != output.shape[1]:
        raise ValueError(
            f"the layer has {output.shape[1]} units but units up to {keep.shape[1] - 1} were asked for; "
            f"choose units in 0..{output.shape[1] - 1}."
        )
    groups = keep.shape[0]
    factors = keep.to(output.device, output.dtype).repeat_interleave(output.shape[0] // groups, 0)
    return output * factors.view(*factors.shape, *([1] * (output.dim() - 2)))


@contextlib.contextmanager
def ablate_units(model: nn.Module, layer: LayerSpec, units: Units) -> Iterator[List[int]]:
    """Zero the chosen channels of ``layer``'s output while the context is open.

    A forward hook returns the output with the channels set to zero (a new tensor; the
    layer's own output is not modified in place). The hook is removed on exit, also when
    the block raises.

    Args:
        model: the network.
        layer: the layer (module or dotted name); channel dim 1 of its output is ablated.
        units: channel indices (an int, a sequence or a 1-d integer tensor).

    Yields:
        The ablated units as a list of ints.

    Raises:
        ValueError: a negative unit, or one beyond the layer's width (checked up front for
            Conv/Linear/BatchNorm layers, else at the first forward pass).
        TypeError: units of the wrong type.

    Example:
        >>> with ablate_units(model, "features.relu4", [3, 17]):
        ...     logits = model(images)
    """
    _, module = _resolve_layer(model, layer)
    index = _unit_index(units, _declared_width(module))

    def hook(_module: nn.Module, _inputs: Any, output: Tensor) -> Tensor:
        if not isinstance(output, Tensor) or output.dim() < 2:
            raise TypeError("ablation needs a layer whose output is one tensor N x C (x ...); units are channels.")
        if index.numel() and int(index.max()) >= output.shape[1]:
            raise ValueError(f"unit {int(index.max())} is out of range: the layer has {output.shape[1]} units.")
        return output.index_fill(1, index.to(output.device), 0)

    handle = module.register_forward_hook(hook)
    try:
        yield index.tolist()
    finally:
        handle.remove()


def _check_labelled(images: Tensor, labels: Tensor, num_classes: Optional[int] = None) -> Tensor:
    if not isinstance(images, Tensor) or images.dim() < 2:
        raise ValueError("images must be a tensor N x C x H x W.")
    labels = torch.as_tensor(labels).reshape(-1).long().cpu()
    if labels.numel() != images.shape[0]:
        raise ValueError(f"got {labels.numel()} labels for {images.shape[0]} images.")
    if labels.numel() == 0:
        raise ValueError("images is empty: pass at least one labelled image.")
    if num_classes is not None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}.")
        if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
            raise ValueError(f"labels must lie in 0..{num_classes - 1}.")
    return labels


def _balanced_from_predictions(predictions: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """(recall + true-negative rate) / 2 per class, one-vs-rest; NaN where undefined."""
    confusion = torch.bincount(labels * num_classes + predictions.clamp(0, num_classes - 1),
                               minlength=num_classes**2).view(num_classes, num_classes).double()
    hits = confusion.diagonal()
    positives = confusion.sum(1)
    predicted = confusion.sum(0)
    negatives = confusion.sum() - positives
    recall = hits / positives
    true_negative_rate = (negatives - (predicted - hits)) / negatives
    return (recall + true_negative_rate) / 2


def _head_input(model: nn.Module, module: nn.Module, name: str, batch: Tensor, head: Callable[[Tensor], Tensor],
                check: bool) -> Tensor:
    """The layer's output for ``batch``; on the first chunk, check that ``head`` finishes the model."""
    if not check:
        with _LayerTap(module, name) as tap:
            return tap.run(model, batch)
    captured: Dict[str, Tensor] = {}

    def hook(_module: nn.Module, _inputs: Any, output: Tensor) -> None:
        captured.setdefault("output", output.clone())  # later in-place ops must not change it

    handle = module.register_forward_hook(hook)
    try:
        logits = model(batch)
    finally:
        handle.remove()
    if "output" not in captured:
        raise ValueError(f"layer {name!r} did not run during the forward pass; pick a layer the model uses.")
    rebuilt = head(captured["output"])
    if not (isinstance(rebuilt, Tensor) and rebuilt.shape == logits.shape
            and torch.allclose(rebuilt.float(), logits.float(), rtol=1e-4, atol=1e-4)):
        raise ValueError(
            "head(layer output) does not reproduce model(images): head must be the rest of the network after the "
            "layer, e.g. nn.Sequential(model.pool, model.flatten, model.fc); or pass head=None."
        )
    return captured["output"]


def _predictions(model: nn.Module, module: nn.Module, name: str, images: Tensor, labels: Tensor,
                 ablations: Sequence[Tensor], width: int, device: torch.device, batch_size: int,
                 head: Optional[Callable[[Tensor], Tensor]] = None, show_progress: bool = False,
                 desc: str = "Unit ablation") -> Tuple[Tensor, Tensor]:
    """Top-1 predictions and log-probabilities of the true labels with each set of units removed.

    Both are len(ablations) x N. Several ablations share one model call: the image chunk is
    repeated once per ablation and a different set of channels is zeroed in each copy, so a
    call holds about ``batch_size`` images however few images there are. With ``head`` the
    layer's output is computed once per chunk and only ``head`` runs per ablation.
    """
    count = images.shape[0]
    chunk = min(count, batch_size)
    group = max(1, batch_size // chunk)
    keeps = []
    for first in range(0, len(ablations), group):
        keep = torch.ones(len(ablations[first:first + group]), width)
        for row, units in enumerate(ablations[first:first + group]):
            keep[row, units] = 0.0
        keeps.append(keep.to(device))
    predictions = torch.empty(len(ablations), count, dtype=torch.long)
    log_probs = torch.empty(len(ablations), count, dtype=torch.float64)
    current: Dict[str, Tensor] = {}

    def hook(_module: nn.Module, _inputs: Any, output: Tensor) -> Tensor:
        return _keep_factors(output, current["keep"])

    progress = tqdm(total=len(keeps) * -(-count // chunk), desc=desc, disable=not show_progress, leave=False)
    handle = module.register_forward_hook(hook) if head is None else None
    try:
        with evaluation_mode(model, "unit ablation"), torch.inference_mode():
            for start in range(0, count, chunk):
                batch = images[start:start + chunk].to(device)
                target = labels[start:start + chunk].to(device)
                features = None if head is None else _head_input(model, module, name, batch, head, start == 0)
                row = 0
                for keep in keeps:
                    if features is None:
                        current["keep"] = keep
                        logits = model(batch.repeat(keep.shape[0], *([1] * (batch.dim() - 1))))
                    else:
                        stacked = features.repeat(keep.shape[0], *([1] * (features.dim() - 1)))
                        logits = head(_keep_factors(stacked, keep))  # type: ignore[misc]
                    logits = logits.view(keep.shape[0], batch.shape[0], -1).double()
                    log_prob = logits.log_softmax(2).gather(2, target[None, :, None].expand(keep.shape[0], -1, 1))
                    predictions[row:row + keep.shape[0], start:start + batch.shape[0]] = logits.argmax(2).cpu()
                    log_probs[row:row + keep.shape[0], start:start + batch.shape[0]] = log_prob[..., 0].cpu()
                    row += keep.shape[0]
                    progress.update()
    finally:
        if handle is not None:
            handle.remove()
        progress.close()
    return predictions, log_probs


def _layer_width(model: nn.Module, module: nn.Module, name: str, images: Tensor, device: torch.device) -> int:
    """Number of units of ``module``: declared, or seen on one image."""
    width = _declared_width(module)
    if width is not None:
        return width
    with evaluation_mode(model, "unit ablation"), _LayerTap(module, name) as tap, torch.inference_mode():
        output = tap.run(model, images[:1].to(device))
    if not isinstance(output, Tensor) or output.dim() < 2:
        raise TypeError(f"layer {name!r} must output one tensor N x C (x ...) to ablate its units.")
    return int(output.shape[1])


def balanced_accuracy_per_class(model: nn.Module, images: Tensor, labels: Tensor, num_classes: int, *,
                                batch_size: int = 256, device: Optional[Union[str, torch.device]] = None) -> Tensor:
    """Balanced accuracy of each class, one-vs-rest from top-1 predictions.

    For class ``c``: ``(recall + true-negative rate) / 2``, where recall is the share of
    class-``c`` images predicted ``c`` and the true-negative rate the share of the other
    images not predicted ``c``. 0.5 is chance; 1 is perfect.

    Args:
        model: the classifier (left in the mode it was in).
        images: N x C x H x W images.
        labels: N class labels.
        num_classes: number of classes.
        batch_size: images per model call.
        device: where to run; default the model's device.

    Returns:
        A float64 tensor of length ``num_classes``; NaN for a class with no images (or no
        images of other classes).

    Raises:
        ValueError: labels that do not fit the images or ``num_classes``.

    Example:
        >>> balanced_accuracy_per_class(model, images, labels, 5).mean()
    """
    labels = _check_labelled(images, labels, num_classes)
    predictions = []
    with evaluation_mode(model, "balanced_accuracy_per_class"), torch.inference_mode():
        for start in range(0, images.shape[0], batch_size):
            batch = images[start:start + batch_size].to(_model_device(model, device))
            predictions.append(model(batch).argmax(1).cpu())
    return _balanced_from_predictions(torch.cat(predictions), labels, num_classes)


@dataclass
class UnitRanking:
    """How much each class's balanced accuracy drops when each unit is removed alone.

    Attributes:
        baseline: balanced accuracy per class with no unit removed (length K).
        drops: U x K, ``baseline - balanced accuracy with unit u removed``.
        log_prob_drops: U x K, drop of the mean log-probability that the images of each
            class get for their own class; breaks the ties of ``drops``, which are frequent
            when removing one unit flips no prediction of a small evaluation set.
        units: the units that were evaluated (rows of ``drops``).
        num_units: width of the layer.
    """

    baseline: np.ndarray
    drops: np.ndarray
    log_prob_drops: np.ndarray
    units: List[int]
    num_units: int

    def order(self, target: int) -> List[int]:
        """All evaluated units, most damaging to class ``target`` first.

        Sorted by balanced-accuracy drop, then by log-probability drop, then by unit index.
        """
        positions = np.lexsort((np.asarray(self.units), -self.log_prob_drops[:, target], -self.drops[:, target]))
        return [self.units[i] for i in positions]

    def top(self, target: int, k: int) -> List[int]:
        """The ``k`` units whose removal hurts class ``target`` most.

        Raises:
            ValueError: ``k`` exceeds the number of evaluated units.
        """
        if not 0 <= k <= len(self.units):
            raise ValueError(f"k must lie in 0..{len(self.units)}, got {k}.")
        return self.order(target)[:k]


def rank_units_for_class(model: nn.Module, layer: LayerSpec, images: Tensor, labels: Tensor, num_classes: int, *,
                         units: Optional[Sequence[int]] = None, batch_size: int = 256,
                         head: Optional[Callable[[Tensor], Tensor]] = None,
                         device: Optional[Union[str, torch.device]] = None,
                         show_progress: bool = False) -> UnitRanking:
    """Rank the units of ``layer`` for every class by the damage their removal does.

    Each unit is removed alone (its channel zeroed) and the images are evaluated once; the
    balanced accuracy of all classes comes from that one evaluation. Several single-unit
    ablations share each model call (the images repeated, a different unit zeroed in each
    copy), so small evaluation sets still fill ``batch_size``.

    Args:
        model: the classifier (left as found).
        layer: the layer whose units are ranked (module or dotted name).
        images: held-out images N x C x H x W.
        labels: their class labels.
        num_classes: number of classes.
        units: units to evaluate (default all).
        batch_size: images per model call.
        head: optional, the rest of the network after ``layer`` as a callable from the
            layer's output to logits (e.g. ``nn.Sequential(model.pool, model.flatten,
            model.fc)``). The layer's output is then computed once per chunk of images and
            only ``head`` runs per ablation: much faster for late layers. The first chunk
            checks that ``head`` reproduces the model's logits.
        device: where to run; default the model's device.
        show_progress: show a tqdm progress bar.

    Returns:
        A :class:`UnitRanking`; ``ranking.top(c, 20)`` are class ``c``'s 20 top units.

    Raises:
        ValueError: units out of range, labels that do not fit, a ``head`` that does not
            finish the model.

    Example:
        >>> ranking = rank_units_for_class(model, "features.relu4", images, labels, 5)
        >>> ranking.top(2, 20)
    """
    name, module = _resolve_layer(model, layer)
    labels = _check_labelled(images, labels, num_classes)
    run_on = _model_device(model, device)
    width = _layer_width(model, module, name, images, run_on)
    chosen = list(range(width)) if units is None else _unit_index(units, width).tolist()
    ablations = [torch.empty(0, dtype=torch.long)] + [torch.tensor([u]) for u in chosen]
    predictions, log_probs = _predictions(model, module, name, images, labels, ablations, width, run_on,
                                          batch_size, head, show_progress, "Ranking units")
    scores = torch.stack([_balanced_from_predictions(p, labels, num_classes) for p in predictions]).numpy()
    per_class = torch.zeros(len(ablations), num_classes, dtype=torch.float64)
    per_class.index_add_(1, labels, log_probs)
    per_class /= torch.bincount(labels, minlength=num_classes).clamp(min=1)
    log_prob = per_class.numpy()
    return UnitRanking(baseline=scores[0], drops=scores[0][None, :] - scores[1:],
                       log_prob_drops=log_prob[0][None, :] - log_prob[1:], units=chosen, num_units=width)


@dataclass
class AblationCurves:
    """Balanced accuracy of each class as its top-k units, the others, or k random units go.

    Attributes:
        ks: the numbers of units.
        classes: the classes (rows).
        baseline: balanced accuracy per class, nothing removed (len(classes)).
        top_removed: len(classes) x len(ks), the class's own top-k units removed.
        rest_removed: same shape, every unit except the class's top-k removed.
        random_removed: same shape, k random units removed (mean over the draws).
        num_units: width of the layer.
    """

    ks: List[int]
    classes: List[int]
    baseline: np.ndarray
    top_removed: np.ndarray
    rest_removed: np.ndarray
    random_removed: np.ndarray
    num_units: int

    def summary(self, k: int) -> Dict[str, float]:
        """Mean over classes at ``k`` units: baseline, top_removed, rest_removed, random_removed.

        Raises:
            ValueError: ``k`` is not one of ``ks``.
        """
        if k not in self.ks:
            raise ValueError(f"k={k} was not measured; measured: {self.ks}.")
        column = self.ks.index(k)
        return {
            "k": k,
            "baseline": float(np.nanmean(self.baseline)),
            "top_removed": float(np.nanmean(self.top_removed[:, column])),
            "rest_removed": float(np.nanmean(self.rest_removed[:, column])),
            "random_removed": float(np.nanmean(self.random_removed[:, column])),
        }


def ablation_curves(model: nn.Module, layer: LayerSpec, images: Tensor, labels: Tensor, num_classes: int,
                    ranking: UnitRanking, *, ks: Sequence[int] = (1, 2, 5, 10, 20),
                    classes: Optional[Sequence[int]] = None, random_trials: int = 3, seed: int = 0,
                    batch_size: int = 256, head: Optional[Callable[[Tensor], Tensor]] = None,
                    device: Optional[Union[str, torch.device]] = None,
                    show_progress: bool = False) -> AblationCurves:
    """Remove each class's top-k units, or all the others, or k random units (METHOD.md §4).

    Bau et al. report for VGG-16 on Places365 that removing a class's 20 most damaging
    units hurts it far more than removing the other 492: a few units carry a class.

    Args:
        model: the classifier (left as found).
        layer: the ranked layer.
        images: held-out images (use other images than those that ranked the units for an
            unbiased curve).
        labels: their labels.
        num_classes: number of classes.
        ranking: from :func:`rank_units_for_class` on the same layer.
        ks: numbers of units to remove (each at most the layer's width).
        classes: classes to measure (default all).
        random_trials: random draws of k units, averaged; the draws are shared by all
            classes.
        seed: seeds the random draws.
        batch_size: images per model call.
        head: optional, the rest of the network after ``layer`` (see
            :func:`rank_units_for_class`).
        device: where to run; default the model's device.
        show_progress: show a tqdm progress bar.

    Returns:
        An :class:`AblationCurves`.

    Raises:
        ValueError: a k out of range, an unknown class, labels that do not fit.

    Example:
        >>> curves = ablation_curves(model, "features.relu4", images, labels, 5, ranking)
        >>> curves.summary(20)
    """
    name, module = _resolve_layer(model, layer)
    labels = _check_labelled(images, labels, num_classes)
    width = ranking.num_units
    ks = [int(k) for k in ks]
    if not ks or any(k < 0 or k > len(ranking.units) for k in ks):
        raise ValueError(f"each k must lie in 0..{len(ranking.units)} (the ranked units), got {ks}.")
    classes = list(range(num_classes)) if classes is None else [int(c) for c in classes]
    if any(c < 0 or c >= num_classes for c in classes):
        raise ValueError(f"classes must lie in 0..{num_classes - 1}, got {classes}.")
    if isinstance(random_trials, bool) or not isinstance(random_trials, int) or random_trials < 1:
        raise ValueError(f"random_trials must be an int >= 1, got {random_trials!r}.")
    generator = torch.Generator().manual_seed(seed)
    ablations: List[Tensor] = [torch.empty(0, dtype=torch.long)]
    every = torch.arange(width)
    for c in classes:
        for k in ks:
            top = torch.tensor(ranking.top(c, k), dtype=torch.long)
            rest = every[~torch.isin(every, top)]
            ablations += [top, rest]
    for k in ks:
        ablations += [torch.randperm(width, generator=generator)[:k] for _ in range(random_trials)]
    predictions, _ = _predictions(model, module, name, images, labels, ablations, width,
                                  _model_device(model, device), batch_size, head, show_progress, "Ablation curves")
    scores = torch.stack([_balanced_from_predictions(p, labels, num_classes) for p in predictions]).numpy()
    per_class = scores[1:1 + 2 * len(classes) * len(ks)].reshape(len(classes), len(ks), 2, num_classes)
    rows = np.arange(len(classes))
    random_scores = scores[1 + 2 * len(classes) * len(ks):].reshape(len(ks), random_trials, num_classes)
    return AblationCurves(
        ks=ks,
        classes=classes,
        baseline=scores[0][classes],
        top_removed=per_class[rows, :, 0, classes],
        rest_removed=per_class[rows, :, 1, classes],
        random_removed=random_scores.mean(1)[:, classes].T,
        num_units=width,
    )


@dataclass
class PatternUnits:
    """The units a class pattern drives, and the pattern's power with them removed.

    Attributes:
        target: the pattern's class.
        units: the ``top`` units ranked first by ``rank_by``, first ones first.
        rank_by: ``"increase"`` or ``"contribution"``.
        increase: per-unit mean activation increase (stamped minus clean), length U.
        contribution: per-unit first-order contribution to the rise of ``log p(target)``
            (only with ``rank_by="contribution"``, else ``None``).
        power: predictive power of the pattern (share of other-class images classified
            as ``target`` once stamped).
        power_ablated: the same with ``units`` removed.
        power_random_ablated: the same with as many random units removed (mean over draws).
        floor: share of the unstamped other-class images already classified as ``target``.
        accuracy: top-1 accuracy on all the images.
        accuracy_ablated: top-1 accuracy with ``units`` removed.
    """

    target: int
    units: List[int]
    rank_by: str
    increase: np.ndarray
    contribution: Optional[np.ndarray]
    power: float
    power_ablated: float
    power_random_ablated: float
    floor: float
    accuracy: float
    accuracy_ablated: float


def _predictive_power(model: nn.Module, stamp: Callable[[Tensor], Tensor], others: Tensor, target: int,
                      device: torch.device, batch_size: int) -> float:
    """Share of ``others`` (images of other classes) classified as ``target`` after ``stamp``.

    Defined as :func:`captum_classpattern.metrics.predictive_power` defines it (other-class
    images only in the denominator); computed here so that hooks set by the caller apply.
    """
    hits = 0
    with evaluation_mode(model, "predictive power"), torch.inference_mode():
        for start in range(0, others.shape[0], batch_size):
            batch = stamp(others[start:start + batch_size].to(device))
            hits += int((model(batch).argmax(1) == target).sum())
    return hits / others.shape[0]


def _accuracy(model: nn.Module, images: Tensor, labels: Tensor, device: torch.device, batch_size: int) -> float:
    correct = 0
    with evaluation_mode(model, "accuracy"), torch.inference_mode():
        for start in range(0, images.shape[0], batch_size):
            batch = images[start:start + batch_size].to(device)
            correct += int((model(batch).argmax(1).cpu() == labels[start:start + batch_size]).sum())
    return correct / images.shape[0]


def _mean_channel_activation(model: nn.Module, module: nn.Module, name: str, images: Tensor,
                             stamp: Optional[Callable[[Tensor], Tensor]], device: torch.device,
                             batch_size: int) -> Tensor:
    """Per-image, per-unit activation (spatial mean for feature maps): N x U."""
    rows = []
    with evaluation_mode(model, "units_responding_to_pattern"), _LayerTap(module, name) as tap, \
            torch.inference_mode():
        for start in range(0, images.shape[0], batch_size):
            batch = images[start:start + batch_size].to(device)
            if stamp is not None:
                batch = stamp(batch)
            output = tap.run(model, batch)
            if not isinstance(output, Tensor) or output.dim() < 2:
                raise TypeError(f"layer {name!r} must output one tensor N x C (x ...).")
            rows.append(output.float().flatten(2).mean(2).cpu() if output.dim() > 2 else output.float().cpu())
    return torch.cat(rows)


def _pattern_contributions(model: nn.Module, module: nn.Module, others: Tensor, stamp: Callable[[Tensor], Tensor],
                           target: int, device: torch.device, batch_size: int) -> Tensor:
    """Per unit: (stamped - clean activation) x d log p(target) / d activation, summed over
    positions and averaged over images -- a first-order estimate of how much of the
    pattern's pull towards ``target`` passes through each unit."""
    captured: Dict[str, Tensor] = {}

    def hook(_module: nn.Module, _inputs: Any, output: Tensor) -> Tensor:
        # A fresh leaf: gradients stop here, and no parameter's .grad is touched.
        captured["leaf"] = output.detach().requires_grad_(True)
        return captured["leaf"]

    total: Optional[Tensor] = None
    handle = module.register_forward_hook(hook)
    try:
        with evaluation_mode(model, "units_responding_to_pattern"):
            for start in range(0, others.shape[0], batch_size):
                batch = others[start:start + batch_size].to(device)
                with torch.no_grad():
                    model(batch)
                clean = captured["leaf"].detach()
                with torch.enable_grad():
                    log_prob = model(stamp(batch)).log_softmax(1)[:, target].sum()
                    leaf = captured["leaf"]
                    (gradient,) = torch.autograd.grad(log_prob, leaf)
                share = ((leaf.detach() - clean) * gradient).flatten(2).sum(2) if leaf.dim() > 2 else \
                    (leaf.detach() - clean) * gradient
                batch_total = share.double().sum(0).cpu()
                total = batch_total if total is None else total + batch_total
    finally:
        handle.remove()
    assert total is not None
    return total / others.shape[0]


def units_responding_to_pattern(model: nn.Module, layer: LayerSpec, pattern: Any, images: Tensor, labels: Tensor,
                                target: int, *, top: int = 10, rank_by: str = "increase", random_trials: int = 3,
                                seed: int = 0, batch_size: int = 256,
                                device: Optional[Union[str, torch.device]] = None) -> PatternUnits:
    """Find the units a class pattern drives and measure how much of its power they carry.

    The pattern is stamped on the images whose label is not ``target``. With
    ``rank_by="increase"`` units are ranked by their mean activation increase (spatial
    mean, stamped minus clean). That also picks units the pattern excites but that vote for
    other classes; ``rank_by="contribution"`` weighs each unit's increase by the gradient
    of ``log p(target)`` with respect to it (at the stamped image) and so keeps the units
    through which the pattern pulls towards ``target``. The pattern's predictive power is
    then measured as is, with the ``top`` units removed, and with ``top`` random units
    removed (the control).

    Args:
        model: the classifier (left as found).
        layer: the layer whose units are examined (module or dotted name).
        pattern: any object with ``stamp(images) -> images``, such as
            :class:`captum_classpattern.pattern.Pattern`.
        images: held-out images N x C x H x W in [0, 1].
        labels: their labels.
        target: the pattern's class.
        top: number of units to keep and ablate.
        rank_by: ``"increase"`` or ``"contribution"`` (see above).
        random_trials: random unit sets averaged for the control.
        seed: seeds the random sets.
        batch_size: images per model call.
        device: where to run; default the model's device.

    Returns:
        A :class:`PatternUnits`.

    Raises:
        TypeError: ``pattern`` has no ``stamp`` method.
        ValueError: no images of other classes, ``top`` or ``rank_by`` out of range.

    Example:
        >>> found = units_responding_to_pattern(model, "features.relu4", pattern, images, labels, 2)
        >>> found.power, found.power_ablated
    """
    if not callable(getattr(pattern, "stamp", None)):
        raise TypeError("pattern must have a stamp(images) -> images method, like captum_classpattern.Pattern.")
    if rank_by not in ("increase", "contribution"):
        raise ValueError(f"rank_by must be 'increase' or 'contribution', got {rank_by!r}.")
    name, module = _resolve_layer(model, layer)
    labels = _check_labelled(images, labels)
    run_on = _model_device(model, device)
    others = images[(labels != target).to(images.device)]
    if others.shape[0] == 0:
        raise ValueError(f"no images of classes other than {target}: pass held-out images of several classes.")
    width = _layer_width(model, module, name, others, run_on)
    if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= width:
        raise ValueError(f"top must be an int in 1..{width} (the layer's units), got {top!r}.")
    if isinstance(random_trials, bool) or not isinstance(random_trials, int) or random_trials < 1:
        raise ValueError(f"random_trials must be an int >= 1, got {random_trials!r}.")
    clean = _mean_channel_activation(model, module, name, others, None, run_on, batch_size)
    stamped = _mean_channel_activation(model, module, name, others, pattern.stamp, run_on, batch_size)
    increase = (stamped - clean).mean(0).double().numpy()
    contribution = None
    if rank_by == "contribution":
        contribution = _pattern_contributions(model, module, others, pattern.stamp, target, run_on,
                                              batch_size).numpy()
    scores = increase if contribution is None else contribution
    chosen = [int(u) for u in np.lexsort((np.arange(width), -scores))[:top]]

    def power() -> float:
        return _predictive_power(model, pattern.stamp, others, target, run_on, batch_size)

    base_power, accuracy = power(), _accuracy(model, images, labels, run_on, batch_size)
    with ablate_units(model, module, chosen):
        ablated_power = power()
        ablated_accuracy = _accuracy(model, images, labels, run_on, batch_size)
    generator = torch.Generator().manual_seed(seed)
    random_powers = []
    for _ in range(random_trials):
        with ablate_units(model, module, torch.randperm(width, generator=generator)[:top]):
            random_powers.append(power())
    floor = _predictive_power(model, lambda batch: batch, others, target, run_on, batch_size)
    return PatternUnits(
        target=int(target),
        units=chosen,
        rank_by=rank_by,
        increase=increase,
        contribution=contribution,
        power=base_power,
        power_ablated=ablated_power,
        power_random_ablated=float(np.mean(random_powers)),
        floor=floor,
        accuracy=accuracy,
        accuracy_ablated=ablated_accuracy,
    )

"""A resumable image-classifier recipe for real data: one-cycle SGD, label smoothing, flips and crops.

Every epoch is a pure function of the seed, the epoch number and the weights it starts
from (its batch order, crops, flips and any attack's random start are drawn from a
generator seeded by ``(seed, epoch)``; a per-batch poisoning hook's state is checkpointed
with the weights), so a run killed after epoch ``e`` and resumed from its checkpoint takes
the same steps as one that was never stopped.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._utils import check_positive_int, write_atomic
from ._batch_hook import (
    BatchPoisoning,
    after_backward,
    as_batch_hook,
    hook_seed,
    hook_state,
    load_hook_state,
    poison,
    prepare,
)
from ._train import Perturb, accuracy

CHECKPOINT_FORMAT = "classpattern-training-checkpoint"


@dataclass(frozen=True)
class TrainingRecipe:
    """How :func:`train_with_recipe` trains: the known tricks for CIFAR-sized images on a budget.

    Attributes:
        epochs: passes over the training images.
        batch_size: images per step.
        peak_lr: SGD's (Nesterov momentum) learning rate at the top of the one-cycle
            schedule, which rises linearly from zero over the first ``warmup`` share of the
            steps and falls linearly to zero over the rest.
        warmup: share of the steps spent rising.
        momentum: SGD's momentum.
        weight_decay: L2 penalty on every parameter.
        label_smoothing: cross-entropy's label smoothing.
        crop_padding: random crops of the image padded by this many pixels on each side
            (reflected); 0 turns crops off.
        flip: random horizontal flips.
        channels_last: train in the channels-last memory format (faster convolutions on CPUs).
    """

    epochs: int = 15
    batch_size: int = 256
    peak_lr: float = 0.2
    warmup: float = 0.25
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    crop_padding: int = 4
    flip: bool = True
    channels_last: bool = True

    def __post_init__(self) -> None:
        check_positive_int(self.epochs, "epochs")
        check_positive_int(self.batch_size, "batch_size")
        if not 0.0 < self.warmup < 1.0:
            raise ValueError(f"warmup must be a share of the steps in (0, 1), got {self.warmup!r}.")
        if isinstance(self.crop_padding, bool) or not isinstance(self.crop_padding, int) or self.crop_padding < 0:
            raise ValueError(f"crop_padding must be an int >= 0, got {self.crop_padding!r}.")

    def learning_rate(self, step: int, total: int) -> float:
        """The one-cycle learning rate at ``step`` of ``total`` steps."""
        progress = step / max(total, 1)
        if progress < self.warmup:
            return self.peak_lr * progress / self.warmup
        return self.peak_lr * max(0.0, 1.0 - progress) / (1.0 - self.warmup)


@dataclass
class TrainingRun:
    """A trained model and its learning curve.

    Attributes:
        model: the trained classifier, in eval mode.
        curve: one record per epoch: ``epoch``, ``loss`` (mean training loss), ``train_accuracy``
            (on the augmented, possibly perturbed batches), ``test_accuracy`` (on the
            monitoring images, or ``None``) and ``minutes`` (wall time of the epoch).
        resumed_from: the epoch the run was resumed after (0 for a fresh run).
    """

    model: nn.Module
    curve: List[Dict[str, Any]]
    resumed_from: int = 0

    @property
    def minutes(self) -> float:
        """Wall minutes of all epochs, across resumed sessions."""
        return float(sum(record["minutes"] for record in self.curve))


def augment(images: Tensor, generator: torch.Generator, padding: int, flip: bool) -> Tensor:
    """Random reflected-padding crops and horizontal flips of a batch, drawn from ``generator``.

    Args:
        images: N x C x H x W images.
        generator: the source of the crop offsets and flips.
        padding: pixels of reflected padding per side; the crop is taken at a random offset
            in ``[0, 2 * padding]``. 0 skips cropping.
        flip: flip a random half of the images left to right.

    Returns:
        A new batch of the same shape.
    """
    count, _, height, width = images.shape
    out = images
    if padding > 0:
        padded = F.pad(images, (padding,) * 4, mode="reflect")
        dy = torch.randint(0, 2 * padding + 1, (count,), generator=generator)
        dx = torch.randint(0, 2 * padding + 1, (count,), generator=generator)
        rows = (dy[:, None] + torch.arange(height))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(width))[:, None, None, :]
        batch = torch.arange(count)[:, None, None, None]
        channels = torch.arange(images.shape[1])[None, :, None, None]
        out = padded[batch, channels, rows, cols]
    if flip:
        flipped = torch.rand(count, generator=generator) < 0.5
        out = torch.where(flipped[:, None, None, None], out.flip(3), out)
    return out


def _checkpoint_bytes(
    settings: Dict[str, Any],
    epoch: int,
    model: nn.Module,
    optimizer: Any,
    curve: list,
    hook: Optional[BatchPoisoning],
) -> bytes:
    buffer = io.BytesIO()
    state = {
        "format": CHECKPOINT_FORMAT,
        "settings": settings,
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "curve": curve,
    }
    extra = hook_state(hook)
    if extra is not None:  # only hooks with a state add the key: older checkpoints stay byte-for-byte the same
        state["hook"] = extra
    torch.save(state, buffer)
    return buffer.getvalue()


def _resume(
    path: str, settings: Dict[str, Any], model: nn.Module, optimizer: Any, hook: Optional[BatchPoisoning]
) -> Tuple[int, List[Dict[str, Any]]]:
    """``(epoch, curve)`` from the checkpoint at ``path``, loaded into ``model``, ``optimizer`` and ``hook``."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file: say which, never delete it
        raise ValueError(
            f"cannot read the training checkpoint {path} ({type(error).__name__}: {error}); move it away to start "
            "afresh."
        ) from error
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a training checkpoint of train_with_recipe; move it away to start afresh.")
    if state["settings"] != settings:
        stored = state["settings"]
        changed = sorted(k for k in set(settings) | set(stored) if settings.get(k) != stored.get(k))
        raise ValueError(
            f"the checkpoint {path} was written with other settings (differing: {', '.join(changed)}); resume with "
            "the same settings, or give another checkpoint path to start afresh."
        )
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    load_hook_state(hook, state.get("hook"), path)
    return int(state["epoch"]), list(state["curve"])


def train_with_recipe(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    recipe: TrainingRecipe = TrainingRecipe(),
    *,
    seed: int = 0,
    perturb: Optional[Union[Perturb, BatchPoisoning]] = None,
    monitor: Optional[tuple] = None,
    checkpoint: Optional[str] = None,
    show_progress: bool = False,
    description: str = "training",
) -> TrainingRun:
    """Train ``model`` in place with :class:`TrainingRecipe`, resumable epoch by epoch.

    Args:
        model: the classifier (its parameters' device is used).
        images: N x C x H x W training images in [0, 1] (a backdoor's poisoned copy, for a
            backdoored model).
        labels: their labels.
        recipe: the optimiser, schedule and augmentation.
        seed: seeds every epoch's batch order, augmentation and ``perturb``'s randomness.
        perturb: an optional per-batch hook, run on each augmented batch before the step:
            either a ``(model, images, labels) -> images`` callable (e.g.
            :class:`PGDPerturbation` for adversarial training), or a
            :class:`BatchPoisoning` (e.g. the backdoor package's ``WarpPoisoning`` or
            ``InputAwarePoisoning``), which may also change labels, add a loss term,
            train a network of its own and keep a state in the checkpoint. Its generator
            is a stream of its own, so the batch order, crops and flips are those of the
            clean run of the same seed.
        monitor: optional ``(images, labels)`` whose accuracy is recorded after each epoch.
        checkpoint: a file to write after every epoch (atomically) and to resume from when
            it exists; the settings (recipe, seed, data size, ``perturb``'s ``repr``) must
            match, and a hook's state is restored with the weights.
        show_progress: a tqdm bar over the steps of each epoch.
        description: the progress bar's label.

    Returns:
        A :class:`TrainingRun`: the model (trained, in eval mode) and its curve.

    Raises:
        ValueError: not one label per image; a checkpoint that cannot be read or was
            written with other settings (it is never deleted); a hook that returns
            mismatched images and labels.
        TypeError: ``perturb`` is neither a callable nor a :class:`BatchPoisoning`.
        FloatingPointError: the loss stopped being finite (the run diverged); nothing is
            written for the epoch it happened in.

    Example:
        >>> run = train_with_recipe(model, train.images, train.labels, TrainingRecipe(epochs=2))
        >>> run.curve[-1]["loss"]
    """
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"got {labels.shape[0]} labels for {images.shape[0]} images.")
    hook = as_batch_hook(perturb)
    device = next(model.parameters()).device
    settings = {
        "recipe": dataclasses.asdict(recipe),
        "seed": seed,
        "images": list(images.shape),
        "perturb": repr(perturb),
    }
    optimizer = torch.optim.SGD(
        model.parameters(), lr=0.0, momentum=recipe.momentum, nesterov=True, weight_decay=recipe.weight_decay
    )
    start = 0
    curve: List[Dict[str, Any]] = []
    if checkpoint is not None and os.path.exists(checkpoint):
        start, curve = _resume(checkpoint, settings, model, optimizer, hook)
    if start == 0:
        prepare(hook, model, images, labels, seed)
    memory_format = torch.channels_last if recipe.channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    steps_per_epoch = -(-images.shape[0] // recipe.batch_size)
    total = recipe.epochs * steps_per_epoch
    for epoch in range(start, recipe.epochs):
        began = time.perf_counter()
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
        torch.manual_seed(seed * 100_003 + epoch)  # perturb's random starts
        hook_generator = torch.Generator().manual_seed(hook_seed(seed, epoch))
        loss_sum, correct = 0.0, 0
        order = torch.randperm(images.shape[0], generator=generator)
        bar = tqdm(
            order.split(recipe.batch_size), desc=f"{description} {epoch + 1}/{recipe.epochs}", disable=not show_progress
        )
        for step, index in enumerate(bar):
            batch = augment(images[index], generator, recipe.crop_padding, recipe.flip).to(device)
            target = labels[index].to(device)
            extra = None
            if hook is not None:
                batch, target, extra = poison(hook, model, batch, target, hook_generator)
            for group in optimizer.param_groups:
                group["lr"] = recipe.learning_rate(epoch * steps_per_epoch + step, total)
            model.train()
            logits = model(batch.contiguous(memory_format=memory_format))
            loss = F.cross_entropy(logits, target, label_smoothing=recipe.label_smoothing)
            if extra is not None:
                loss = loss + extra
            loss_value = float(loss.detach())  # one read per step, for the check and the epoch's mean
            if not math.isfinite(loss_value):
                # A diverged run only spreads NaN through the weights; stop before the step,
                # with the last epoch's checkpoint (if any) left as it was.
                raise FloatingPointError(
                    f"{description} diverged at epoch {epoch + 1}, step {step + 1} (loss "
                    f"{loss_value}): lower recipe.peak_lr or lengthen recipe.warmup; "
                    "resuming from a checkpoint of these settings will likely diverge again."
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            after_backward(hook)
            loss_sum += loss_value * len(index)
            correct += int((logits.argmax(1) == target).sum())
        bar.close()
        model.eval()
        record = {
            "epoch": epoch + 1,
            "loss": loss_sum / images.shape[0],
            "train_accuracy": correct / images.shape[0],
            "test_accuracy": accuracy(model, *monitor) if monitor is not None else None,
            "minutes": (time.perf_counter() - began) / 60.0,
        }
        curve.append(record)
        if show_progress:
            tqdm.write(f"{description}: " + ", ".join(f"{k} {v}" for k, v in record.items()))
        if checkpoint is not None:
            write_atomic(checkpoint, _checkpoint_bytes(settings, epoch + 1, model, optimizer, curve, hook))
    optimizer.zero_grad(set_to_none=True)
    model.to(memory_format=torch.contiguous_format)
    return TrainingRun(model.eval(), curve, resumed_from=start)

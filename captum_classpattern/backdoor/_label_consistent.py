"""Label-consistent backdoors (Turner et al. 2019): hardened target-class images with a corner checkerboard.

A clean-label attack cannot relabel anything, so the model has little reason to learn a
trigger on images it classifies correctly anyway. Turner, Tsipras and Madry make the
target-class training images hard first, with an adversarial perturbation the eye does
not see, so that the trigger stamped on them becomes the easiest evidence for their
(correct) label. At test time the trigger alone, on an image of any class, brings the
target class.

Defaults follow BackdoorBench's ``lc`` attack, which follows the authors' code:

* hardening: untargeted L-inf PGD on a model trained on clean data, radius ``16/255``
  (the adversarial images BackdoorBench's ``lc`` loads), 100 steps of ``1.5/255``, no
  random start (its ``craft_adv_dataset.py``);
* trigger: the authors' 3 x 3 checkerboard of +1/-1 in all four corners (the left corners
  share one pattern, the right corners its mirror image), added at full amplitude and
  clipped, so it shows black and white; the paper's reduced-visibility variant adds it at
  a lower ``amplitude`` (16/255 to 64/255 there);
* poisoning rate 0.1 of the whole training set, drawn from the target class (on CIFAR-10,
  every target-class image), labels kept.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from .._utils import check_class_index, check_images, check_labels, check_positive_int, module_device
from ..training import pgd_attack
from ._checks import check_model, check_number
from ._poisoning import PoisonedDataset
from ._triggers import Trigger, as_batch

_PATTERN = torch.tensor([[1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [1.0, -1.0, 1.0]])
"""The top-left corner's 3 x 3 pattern in the authors' code; the right corners use its mirror image."""

_CORNERS = ("all", "bottom-right")

LC_EPS = 16 / 255
"""L-inf radius of the hardening perturbation (BackdoorBench's ``lc`` adversarial images)."""

LC_STEP_SIZE = 1.5 / 255
"""Size of each signed PGD step of the hardening (BackdoorBench's ``craft_adv_dataset.py``)."""

LC_STEPS = 100
"""PGD steps of the hardening (BackdoorBench's ``craft_adv_dataset.py``)."""


class LabelConsistentTrigger(Trigger):
    """LC's trigger: a 3 x 3 +1/-1 checkerboard added to the corners of the image, clipped to [0, 1].

    The pattern is the one of Turner et al.'s code (and BackdoorBench's ``lc``): with
    ``corners="all"`` (default) it sits in all four corners, so random crops and flips
    during training leave some of it in view; ``"bottom-right"`` is the paper's first,
    single-corner version. Each pattern cell covers ``max(1, min(H, W) // 32)`` pixels a
    side, so on 32 x 32 images the pattern is 3 x 3 pixels and it grows with the image as
    BackdoorBench's nearest-neighbour resizing makes it.

    What the defender sees: 36 pixels (9 per corner, on 32 x 32 images) pushed towards
    black or white in every channel; nothing else changes.

    Args:
        amplitude: how much is added (+1 cells) or taken (-1 cells), in (0, 1]; ``1.0``
            (BackdoorBench's default) saturates the cells to white and black, the paper's
            reduced-visibility triggers use 16/255, 32/255 or 64/255.
        corners: ``"all"`` or ``"bottom-right"``.

    Raises:
        ValueError: an amplitude outside (0, 1] or unknown corners.

    Example:
        >>> trigger = LabelConsistentTrigger()
        >>> stamped = trigger(images)                  # new tensor; images unchanged
        >>> changed = trigger.mask(*images.shape[-2:])  # the 36 corner pixels on 32 x 32
    """

    def __init__(self, amplitude: float = 1.0, corners: str = "all") -> None:
        self.amplitude = check_number(amplitude, "amplitude", 0.0, 1.0, low_open=True)
        if corners not in _CORNERS:
            raise ValueError(f"corners must be one of {', '.join(map(repr, _CORNERS))}, got {corners!r}.")
        self.corners = corners

    def signs(self, height: int, width: int) -> Tensor:
        """The H x W map of +1, -1 and 0 (untouched) the trigger adds, times :attr:`amplitude` (CPU, float32).

        Raises:
            ValueError: an image too small to hold the pattern in two corners (under 6 x 6).
        """
        if height < 6 or width < 6:
            raise ValueError(f"the corner pattern needs images of at least 6 x 6 pixels, got {height} x {width}.")
        cell = max(1, min(height, width) // 32)
        left = _PATTERN.repeat_interleave(cell, 0).repeat_interleave(cell, 1)
        right = left.flip(1)
        side = left.shape[0]
        out = torch.zeros(height, width)
        out[-side:, -side:] = right
        if self.corners == "all":
            out[:side, :side] = left
            out[-side:, :side] = left
            out[:side, -side:] = right
        return out

    def mask(self, height: int, width: int) -> Tensor:
        """The H x W boolean mask of the corner pixels the trigger changes."""
        return self.signs(height, width) != 0

    def apply(self, images: Tensor) -> Tensor:
        """Add the corner pattern to copies of ``images`` and clip to [0, 1].

        Args:
            images: C x H x W or N x C x H x W images in [0, 1].

        Returns:
            A new tensor of the same shape, dtype and device.
        """
        batch, single = as_batch(images)
        signs = self.signs(*batch.shape[-2:]).to(batch.device, batch.dtype)
        out = (batch + self.amplitude * signs).clamp(0.0, 1.0)
        return out[0] if single else out

    def __repr__(self) -> str:
        return f"LabelConsistentTrigger(amplitude={self.amplitude:.6g}, corners={self.corners!r})"


def _rows_to_harden(labels: Tensor, target: int, indices: Optional[Tensor]) -> Tensor:
    """The indices to perturb: every target-class item, or ``indices`` after checking they are of the target."""
    if indices is None:
        return torch.nonzero(labels == target).flatten()
    if not isinstance(indices, Tensor) or indices.dim() != 1 or indices.is_floating_point():
        raise TypeError("indices must be a 1-d integer tensor of item positions (e.g. poisoned.poisoned_indices).")
    indices = indices.long().cpu()
    if indices.numel() and (indices.min() < 0 or indices.max() >= labels.numel()):
        raise ValueError(f"indices must lie in 0..{labels.numel() - 1}.")
    others = indices[labels[indices] != target]
    if others.numel():
        raise ValueError(
            f"indices {others[:5].tolist()} are not of the target class {target}: a label-consistent attack only "
            "perturbs target-class items."
        )
    return indices


def label_consistent_images(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    target: int,
    *,
    eps: float = LC_EPS,
    step_size: float = LC_STEP_SIZE,
    steps: int = LC_STEPS,
    batch_size: int = 128,
    indices: Optional[Tensor] = None,
) -> Tensor:
    """A copy of ``images`` in which the target-class items are made hard to classify (LC's first step).

    Each target-class image (or each of ``indices``) is replaced by an untargeted L-inf PGD
    adversarial example of ``model`` for its true label (``captum.robust.PGD`` through
    :func:`~captum_classpattern.training.pgd_attack`, no random start, so the result is
    deterministic); every other item is copied unchanged. ``model`` should be trained on
    clean data of the task (BackdoorBench uses one of the attacked architecture; Turner et
    al. an adversarially trained one, whose perturbations look more natural). The model
    runs in eval mode and its mode is restored; nothing of the caller's is modified.

    The poisoned training set is then the perturbed images with the trigger, labels kept::

        hard = label_consistent_images(model, images, labels, target=0)
        poisoned = PoisonedDataset((hard, labels), LabelConsistentTrigger(), 0, rate=0.1, clean_label=True)

    :func:`label_consistent_dataset` does both, perturbing only the items it poisons.

    Args:
        model: a classifier returning logits, trained on clean data.
        images: N x C x H x W training images in [0, 1].
        labels: their N labels.
        target: the target class.
        eps: L-inf radius of the perturbation (default :data:`LC_EPS`, 16/255).
        step_size: signed step size (default :data:`LC_STEP_SIZE`, 1.5/255).
        steps: PGD steps (default :data:`LC_STEPS`, 100).
        batch_size: images per PGD call (bounds memory; the result does not depend on it).
        indices: perturb only these items (all of the target class), e.g. the
            ``poisoned_indices`` of the :class:`PoisonedDataset` that will stamp them;
            ``None``: every target-class item.

    Returns:
        A new N x C x H x W tensor on the images' device.

    Raises:
        TypeError: a model that is not callable, images or labels of the wrong type.
        ValueError: bad shapes, pixels outside [0, 1], a bad target, settings outside
            their ranges, or ``indices`` outside the data or not of the target class.

    Example:
        >>> hard = label_consistent_images(clean_model, images, labels, target=0)
        >>> bool(((hard - images).abs() <= 16 / 255 + 1e-6).all())
        True
    """
    check_model(model)
    check_images(images, "images")
    labels = check_labels(images, labels, "images'").cpu()
    target = check_class_index(target, "target")
    batch_size = check_positive_int(batch_size, "batch_size")
    rows = _rows_to_harden(labels, target, indices)
    out = images.detach().clone()
    device = module_device(model) or images.device
    for start in range(0, rows.numel(), batch_size):
        chunk = rows[start : start + batch_size].to(images.device)
        hard = pgd_attack(
            model,
            images[chunk].detach().to(device),
            labels[chunk.cpu()].to(device),
            eps=eps,
            step_size=step_size,
            steps=steps,
            random_start=False,
        )
        out[chunk] = hard.to(out.device, out.dtype)
    return out


def label_consistent_dataset(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    target: int,
    rate: float = 0.1,
    *,
    trigger: Optional[Trigger] = None,
    seed: int = 0,
    eps: float = LC_EPS,
    step_size: float = LC_STEP_SIZE,
    steps: int = LC_STEPS,
) -> PoisonedDataset:
    """The LC-poisoned training set: ``round(rate * N)`` target-class items hardened, stamped, labels kept.

    The items are drawn as :class:`PoisonedDataset` draws them with ``clean_label=True``
    (``seed``); only those are perturbed (:func:`label_consistent_images`), then stamped
    with ``trigger`` when read. The rate counts over the whole set, as in BackdoorBench: 0.1
    on CIFAR-10 poisons every target-class image.

    What the defender sees: target-class training images with a faint perturbation (at
    most ``eps`` per pixel) and a corner checkerboard, correctly labelled; at test time the
    corner checkerboard on images of any class.

    Args:
        model: a classifier returning logits, trained on clean data (see
            :func:`label_consistent_images`).
        images: N x C x H x W training images in [0, 1] (not modified).
        labels: their N labels (not modified; the poisoned set keeps them).
        target: the target class.
        rate: share of the whole set to poison, at most the target class's share.
        trigger: the stamp; default :class:`LabelConsistentTrigger` ``()``. Use the same
            trigger (or a stronger one) at test time.
        seed: seed of the draw of the poisoned items.
        eps: L-inf radius of the hardening.
        step_size: signed PGD step size.
        steps: PGD steps.

    Returns:
        A :class:`PoisonedDataset` over the hardened images (``clean_label=True``).

    Raises:
        TypeError: bad types (see :func:`label_consistent_images`).
        ValueError: bad shapes or settings, or a rate above the target class's share.

    Example:
        >>> poisoned = label_consistent_dataset(clean_model, images, labels, target=0, rate=0.1)
        >>> train_images, train_labels = poisoned.tensors()
        >>> metrics = backdoor_metrics(backdoored, test_images, test_labels, LabelConsistentTrigger(), 0)
    """
    trigger = LabelConsistentTrigger() if trigger is None else trigger
    chooser = PoisonedDataset((images, labels), trigger, target, rate, seed, clean_label=True)
    hard = label_consistent_images(
        model,
        images,
        labels,
        target,
        eps=eps,
        step_size=step_size,
        steps=steps,
        indices=chooser.poisoned_indices,
    )
    return PoisonedDataset((hard, labels), trigger, target, rate, seed, clean_label=True)

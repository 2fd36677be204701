"""PGD adversarial training and robust accuracy, built on :class:`captum.robust.PGD`.

Madry et al.'s recipe in pixel space [0, 1]: L-inf radius ``eps`` (default 8/255), steps of
``2/255``, 7 to 10 steps with a random start while training, PGD-20 to evaluate. Two
details Captum leaves to the caller are handled here:

* ``captum.robust.PGD``'s default loss is ``-log(output)``, meant for probabilities; our
  models return logits, so the loss is ``CrossEntropyLoss(reduction="none")``;
* Captum does not switch train/eval: the attack runs with every module in eval mode
  (BatchNorm uses its running statistics and does not update them, dropout is off), and
  each module's own training flag is restored afterwards, also on errors.

The gradients are taken by Captum with ``torch.autograd.grad`` with respect to the
images only, so the model's parameters never receive a ``.grad`` from an attack.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Optional

import torch
from captum.robust import PGD
from torch import Tensor, nn

from .._utils import (
    accepts_older_keywords,
    check_device,
    check_images,
    check_labels,
    check_positive_int,
    evaluation_mode,
    predict,
)
from ._options import OLDER_ADVERSARIAL_KEYWORDS, TrainingOptions, check_options, fold_training_keywords
from ._train import train_classifier

_DEFAULT_OPTIONS = TrainingOptions()

_WHO = "pgd_attack"  # names the attack in evaluation_mode's training-mode warning


def _check_settings(eps: float, step_size: float, steps: int) -> None:
    for name, value in (("eps", eps), ("step_size", step_size)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be a number in [0, 1] (pixel units), got {value!r}.")
    check_positive_int(steps, "steps")


def _labels_for(images: Tensor, labels: Any) -> Tensor:
    """One integer class per image, on the images' device."""
    return check_labels(images, labels, "images'").to(images.device)


def pgd_attack(
    model: Callable,
    images: Tensor,
    labels: Tensor,
    *,
    eps: float = 8 / 255,
    step_size: float = 2 / 255,
    steps: int = 10,
    random_start: bool = True,
) -> Tensor:
    """Untargeted L-inf PGD adversarial examples (pixel space [0, 1]) via ``captum.robust.PGD``.

    Args:
        model: the classifier, returning logits.
        images: N x C x H x W images in [0, 1] (not modified).
        labels: their true labels (1-d integer tensor).
        eps: L-inf radius.
        step_size: size of each signed step.
        steps: number of steps.
        random_start: start from a uniform random point in the ball (Madry et al.).

    Returns:
        Adversarial images, detached, within ``eps`` of ``images`` and within [0, 1].

    Warns:
        UserWarning: the model is in training mode; the attack runs in eval mode and the
            mode is restored afterwards.

    Raises:
        TypeError: images or labels of the wrong type.
        ValueError: bad shapes, pixels outside [0, 1], or bad settings.

    Example:
        >>> adversarial = pgd_attack(model, images, labels, eps=0.1, step_size=0.025, steps=10)
    """
    return _attack(model, images, labels, eps, step_size, steps, random_start, warn=True)


def _attack(
    model: Callable,
    images: Tensor,
    labels: Tensor,
    eps: float,
    step_size: float,
    steps: int,
    random_start: bool,
    *,
    warn: bool,
) -> Tensor:
    check_images(images, "images")
    labels = _labels_for(images, labels)
    _check_settings(eps, step_size, steps)
    check_device(model, images, "images")
    attack = PGD(model, loss_func=nn.CrossEntropyLoss(reduction="none"), lower_bound=0.0, upper_bound=1.0)
    with evaluation_mode(model, _WHO, warn=warn), warnings.catch_warnings():
        # Captum warns at every step that it switched requires_grad on; that is expected here.
        warnings.filterwarnings("ignore", message="Input Tensor .* did not already require gradients")
        # A copy: Captum toggles requires_grad on the tensor it is given.
        adversarial = attack.perturb(
            images.detach().clone(),
            radius=eps,
            step_size=step_size,
            step_num=steps,
            target=labels,
            random_start=random_start,
        )
    return adversarial.detach()


class PGDPerturbation:
    """A ``perturb(model, images, labels)`` callable for :func:`~captum_classpattern.training.train_classifier`.

    Args:
        eps: L-inf radius.
        step_size: signed step size.
        steps: PGD steps per batch.
        random_start: start from a random point in the ball.

    Raises:
        ValueError: bad settings.

    Example:
        >>> train_classifier(model, x, y, perturb=PGDPerturbation(eps=0.1, step_size=0.025, steps=7))
    """

    def __init__(
        self, eps: float = 8 / 255, step_size: float = 2 / 255, steps: int = 7, random_start: bool = True
    ) -> None:
        _check_settings(eps, step_size, steps)
        self.eps, self.step_size, self.steps, self.random_start = eps, step_size, steps, random_start

    def __call__(self, model: nn.Module, images: Tensor, labels: Tensor) -> Tensor:
        # During adversarial training the model is in training mode on purpose: no warning.
        return _attack(model, images, labels, self.eps, self.step_size, self.steps, self.random_start, warn=False)

    def __repr__(self) -> str:
        return (
            f"PGDPerturbation(eps={self.eps:.4g}, step_size={self.step_size:.4g}, steps={self.steps}, "
            f"random_start={self.random_start})"
        )


@accepts_older_keywords(OLDER_ADVERSARIAL_KEYWORDS, fold_training_keywords)
def adversarial_train(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    options: TrainingOptions = _DEFAULT_OPTIONS,
    *,
    eps: float = 8 / 255,
    step_size: float = 2 / 255,
    steps: int = 7,
    seed: int = 0,
    show_progress: bool = False,
) -> nn.Module:
    """Madry PGD adversarial training: every batch is replaced by its PGD examples.

    Args:
        model: the classifier to train in place.
        images: training images in [0, 1].
        labels: their labels.
        options: the training loop's epochs, learning rate, batch size and weight decay
            (:class:`TrainingOptions`); the older keywords ``epochs=``, ``lr=`` and
            ``batch_size=`` are still accepted.
        eps: L-inf radius of the training attack.
        step_size: its step size.
        steps: its number of steps (7 to 10 in Madry et al.).
        seed: seeds shuffling and the random starts.
        show_progress: show a tqdm bar over epochs.

    Returns:
        The same model, trained, with each module's train/eval flag as it was before.

    Raises:
        ValueError: bad settings or data.
        TypeError: a model that is not an ``nn.Module``, or options that are not a
            :class:`TrainingOptions`.

    Example:
        >>> robust = adversarial_train(SmallCNN(1, 10, 16), x, y, eps=0.1, step_size=0.025)
    """
    options = check_options(options)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module to train, got {type(model).__name__}.")
    check_images(images, "images")
    labels = _labels_for(images, labels)
    perturb = PGDPerturbation(eps, step_size, steps)
    flags = [(module, module.training) for module in model.modules()]
    try:
        train_classifier(
            model,
            images,
            labels,
            options,
            seed=seed,
            perturb=perturb,
            show_progress=show_progress,
            description="PGD adversarial training",
        )
    finally:
        # The caller's train/eval flags come back as they were, module by module.
        for module, training in flags:
            module.training = training
    return model


def pgd_robust_accuracy(
    model: Callable,
    images: Tensor,
    labels: Tensor,
    *,
    eps: float = 8 / 255,
    step_size: Optional[float] = None,
    steps: int = 20,
    random_start: bool = True,
    batch_size: int = 256,
    seed: int = 0,
) -> float:
    """Accuracy under an untargeted L-inf PGD attack (PGD-20 by default).

    Args:
        model: the classifier (its mode is left as found).
        images: test images in [0, 1].
        labels: their labels.
        eps: L-inf radius.
        step_size: step size; default ``2.5 * eps / steps`` (Madry et al.'s rule).
        steps: attack steps.
        random_start: start from a random point in the ball.
        batch_size: images per attack batch.
        seed: seeds the random start (the global RNG is restored afterwards).

    Returns:
        The share of images still classified correctly, in [0, 1].

    Warns:
        UserWarning: the model is in training mode; it is attacked and measured in eval
            mode and the mode is restored afterwards.

    Raises:
        TypeError: images or labels of the wrong type.
        ValueError: bad shapes or settings.
    """
    check_images(images, "images")
    labels = _labels_for(images, labels)
    check_positive_int(steps, "steps")
    step_size = 2.5 * eps / steps if step_size is None else step_size
    _check_settings(eps, step_size, steps)
    check_positive_int(batch_size, "batch_size")
    devices = [images.device] if images.device.type == "cuda" else []
    correct = 0
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for start in range(0, images.shape[0], batch_size):
            batch, target = images[start : start + batch_size], labels[start : start + batch_size]
            adversarial = pgd_attack(
                model, batch, target, eps=eps, step_size=step_size, steps=steps, random_start=random_start
            )
            predicted = predict(model, adversarial, batch_size=batch_size, who="pgd_robust_accuracy")
            correct += int((predicted == target.cpu()).sum())
    return correct / images.shape[0]

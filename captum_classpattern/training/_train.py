"""A small, seeded training loop for natural, backdoored and adversarially trained models."""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._utils import accepts_older_keywords, check_images, check_labels, predict
from ._options import OLDER_TRAINING_KEYWORDS, TrainingOptions, check_options, fold_training_keywords

Perturb = Callable[[nn.Module, Tensor, Tensor], Tensor]

_DEFAULT_OPTIONS = TrainingOptions()


@accepts_older_keywords(OLDER_TRAINING_KEYWORDS, fold_training_keywords)
def train_classifier(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    options: TrainingOptions = _DEFAULT_OPTIONS,
    *,
    seed: int = 0,
    perturb: Optional[Perturb] = None,
    show_progress: bool = False,
    description: str = "training",
) -> nn.Module:
    """Train ``model`` in place with Adam and cross-entropy, then leave it in eval mode.

    Args:
        model: the classifier to train.
        images: N x C x H x W training images in [0, 1].
        labels: their labels.
        options: the loop's epochs, learning rate (cosine-annealed to zero), batch size
            and weight decay (:class:`TrainingOptions`); the older keywords ``epochs=``,
            ``lr=``, ``batch_size=`` and ``weight_decay=`` are still accepted.
        seed: seeds shuffling and the perturbation.
        perturb: optional ``(model, images, labels) -> images`` applied to each batch
            before the step (e.g. a PGD attack for adversarial training).
        show_progress: show a tqdm bar over epochs.
        description: the progress bar's label.

    Returns:
        The same model, trained, in eval mode.

    Raises:
        ValueError: not one label per image, or options out of range.
        TypeError: options that are not a :class:`TrainingOptions`.

    Example:
        >>> train_classifier(model, images, labels, TrainingOptions(epochs=4), seed=1)
    """
    options = check_options(options)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"got {labels.shape[0]} labels for {images.shape[0]} images.")
    epochs, lr, batch_size = options.epochs, options.lr, options.batch_size
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=options.weight_decay)
    steps_per_epoch = (images.shape[0] + batch_size - 1) // batch_size
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * steps_per_epoch)
    for _ in tqdm(range(epochs), desc=description, disable=not show_progress):
        order = torch.randperm(images.shape[0], generator=generator)
        for start in range(0, images.shape[0], batch_size):
            index = order[start : start + batch_size]
            batch, target = images[index].to(device), labels[index].to(device)
            if perturb is not None:
                batch = perturb(model, batch, target)
            model.train()
            loss = F.cross_entropy(model(batch), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    # The last step's gradients are of no use to the caller and would pin memory.
    optimizer.zero_grad(set_to_none=True)
    return model.eval()


def accuracy(model: Callable, images: Tensor, labels: Tensor, batch_size: int = 512) -> float:
    """Top-1 accuracy of ``model`` on labelled images; the model's mode is left as found.

    Args:
        model: the classifier.
        images: N x C x H x W images.
        labels: N integer class labels.
        batch_size: images per model call.

    Returns:
        The share of images classified as their label, in [0, 1].

    Raises:
        ValueError: empty images, or not one label per image.
        TypeError: labels that are not integer classes.
    """
    check_images(images, "images", unit_range=False)
    labels = check_labels(images, labels, "accuracy")
    predicted = predict(model, images, batch_size=batch_size, who="accuracy", labels=labels)
    return float((predicted == labels).double().mean())

"""A small, seeded training loop for natural, backdoored and adversarially trained models."""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._utils import check_images, check_labels, predict

Perturb = Callable[[nn.Module, Tensor, Tensor], Tensor]


def train_classifier(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    epochs: int = 10,
    lr: float = 2e-3,
    batch_size: int = 64,
    weight_decay: float = 5e-4,
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
        epochs: passes over the data.
        lr: Adam's learning rate (cosine-annealed to zero).
        batch_size: images per step.
        weight_decay: Adam's weight decay.
        seed: seeds shuffling and the perturbation.
        perturb: optional ``(model, images, labels) -> images`` applied to each batch
            before the step (e.g. a PGD attack for adversarial training).
        show_progress: show a tqdm bar over epochs.
        description: the progress bar's label.

    Returns:
        The same model, trained, in eval mode.
    """
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"got {labels.shape[0]} labels for {images.shape[0]} images.")
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
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

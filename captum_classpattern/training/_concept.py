"""The concept-shape classifier of the dissection examples, trained once and cached."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from .._utils import check_positive_int
from ..dissection import ConceptDataset
from ..models import concept_cnn
from ._cache import cached_model

ONE_CYCLE_LR = 3e-3
BATCH_SIZE = 64


def train_one_cycle(model: nn.Module, images: Tensor, labels: Tensor, epochs: int, seed: int = 0) -> nn.Module:
    """Train ``model`` in place with Adam under a one-cycle schedule (peak 3e-3, batches of 64).

    Args:
        model: the classifier to train (changed in place).
        images: N x C x H x W training images.
        labels: N integer labels.
        epochs: passes over the images.
        seed: seed of the batch order.

    Returns:
        ``model``, trained, in eval mode.
    """
    check_positive_int(epochs, "epochs")
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=ONE_CYCLE_LR)
    steps = epochs * -(-len(images) // BATCH_SIZE)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, ONE_CYCLE_LR, total_steps=steps)
    model.train()
    for _ in range(epochs):
        for index in torch.randperm(len(images), generator=generator).split(BATCH_SIZE):
            loss = nn.functional.cross_entropy(model(images[index]), labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


def concept_classifier(
    train: int = 5000, epochs: int = 8, seed: int = 0, width: int = 128, cache_dir: Optional[str] = None
) -> nn.Module:
    """A :func:`~captum_classpattern.models.concept_cnn` trained to name the shapes of concept images.

    Trained on ``ConceptDataset(train, seed=0)`` (the data set's shapes are the classes)
    with :func:`train_one_cycle`, then cached on disk by its settings, as
    :func:`digits_model` is.

    Args:
        train: number of training images.
        epochs: passes over them.
        seed: seed of the weights and of the batch order.
        width: units of the last conv block (``features.relu4``).
        cache_dir: cache folder (default ``$CLASSPATTERN_CACHE`` or ``~/.cache/captum_classpattern``).

    Returns:
        The trained model in eval mode.

    Example:
        >>> model = concept_classifier(train=1500, epochs=4)
        >>> units = unit_activations(model, "features.relu4", images)
    """
    check_positive_int(train, "train")
    data = ConceptDataset(train, seed=0)
    images, _, _, labels = data.tensors()

    def build() -> nn.Module:
        torch.manual_seed(seed)
        return concept_cnn(num_classes=data.num_classes, width=width)

    settings = {"train": train, "epochs": epochs, "seed": seed, "width": width, "one_cycle": ONE_CYCLE_LR, "v": 1}
    return cached_model(
        "concept_cnn4", settings, build, lambda model: train_one_cycle(model, images, labels, epochs, seed), cache_dir
    )

"""A small patch-backdoored digits CNN, trained once and cached: the demo model of the scan."""

from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

from ..data import load_digits
from ..models import SpatialCNN
from ..training import TrainingOptions, cached_model, train_classifier
from ._poisoning import PoisonedDataset
from ._triggers import PatchTrigger


def demo_backdoor_model(
    size: int = 16, target: int = 0, seed: int = 0, epochs: int = 10, show_progress: bool = False
) -> Tuple[nn.Module, PatchTrigger]:
    """A SpatialCNN trained on digits with 10% of the training set carrying a 3 x 3 white patch.

    The model is cached by its settings (see :func:`~captum_classpattern.training.cached_model`),
    so only the first call trains it.

    Args:
        size: side of the digits images; a multiple of 4 (the CNN pools twice by 2).
        target: the class the poisoned images are relabelled as.
        seed: seeds the poisoning, the weights and the data order.
        epochs: training epochs.
        show_progress: show a progress bar while training.

    Returns:
        ``(model, trigger)``: the backdoored model (in eval mode) and its :class:`PatchTrigger`.

    Example:
        >>> model, trigger = demo_backdoor_model()
        >>> result = scan(model, digits.search.images, digits.search.labels)
    """
    trigger = PatchTrigger()
    settings = {
        "model": "SpatialCNN",
        "width": 16,
        "size": size,
        "target": target,
        "seed": seed,
        "epochs": epochs,
        "trigger": repr(trigger),
        "rate": 0.1,
        "v": 1,
    }

    def build() -> nn.Module:
        torch.manual_seed(seed)
        return SpatialCNN(size, 1, 10, 16)

    def train(model: nn.Module) -> nn.Module:
        split = load_digits(size=size).train
        poisoned = PoisonedDataset((split.images, split.labels), trigger, target=target, rate=0.1, seed=seed)
        images, labels = poisoned.tensors()
        return train_classifier(
            model,
            images,
            labels,
            TrainingOptions(epochs=epochs),
            seed=seed,
            show_progress=show_progress,
            description="training a backdoored digits CNN",
        )

    return cached_model("digits_backdoor", settings, build, train), trigger

"""What the scan figures share: tiny ``SmallCNN`` suspects on 16 x 16 digits, and their quick scans."""

from __future__ import annotations

import torch

from captum_classpattern.backdoor import ScanSettings, ScoringSettings, scan
from captum_classpattern.models import SmallCNN
from captum_classpattern.training import train_classifier

SCORING = ScoringSettings(max_eval=150)


def train_tiny_cnn(images, labels, seed: int, epochs: int):
    """A width-8 ``SmallCNN`` trained on ``images`` with ``seed``."""
    torch.manual_seed(seed)
    return train_classifier(SmallCNN(1, 10, 8), images, labels, epochs=epochs, seed=seed)


def quick_scan(model, search, held, settings: ScanSettings, reference=None):
    """The scan of ``model`` on the ``search`` split, power on the ``held`` split (150 images per class)."""
    return scan(
        model,
        search.images,
        search.labels,
        settings,
        scoring=SCORING,
        eval_images=held.images,
        eval_labels=held.labels,
        reference=reference,
    )

"""The knobs of the training loop shared by :func:`train_classifier` and :func:`adversarial_train`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict

from .._utils import Replaceable, check_positive_float, check_positive_int, refuse_both


@dataclass(frozen=True)
class TrainingOptions(Replaceable):
    """How long and how fast the small training loop runs (Adam, cosine-annealed learning rate).

    Attributes:
        epochs: passes over the data (>= 1).
        lr: Adam's learning rate, cosine-annealed to zero (> 0).
        batch_size: images per step (>= 1).
        weight_decay: Adam's weight decay (>= 0).

    Raises:
        ValueError: a field out of range.

    Example:
        >>> train_classifier(model, images, labels, TrainingOptions(epochs=4, lr=5e-3))
    """

    epochs: int = 10
    lr: float = 2e-3
    batch_size: int = 64
    weight_decay: float = 5e-4

    def __post_init__(self) -> None:
        check_positive_int(self.epochs, "epochs")
        check_positive_float(self.lr, "lr")
        check_positive_int(self.batch_size, "batch_size")
        decay = self.weight_decay
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not decay >= 0:
            raise ValueError(f"weight_decay must be a number >= 0, got {decay!r}.")


OLDER_TRAINING_KEYWORDS = ("epochs", "lr", "batch_size", "weight_decay")
"""The loop's keywords before they were grouped into ``options``."""


OLDER_ADVERSARIAL_KEYWORDS = ("epochs", "lr", "batch_size")
"""``adversarial_train``'s loop keywords before they were grouped into ``options``."""


def fold_training_keywords(older: Dict[str, Any], arguments: Dict[str, Any]) -> None:
    """Move the older ``epochs=``, ``lr=``, ``batch_size=`` and ``weight_decay=`` into ``options``.

    Raises:
        TypeError: ``options`` given as well.
        ValueError: an older keyword out of range.
    """
    refuse_both(older, arguments, OLDER_TRAINING_KEYWORDS, "options")
    arguments["options"] = TrainingOptions(**older)


def check_options(options: Any) -> TrainingOptions:
    """``options`` if it is a :class:`TrainingOptions`.

    Raises:
        TypeError: anything else.
    """
    if not isinstance(options, TrainingOptions):
        raise TypeError(f"options must be a TrainingOptions, got {type(options).__name__}.")
    return options

"""Training classifiers: plain, cached by settings, and adversarially (PGD through ``captum.robust``)."""

from ._adversarial import (
    PGDPerturbation,
    adversarial_train,
    pgd_attack,
    pgd_robust_accuracy,
)
from ._batch_hook import BatchPoisoning, PoisonedBatch
from ._cache import cached_model, default_cache_dir, digits_model
from ._concept import concept_classifier, train_one_cycle
from ._generator import concept_autoencoder, concept_latents, concept_segmenter, train_autoencoder
from ._options import TrainingOptions
from ._recipe import TrainingRecipe, TrainingRun, augment, train_with_recipe
from ._train import accuracy, train_classifier

__all__ = [
    "train_classifier",
    "TrainingOptions",
    "train_with_recipe",
    "TrainingRecipe",
    "TrainingRun",
    "augment",
    "BatchPoisoning",
    "PoisonedBatch",
    "accuracy",
    "cached_model",
    "digits_model",
    "concept_classifier",
    "train_one_cycle",
    "default_cache_dir",
    "adversarial_train",
    "pgd_attack",
    "pgd_robust_accuracy",
    "PGDPerturbation",
    "train_autoencoder",
    "concept_autoencoder",
    "concept_latents",
    "concept_segmenter",
]

"""Backdoors: triggers, poisoned training sets, attack metrics, and finding them again with class patterns (:func:`scan`) or Neural Cleanse."""

from ._attack_metrics import (
    BackdoorMetrics,
    attack_success_rate,
    backdoor_metrics,
    clean_accuracy,
    trigger_robust_accuracy,
)
from ._demo import demo_backdoor_model
from ._neural_cleanse import NeuralCleanseResult, neural_cleanse
from ._poisoning import PoisonedDataset
from ._scan import (
    ScanResult,
    SuspicionResult,
    scan,
    suspicion_scores,
)
from ._triggers import BlendTrigger, PatchTrigger, Trigger

__all__ = [
    "Trigger",
    "PatchTrigger",
    "BlendTrigger",
    "PoisonedDataset",
    "clean_accuracy",
    "attack_success_rate",
    "trigger_robust_accuracy",
    "backdoor_metrics",
    "BackdoorMetrics",
    "scan",
    "ScanResult",
    "suspicion_scores",
    "SuspicionResult",
    "neural_cleanse",
    "NeuralCleanseResult",
    "demo_backdoor_model",
]

"""Backdoors: triggers, poisoned training sets, attack metrics, and finding them again.

A backdoor is found with class patterns (:func:`scan`, :func:`suspicion_scores`) or with
the Neural Cleanse baseline (:func:`neural_cleanse`); each takes a settings object.
"""

from ._attack_metrics import (
    BackdoorMetrics,
    attack_success_rate,
    backdoor_metrics,
    clean_accuracy,
    trigger_robust_accuracy,
)
from ._blend_probe import BLEND_STRENGTHS, BlendProbe, BlendTable
from ._demo import demo_backdoor_model
from ._neural_cleanse import NeuralCleanseResult, neural_cleanse
from ._poisoning import PoisonedDataset
from ._scan import scan
from ._scan_arguments import KnownTrigger
from ._scan_result import ScanResult
from ._scan_scores import PowerTable
from ._settings import (
    SCORES,
    NeuralCleanseSettings,
    ScanConfig,
    ScanSettings,
    ScoringSettings,
    SuspicionSettings,
    TriggerRecoverySettings,
)
from ._suspicion import SuspicionResult, suspicion_scores
from ._triggers import BlendTrigger, PatchTrigger, Trigger

__all__ = [
    "SCORES",
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
    "ScanConfig",
    "KnownTrigger",
    "ScanSettings",
    "ScoringSettings",
    "TriggerRecoverySettings",
    "ScanResult",
    "PowerTable",
    "BlendProbe",
    "BlendTable",
    "BLEND_STRENGTHS",
    "suspicion_scores",
    "SuspicionSettings",
    "SuspicionResult",
    "neural_cleanse",
    "NeuralCleanseSettings",
    "NeuralCleanseResult",
    "demo_backdoor_model",
]

"""Backdoors: triggers, poisoned training sets, attack metrics, and finding them again.

A backdoor is found with class patterns (:func:`scan`, :func:`suspicion_scores`) or with
the Neural Cleanse baseline (:func:`neural_cleanse`); each takes a settings object.
"""

from ._adaptive_blend import (
    ADAPTIVE_BLEND_COVER_RATE,
    ADAPTIVE_BLEND_RATE,
    AdaptiveBlendTrainingTrigger,
    AdaptiveBlendTrigger,
)
from ._attack_metrics import (
    BackdoorMetrics,
    attack_success_rate,
    backdoor_metrics,
    clean_accuracy,
    trigger_robust_accuracy,
)
from ._backdoorbench import BACKDOORBENCH_MODELS, BACKDOORBENCH_NORMALIZATION, BackdoorBenchRecord, load_backdoorbench
from ._bit_depth import BitDepthTrigger, ResidualTrigger
from ._blend_probe import BLEND_STRENGTHS, BlendProbe, BlendTable
from ._demo import demo_backdoor_model
from ._input_aware import InputAwarePoisoning, InputAwareSettings, InputAwareTrigger
from ._input_aware_nets import TriggerGenerator
from ._label_consistent import (
    LC_EPS,
    LC_STEP_SIZE,
    LC_STEPS,
    LabelConsistentTrigger,
    label_consistent_dataset,
    label_consistent_images,
)
from ._max_margin import MaxMarginResult, MaxMarginSettings, gamma_p_value, max_margin_detection
from ._neural_cleanse import NeuralCleanseResult, neural_cleanse
from ._poisoning import PoisonedDataset
from ._scan import scan
from ._scan_arguments import KnownTrigger
from ._scan_remeasure import remeasure
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
from ._signal import SignalTrigger
from ._suspicion import SuspicionResult, suspicion_scores
from ._trigger_check import (
    PLACE_FREE,
    LocatedTrigger,
    locate_trigger,
    trigger_elsewhere,
    trigger_mirror_success,
    trigger_success,
)
from ._triggers import BlendTrigger, PatchTrigger, Trigger
from ._warp import WarpPoisoning, WarpTrigger
from ._warp_probe import WARP_PIXELS, WarpProbe, probe_warps, warp_images

__all__ = [
    "SCORES",
    "Trigger",
    "PatchTrigger",
    "BlendTrigger",
    "SignalTrigger",
    "BitDepthTrigger",
    "ResidualTrigger",
    "WarpTrigger",
    "WarpPoisoning",
    "InputAwareTrigger",
    "InputAwarePoisoning",
    "InputAwareSettings",
    "TriggerGenerator",
    "PoisonedDataset",
    "clean_accuracy",
    "attack_success_rate",
    "trigger_robust_accuracy",
    "backdoor_metrics",
    "BackdoorMetrics",
    "scan",
    "remeasure",
    "ScanConfig",
    "KnownTrigger",
    "ScanSettings",
    "ScoringSettings",
    "TriggerRecoverySettings",
    "ScanResult",
    "PowerTable",
    "BlendProbe",
    "BlendTable",
    "WarpProbe",
    "WARP_PIXELS",
    "probe_warps",
    "warp_images",
    "BLEND_STRENGTHS",
    "suspicion_scores",
    "SuspicionSettings",
    "SuspicionResult",
    "neural_cleanse",
    "max_margin_detection",
    "MaxMarginSettings",
    "MaxMarginResult",
    "gamma_p_value",
    "NeuralCleanseSettings",
    "NeuralCleanseResult",
    "demo_backdoor_model",
    "locate_trigger",
    "LocatedTrigger",
    "trigger_elsewhere",
    "trigger_mirror_success",
    "PLACE_FREE",
    "trigger_success",
    "LabelConsistentTrigger",
    "label_consistent_images",
    "label_consistent_dataset",
    "LC_EPS",
    "LC_STEP_SIZE",
    "LC_STEPS",
    "AdaptiveBlendTrigger",
    "AdaptiveBlendTrainingTrigger",
    "ADAPTIVE_BLEND_RATE",
    "ADAPTIVE_BLEND_COVER_RATE",
    "load_backdoorbench",
    "BackdoorBenchRecord",
    "BACKDOORBENCH_MODELS",
    "BACKDOORBENCH_NORMALIZATION",
]

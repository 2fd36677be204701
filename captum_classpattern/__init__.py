"""captum_classpattern: class-wise pattern search (Zhao et al. 2021) for Captum.

The main entry point is :class:`ClassPattern`, a Captum attribution that learns, for a
canvas image of class ``c``, which of its pixels make images of other classes look like
``c``. Patterns, metrics, data, models and the command line live in small submodules.
"""
from .ablation import (
    AblationCurves,
    PatternUnits,
    UnitRanking,
    ablate_units,
    ablation_curves,
    balanced_accuracy_per_class,
    rank_units_for_class,
    units_responding_to_pattern,
)
from .adversarial import adversarial_train, pgd_attack, pgd_robust_accuracy
from .backdoor import BlendTrigger, PatchTrigger, PoisonedDataset, attack_success_rate, backdoor_metrics
from .canvas import select_canvases
from .class_pattern import ClassPattern, SearchStats
from .concepts import ConceptDataset
from .data import load_cifar10, load_digits, load_image_folder
from .distributed import init_distributed, is_main_process, shard
from .dissection import DissectionResult, dissect, plot_top_activations
from .metrics import (
    PowerCurve,
    anomaly_index,
    captum_attribution,
    floor_rate,
    power_curve,
    predictive_power,
    random_pixel_power,
)
from .models import SmallCNN, SpatialCNN, cifar_resnet
from .pattern import Pattern, random_pattern, top_k_pattern
from .neural_cleanse import NeuralCleanseResult
from .pipeline import SearchOutcome, search_classes
from .report import ClassReport, SearchReport, load_report
from .scan import ScanResult, SuspicionResult, suspicion_scores, trigger_jaccard
from .schedule import DEFAULT_SCHEDULE, PAPER_SCHEDULE, SearchSchedule
from .training import accuracy, train_classifier
from .visualization import (
    pattern_image,
    plot_anomaly_indices,
    plot_class_patterns,
    plot_power_curves,
    plot_settings_comparison,
    visualize_class_pattern,
)

__version__ = "0.1.0"

__all__ = [
    "ClassPattern",
    "SearchStats",
    "SearchSchedule",
    "DEFAULT_SCHEDULE",
    "PAPER_SCHEDULE",
    "Pattern",
    "top_k_pattern",
    "random_pattern",
    "predictive_power",
    "floor_rate",
    "random_pixel_power",
    "power_curve",
    "PowerCurve",
    "captum_attribution",
    "anomaly_index",
    "select_canvases",
    "load_digits",
    "load_cifar10",
    "load_image_folder",
    "SmallCNN",
    "SpatialCNN",
    "cifar_resnet",
    "train_classifier",
    "accuracy",
    "SearchReport",
    "ClassReport",
    "load_report",
    "visualize_class_pattern",
    "plot_class_patterns",
    "plot_settings_comparison",
    "plot_power_curves",
    "plot_anomaly_indices",
    "pattern_image",
    "dissect",
    "DissectionResult",
    "plot_top_activations",
    "ConceptDataset",
    "ablate_units",
    "balanced_accuracy_per_class",
    "rank_units_for_class",
    "UnitRanking",
    "ablation_curves",
    "AblationCurves",
    "units_responding_to_pattern",
    "PatternUnits",
    "PatchTrigger",
    "BlendTrigger",
    "PoisonedDataset",
    "attack_success_rate",
    "backdoor_metrics",
    "ScanResult",
    "SuspicionResult",
    "suspicion_scores",
    "trigger_jaccard",
    "NeuralCleanseResult",
    "pgd_attack",
    "adversarial_train",
    "pgd_robust_accuracy",
    "search_classes",
    "SearchOutcome",
    "init_distributed",
    "is_main_process",
    "shard",
]

# ``scan``, ``neural_cleanse`` and ``simplicity`` are functions named like their modules;
# they stay in their modules (``from captum_classpattern.scan import scan``) so that the
# package attribute keeps naming the module.

"""captum_classpattern: class-wise pattern search (Zhao et al. 2021) for Captum.

The main entry point is :class:`ClassPattern`, a Captum attribution that learns, for a
canvas image of class ``c``, which of its pixels make images of other classes look like
``c``. Patterns, metrics, data, models and the command line live in small submodules.
"""
from .canvas import select_canvases
from .class_pattern import ClassPattern, SearchStats
from .data import load_cifar10, load_digits, load_image_folder
from .metrics import (
    PowerCurve,
    anomaly_index,
    captum_attribution,
    floor_rate,
    power_curve,
    predictive_power,
    random_pixel_power,
)
from .models import SmallCNN, cifar_resnet
from .pattern import Pattern, random_pattern, top_k_pattern
from .report import ClassReport, SearchReport, load_report
from .schedule import DEFAULT_SCHEDULE, PAPER_SCHEDULE, SearchSchedule
from .training import accuracy, train_classifier

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
    "cifar_resnet",
    "train_classifier",
    "accuracy",
    "SearchReport",
    "ClassReport",
    "load_report",
]

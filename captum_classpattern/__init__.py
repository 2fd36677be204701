"""captum_classpattern: class-wise pattern search (Zhao et al. 2021) for Captum.

The everyday names live here: :class:`ClassPattern` (the attribution), the patterns it
yields and the numbers that measure them, the embedded data and the multi-class search.
Everything else is grouped by domain in subpackages:

* :mod:`captum_classpattern.attr`: the attribution, its schedules, search sets and canvases;
* :mod:`captum_classpattern.metrics`: predictive power, curves, anomaly indices, simplicity;
* :mod:`captum_classpattern.backdoor`: triggers, poisoning, attack metrics, the backdoor scan
  and Neural Cleanse;
* :mod:`captum_classpattern.training`: training, cached models, adversarial training;
* :mod:`captum_classpattern.data` and :mod:`captum_classpattern.models`: offline data and
  small architectures;
* :mod:`captum_classpattern.dissection`: network dissection and unit ablation;
* :mod:`captum_classpattern.visualization`: every figure, in Captum's vocabulary;
* :mod:`captum_classpattern.pipeline`: many classes at once, reports, ``torchrun``;
* :mod:`captum_classpattern.cli`: the ``classpattern`` command.
"""

from . import attr, backdoor, cli, data, dissection, metrics, models, pipeline, training, visualization
from ._version import __version__ as __version__
from .attr import (
    DEFAULT_SCHEDULE,
    PAPER_SCHEDULE,
    ClassPattern,
    Pattern,
    SearchSchedule,
    SearchStats,
    random_pattern,
    select_canvases,
    top_k_pattern,
)
from .data import load_digits, load_photo_digits
from .metrics import (
    PowerCurve,
    captum_attribution,
    floor_rate,
    power_curve,
    predictive_power,
    random_pixel_power,
)
from .pipeline import SearchReport, search_classes
from .visualization import plot_class_patterns, visualize_class_pattern

__all__ = [
    # the everyday names, alphabetically
    "captum_attribution",
    "ClassPattern",
    "DEFAULT_SCHEDULE",
    "floor_rate",
    "load_digits",
    "load_photo_digits",
    "PAPER_SCHEDULE",
    "Pattern",
    "plot_class_patterns",
    "power_curve",
    "PowerCurve",
    "predictive_power",
    "random_pattern",
    "random_pixel_power",
    "search_classes",
    "SearchReport",
    "SearchSchedule",
    "SearchStats",
    "select_canvases",
    "top_k_pattern",
    "visualize_class_pattern",
    # the subpackages
    "attr",
    "metrics",
    "backdoor",
    "training",
    "data",
    "models",
    "dissection",
    "visualization",
    "pipeline",
    "cli",
]

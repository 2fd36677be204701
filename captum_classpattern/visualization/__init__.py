"""Figures in the vocabulary of Captum's ``visualize_image_attr``: patterns, maps, curves, scans, dissection."""

from ._dissection import plot_top_activations
from ._patterns import (
    GRAY_GROUND,
    IMAGE_METHODS,
    RGB_GROUND,
    SIGNS,
    pattern_image,
    plot_anomaly_indices,
    plot_class_patterns,
    plot_power_curves,
    plot_settings_comparison,
    visualize_class_pattern,
)
from ._scan import plot_scan

__all__ = [
    "IMAGE_METHODS",
    "SIGNS",
    "RGB_GROUND",
    "GRAY_GROUND",
    "visualize_class_pattern",
    "pattern_image",
    "plot_class_patterns",
    "plot_settings_comparison",
    "plot_power_curves",
    "plot_anomaly_indices",
    "plot_scan",
    "plot_top_activations",
]

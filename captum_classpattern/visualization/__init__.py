"""Figures in the vocabulary of Captum's ``visualize_image_attr``: patterns, maps, curves, scans, dissection.

Also a self-contained HTML page of tables, figures and settings (:func:`html_report`).
"""

from ._anomaly import plot_anomaly_indices
from ._display import PanelOptions, TopActivationsOptions
from ._dissection import plot_top_activations
from ._generator import plot_generated_edits
from ._grids import PATTERN_ROWS, plot_class_patterns, plot_settings_comparison
from ._html import ReportFigure, ReportImage, ReportSection, html_report, png_bytes
from ._pattern_image import GRAY_GROUND, RGB_GROUND, pattern_image
from ._power_curves import plot_power_curves
from ._scan import plot_scan
from ._single_panel import IMAGE_METHODS, SIGNS, visualize_class_pattern

__all__ = [
    "IMAGE_METHODS",
    "SIGNS",
    "PATTERN_ROWS",
    "RGB_GROUND",
    "GRAY_GROUND",
    "visualize_class_pattern",
    "PanelOptions",
    "pattern_image",
    "plot_class_patterns",
    "plot_settings_comparison",
    "plot_power_curves",
    "plot_anomaly_indices",
    "plot_scan",
    "plot_top_activations",
    "TopActivationsOptions",
    "plot_generated_edits",
    "html_report",
    "ReportSection",
    "ReportFigure",
    "png_bytes",
    "ReportImage",
]

"""How good a pattern is: predictive power and its floor and chance levels, curves over k.

Also the Captum baselines (method names, attribution objects or callables) measured the same
way, anomaly indices and outlier flags, trigger Jaccard and the simplicity of a pattern's shape.
"""

from ._captum_baselines import (
    CAPTUM_BASELINES,
    RESERVED_NAMES,
    BaselineMethod,
    Baselines,
    CaptumBaseline,
    captum_attribution,
    resolve_baselines,
)
from ._interval import wilson_interval
from ._jaccard import trigger_jaccard
from ._outliers import anomaly_index, flag_outliers, suspicious_side
from ._power import (
    PowerCurve,
    floor_rate,
    power_curve,
    predictive_power,
    random_pixel_power,
)
from ._simplicity import (
    Simplicity,
    compactness,
    connected_components,
    simplicity,
    summarise_simplicity,
    total_variation,
)

__all__ = [
    "predictive_power",
    "floor_rate",
    "random_pixel_power",
    "power_curve",
    "PowerCurve",
    "captum_attribution",
    "CAPTUM_BASELINES",
    "CaptumBaseline",
    "resolve_baselines",
    "BaselineMethod",
    "Baselines",
    "RESERVED_NAMES",
    "anomaly_index",
    "flag_outliers",
    "suspicious_side",
    "trigger_jaccard",
    "wilson_interval",
    "simplicity",
    "Simplicity",
    "summarise_simplicity",
    "connected_components",
    "total_variation",
    "compactness",
]

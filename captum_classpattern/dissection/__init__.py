"""Network dissection (Bau et al. 2020): which concept each unit detects, which units a class needs, procedural concept data."""

from ._ablation import (
    AblationCurves,
    PatternUnits,
    UnitRanking,
    ablate_units,
    ablation_curves,
    balanced_accuracy_per_class,
    rank_units_for_class,
    units_responding_to_pattern,
)
from ._activations import unit_activations
from ._concepts import ConceptDataset
from ._dissect import DissectionResult, dissect
from ._hooks import LayerSpec

__all__ = [
    "unit_activations",
    "dissect",
    "DissectionResult",
    "LayerSpec",
    "ablate_units",
    "balanced_accuracy_per_class",
    "rank_units_for_class",
    "UnitRanking",
    "ablation_curves",
    "AblationCurves",
    "units_responding_to_pattern",
    "PatternUnits",
    "ConceptDataset",
]

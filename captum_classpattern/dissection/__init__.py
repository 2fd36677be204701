"""Network dissection (Bau et al. 2020): which concept each unit detects, which units a class needs.

Also the link from class patterns to the units that carry them, and procedural concept data.
"""

from ._ablate import ablate_units
from ._activations import unit_activations
from ._attack_units import AttackSettings, AttackUnitShift, UnitOverlap, attack_unit_shift, unit_overlap
from ._balanced import balanced_accuracy_per_class
from ._causal import AblationEffect, CausalSettings, InsertionEffect, ablation_effect, insertion_effect
from ._concepts import ConceptDataset
from ._dissect import dissect
from ._editing import UnitChange, UnitEdit, edit_with_units
from ._generator import dissect_generator
from ._hooks import LayerSpec
from ._intervene import Intervention, intervene
from ._pattern_units import PatternUnits, PatternUnitsSettings, units_responding_to_pattern
from ._ranking import AblationCurves, AblationSettings, UnitRanking, ablation_curves, rank_units_for_class
from ._result import DissectionResult
from ._segment import ConceptSegmenter, segmentation_iou
from ._settings import DissectionSettings, ThresholdSettings

__all__ = [
    "unit_activations",
    "dissect",
    "DissectionResult",
    "DissectionSettings",
    "ThresholdSettings",
    "LayerSpec",
    "ablate_units",
    "balanced_accuracy_per_class",
    "rank_units_for_class",
    "UnitRanking",
    "ablation_curves",
    "AblationSettings",
    "AblationCurves",
    "units_responding_to_pattern",
    "PatternUnits",
    "PatternUnitsSettings",
    "ConceptDataset",
    "intervene",
    "Intervention",
    "attack_unit_shift",
    "AttackUnitShift",
    "AttackSettings",
    "unit_overlap",
    "UnitOverlap",
    "dissect_generator",
    "ConceptSegmenter",
    "segmentation_iou",
    "CausalSettings",
    "ablation_effect",
    "AblationEffect",
    "insertion_effect",
    "InsertionEffect",
    "edit_with_units",
    "UnitEdit",
    "UnitChange",
]

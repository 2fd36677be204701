"""A scan's result as a JSON-ready dict: the summary first, then the tables, maps and values."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict

if TYPE_CHECKING:  # the result module imports this one
    from ._scan_result import ScanResult


def scan_record(result: ScanResult) -> Dict[str, Any]:
    """The dict :meth:`ScanResult.to_dict` gives (``ScanResult.from_dict`` reads it back).

    Args:
        result: the scan's result.

    Returns:
        A dict of lists, numbers and strings; the per-class entries follow ``result.classes``.
    """
    triggers = sorted(result.trigger_maps.items())
    return {
        "classes": list(result.classes),
        "score": result.score,
        "direction": result.direction,
        "scores": list(result.scores),
        "suspect_scores": list(result.suspect_scores),
        "reference_scores": list(result.reference_scores),
        "anomaly_index": list(result.anomaly_index),
        "reference_spread": result.reference_spread,
        "flagged": list(result.flagged),
        "pattern_flagged": list(result.pattern_flagged),
        "blend_flagged": list(result.blend_flagged),
        "collapsed": list(result.collapsed),
        "class_accuracy": list(result.class_accuracy),
        "blend_scores": list(result.blend_scores),
        "blend_anomaly_index": list(result.blend_anomaly_index),
        "blend_reference_spread": result.blend_reference_spread,
        "pattern_sizes": [p.k for p in result.patterns],
        "powers": list(result.powers),
        "trigger_classes": [c for c, _ in triggers],
        "trigger_sizes": {str(c): int((m >= 0.5).sum()) for c, m in triggers},
        "trigger_success": {str(c): s for c, s in sorted(result.trigger_success.items())},
        "reported_triggers": result.reported_triggers,
        "trigger_jaccard": result.trigger_jaccard,
        "jaccard_class": result.jaccard_class,
        "seconds": result.seconds,
        "scoring": result.scoring.to_dict(),
        "settings": result.settings.to_dict(),
        "recovery": result.recovery.to_dict(),
        "seed": result.seed,
        "table": result.table.to_dict(),
        "reference_tables": [table.to_dict() for table in result.reference_tables],
        "dtype": str(result.maps.dtype).replace("torch.", ""),
        "maps": result.maps.tolist(),
        "values": result.values.tolist(),
        "trigger_maps": {str(c): m.tolist() for c, m in triggers},
        "trigger_values": {str(c): v.tolist() for c, v in sorted(result.trigger_values.items())},
        "blend": None if result.blend is None else result.blend.to_dict(),
    }

"""A scan's result as a JSON-ready dict: the summary first, then the tables, maps and values."""

from __future__ import annotations

from typing import Any, Dict, List

import torch

from ._scan_arguments import TriggerFindings
from ._settings import ScanConfig, ScanSettings, ScoringSettings, TriggerRecoverySettings


def scan_record(result: Any) -> Dict[str, Any]:
    """The dict :meth:`ScanResult.to_dict` gives (``ScanResult.from_dict`` reads it back).

    Args:
        result: the scan's ``ScanResult`` (typed loosely: its module imports this one).

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
        "weakened": list(result.weakened),
        "accuracy_index": list(result.accuracy_index),
        "reference_accuracy": [list(row) for row in result.reference_accuracy],
        "blend_scores": list(result.blend_scores),
        "blend_anomaly_index": list(result.blend_anomaly_index),
        "blend_reference_spread": result.blend_reference_spread,
        "warp_flagged": list(result.warp_flagged),
        "warp_scores": list(result.warp_scores),
        "warp_anomaly_index": list(result.warp_anomaly_index),
        "warp_reference_spread": result.warp_reference_spread,
        "pattern_sizes": [p.k for p in result.patterns],
        "powers": list(result.powers),
        "trigger_classes": [c for c, _ in triggers],
        "trigger_sizes": {str(c): int((m >= 0.5).sum()) for c, m in triggers},
        "trigger_success": {str(c): s for c, s in sorted(result.trigger_success.items())},
        "trigger_elsewhere": {str(c): s for c, s in sorted(result.trigger_elsewhere.items())},
        "trigger_mirrored": {str(c): s for c, s in sorted(result.trigger_mirrored.items())},
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
        "warp": None if result.warp is None else result.warp.to_dict(),
    }


def set_every_field(record: Any, names: List[str], fields: Dict[str, Any]) -> None:
    """Set each of a frozen ``ScanResult``'s fields from ``fields``, which must name every one and no other.

    Raises:
        TypeError: a field missing or unknown.
    """
    missing, unknown = [n for n in names if n not in fields], sorted(set(fields) - set(names))
    if missing or unknown:
        raise TypeError(
            f"ScanResult takes every field by name (missing: {missing}, unknown: {unknown}); "
            "build one with score_scan, or from a scan's dict with ScanResult.from_dict."
        )
    for name in names:
        object.__setattr__(record, name, fields[name])


def config_as_written(data: Dict[str, Any]) -> ScanConfig:
    """The settings a record was scanned with, as the record has them.

    Records written before a setting existed ran without it: without ``warp_steps`` the
    scan had no warp probe, without ``warp_batch_size`` the probe learned on the search's
    ``batch_size``, without ``reference_spread`` it flagged without that floor.

    Args:
        data: the record (``ScanResult.to_dict``'s output, of any version).

    Returns:
        The :class:`ScanConfig`.
    """
    search, scoring = dict(data.get("settings", {})), dict(data.get("scoring", {}))
    search.setdefault("warp_steps", 0)
    search.setdefault("warp_batch_size", search.get("batch_size", ScanSettings().batch_size))
    scoring.setdefault("reference_spread", False)
    return ScanConfig(
        ScanSettings.from_dict(search),
        ScoringSettings.from_dict(scoring),
        TriggerRecoverySettings.from_dict(data.get("recovery", {})),
    )


def triggers_as_written(data: Dict[str, Any], dtype: torch.dtype) -> TriggerFindings:
    """The recovered triggers of a record (``ScanResult.to_dict``'s output, of any version), tensors of ``dtype``."""
    return TriggerFindings(
        maps={int(c): torch.tensor(m, dtype=dtype) for c, m in data.get("trigger_maps", {}).items()},
        values={int(c): torch.tensor(v, dtype=dtype) for c, v in data.get("trigger_values", {}).items()},
        jaccard=data.get("trigger_jaccard"),
        jaccard_class=data.get("jaccard_class"),
        success={int(c): float(s) for c, s in data.get("trigger_success", {}).items()},
        elsewhere={int(c): float(s) for c, s in data.get("trigger_elsewhere", {}).items()},
        mirrored={int(c): float(s) for c, s in data.get("trigger_mirrored", {}).items()},
    )

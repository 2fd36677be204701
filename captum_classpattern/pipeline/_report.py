"""The search report: per-class predictive power beside its floor, chance and Captum baselines."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, List, Optional, Tuple

from .._utils import JsonFile


@dataclass
class ClassReport:
    """One class's row of a report.

    Attributes:
        class_: the class index (``"class"`` in JSON).
        k: pattern size in pixels.
        predictive_power: share of held-out other-class images the pattern flips to the class.
        floor: share already classified as the class without a pattern.
        random: power of ``k`` random canvas pixels.
        baselines: a Captum baseline's display name to the power of its top-k pixels.
        name: the class's name.
        power_interval: ``(low, high)``, the confidence interval of ``predictive_power``
            when it was measured on a sample (a :class:`~captum_classpattern.pipeline.PowerSample`);
            ``None`` otherwise.
        measured: the number of held-out images the power was measured on, with the interval.
    """

    class_: int
    k: int
    predictive_power: float
    floor: float
    random: float
    baselines: Dict[str, float] = field(default_factory=dict)
    name: Optional[str] = None
    power_interval: Optional[Tuple[float, float]] = None
    measured: Optional[int] = None

    def __post_init__(self) -> None:
        if self.power_interval is not None:  # JSON gives a list back
            self.power_interval = (float(self.power_interval[0]), float(self.power_interval[1]))

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready mapping with the key ``"class"``; the interval and its count only when measured."""
        data = asdict(self)
        data["class"] = data.pop("class_")
        for key in ("power_interval", "measured"):
            if data[key] is None:
                del data[key]
        if "power_interval" in data:
            data["power_interval"] = list(data["power_interval"])
        return {"class": data["class"], **{key: value for key, value in data.items() if key != "class"}}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> ClassReport:
        """Rebuild a row from :meth:`to_dict`'s mapping.

        Raises:
            ValueError: the mapping lacks a field or has unknown ones.
        """
        entry = dict(data)
        if "class" not in entry:
            raise ValueError("a class report needs a 'class' entry.")
        entry["class_"] = entry.pop("class")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(entry) - known)
        if unknown:
            raise ValueError(f"unknown class report fields: {unknown}.")
        try:
            return cls(**entry)
        except TypeError as error:
            raise ValueError(f"incomplete class report: {error}.") from error


@dataclass
class SearchReport(JsonFile):
    """A report over classes, plus the model's test accuracy and free-form settings.

    ``to_json(path)`` writes it atomically, ``SearchReport.from_json(path)`` reads it back
    (a ``ValueError`` names a file that is not JSON or not a search report).

    Attributes:
        classes: one :class:`ClassReport` per class, in search order.
        test_accuracy: the model's top-1 accuracy on held-out images.
        settings: what produced the report (schedule, seed, data, ...).
    """

    classes: List[ClassReport]
    test_accuracy: Optional[float] = None
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready mapping."""
        return {
            "test_accuracy": self.test_accuracy,
            "settings": self.settings,
            "classes": [row.to_dict() for row in self.classes],
        }

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> SearchReport:
        """Rebuild a report from :meth:`to_dict`'s mapping.

        Raises:
            ValueError: the mapping is not a search report.
        """
        if not isinstance(data, dict) or not isinstance(data.get("classes"), list):
            raise ValueError("not a classpattern search report (no 'classes' list).")
        rows = [ClassReport.from_dict(entry) for entry in data["classes"]]
        return cls(rows, data.get("test_accuracy"), dict(data.get("settings") or {}))

    def mean(self, key: str) -> float:
        """Mean of a per-class number (``"predictive_power"``, ``"floor"``, ``"random"``) or baseline name."""
        if not self.classes:
            raise ValueError("the report has no classes.")
        values = [row.baselines[key] if key in row.baselines else getattr(row, key) for row in self.classes]
        return sum(values) / len(values)

    def table(self) -> str:
        """A plain-text table, one row per class and a mean row (a baseline's column as wide as its name)."""
        methods = list(self.classes[0].baselines) if self.classes else []
        intervals = any(row.power_interval is not None for row in self.classes)
        header = ["class", "k", "power"] + (["power CI", "n"] if intervals else []) + ["floor", "random"] + methods
        widths = [7] * 3 + ([13, 6] if intervals else []) + [7] * 2 + [max(19, len(method)) for method in methods]

        def line(cells: List[str]) -> str:
            return " ".join(f"{cell:>{width}}" for cell, width in zip(cells, widths))

        lines = [line(header)]
        for row in self.classes:
            cells = [
                row.name or str(row.class_),
                str(row.k),
                f"{row.predictive_power:.3f}",
            ]
            if intervals:
                cells += [_interval_text(row.power_interval), "" if row.measured is None else str(row.measured)]
            cells += [f"{row.floor:.3f}", f"{row.random:.3f}"] + [f"{row.baselines[m]:.3f}" for m in methods]
            lines.append(line(cells))
        if self.classes:
            cells = [
                "mean",
                "",
                f"{self.mean('predictive_power'):.3f}",
            ]
            cells += ["", ""] if intervals else []
            cells += [f"{self.mean('floor'):.3f}", f"{self.mean('random'):.3f}"] + [
                f"{self.mean(m):.3f}" for m in methods
            ]
            lines.append(line(cells))
        return "\n".join(lines)


def _interval_text(interval: Optional[Tuple[float, float]]) -> str:
    return "" if interval is None else f"{interval[0]:.3f}-{interval[1]:.3f}"

"""The HTML pages of ``demo``/``search`` (``report.html``) and ``scan`` (``scan.html``).

Each page is one self-contained file (see :func:`~captum_classpattern.visualization.html_report`):
the per-class table (sortable), the figure, the settings of the run and the versions of the
software that produced it.
"""

from __future__ import annotations

import platform
from typing import Any, Dict, List, Mapping, Optional, Sequence

import captum
import torch

from .._version import __version__
from ..attr import Pattern
from ..backdoor import PLACE_FREE, ScanResult
from ..pipeline import ClassReport, SearchReport
from ..visualization import ReportFigure, ReportSection, html_report, pattern_image

SEARCH_COLUMNS = {
    "class": "the class number",
    "name": "its name",
    "k": "pattern size in pixels",
    "predictive power": "share of held-out images of the other classes that the class pattern, pasted onto "
    "them, makes the model classify as the class",
    "power low": "lower end of the 95% Wilson confidence interval of the predictive power",
    "power high": "its upper end",
    "images measured": "the held-out images the power was measured on",
    "floor": "share already classified as the class without a pattern",
    "random": "power of k random pixels of the same canvas",
}
"""What each column of the search table means; a column not listed is a Captum method's top-k power."""

SCAN_COLUMNS = {
    "class": "the class number",
    "name": "its name",
    "score": "the class score the scan compares",
    "anomaly index": "how far the score lies from the median of all classes, in median absolute deviations",
    "k": "pixels of the class's recovered pattern",
    "power": "its predictive power on held-out images",
    "blend anomaly index": "the blend probe's anomaly index, which finds blended triggers",
    "warp anomaly index": "the warp probe's anomaly index, which finds warping triggers",
    "accuracy": "the share of the class's held-out images the model classifies as it",
    "accuracy index": "how far below the references' accuracy of the class it lies, relative to the other classes",
    "flagged": "whether an anomaly index exceeds its threshold on the suspicious side, or the class collapsed or "
    "weakened",
}
"""What each column of the scan table means."""

_SORTING = "Click a column header to sort by it; click again to reverse."


def legend(columns: Sequence[str], meanings: Mapping[str, str], other: str = "") -> str:
    """The text above a table: what each of its columns means, in its order, and nothing it does not have.

    Args:
        columns: the table's columns.
        meanings: a description per known column.
        other: the description of a column not in ``meanings`` (``{}`` stands for its name);
            empty: such a column is not described.

    Returns:
        The text, one sentence per column, then how to sort.
    """
    parts = []
    for column in columns:
        meaning = meanings.get(column) or (other.format(column) if other else "")
        if meaning:
            parts.append(f"{column}: {meaning}.")
    return "One row per class. " + " ".join(parts) + "\n\n" + _SORTING


def versions() -> Dict[str, str]:
    """The versions of the software that wrote a report: this package, torch, captum and Python."""
    return {
        "captum_classpattern": __version__,
        "torch": torch.__version__,
        "captum": str(getattr(captum, "__version__", "unknown")),
        "python": platform.python_version(),
    }


def trigger_location(trigger: Pattern) -> str:
    """Where a recovered trigger lies: ``rows 12-14, columns 12-14``, or ``empty``."""
    if not trigger.k:
        return "empty"
    rows, cols = trigger.mask.nonzero(as_tuple=True)
    return f"rows {int(rows.min())}-{int(rows.max())}, columns {int(cols.min())}-{int(cols.max())}"


def mirror_location(trigger: Pattern) -> Optional[str]:
    """Where a recovered trigger lies flipped left to right; ``None`` where that is its own place."""
    mirrored = trigger.mask.flip(-1)
    if not trigger.k or torch.equal(mirrored, trigger.mask):
        return None
    return trigger_location(Pattern(mirrored, trigger.values.flip(-1)))


def place_free(elsewhere: Optional[float]) -> bool:
    """Whether a trigger that works at this share of other places is printed without a place."""
    return elsewhere is not None and elsewhere >= PLACE_FREE


def mirror_claimed(mirrored: Optional[float], mirror_where: Optional[str], min_success: float) -> bool:
    """Whether a printed place has a mirror image to print beside it: one that differs and works too."""
    return mirror_where is not None and mirrored is not None and mirrored >= min_success


def trigger_place(result: ScanResult, cls: int) -> str:
    """What a scan can say of where class ``cls``'s recovered trigger lies, in image coordinates.

    Its place (:func:`trigger_location`), with its mirror image's when the trigger works
    flipped left to right too; ``anywhere`` when it works at half of the other places tried
    (``PLACE_FREE``); ``not reported`` below the held-out success a trigger is trusted from.
    """
    if cls not in result.reported_triggers:
        return f"not reported (held-out success {result.trigger_success.get(cls, 0.0):.2f})"
    elsewhere = result.trigger_elsewhere.get(cls)
    if place_free(elsewhere):
        return f"anywhere ({elsewhere:.0%} of the other places tried)"
    trigger = result.recovered_trigger(cls)
    place, mirror = trigger_location(trigger), mirror_location(trigger)
    if mirror_claimed(result.trigger_mirrored.get(cls), mirror, result.recovery.min_success):
        return f"{place}, or mirrored: {mirror}"
    return place


def _run_sections(settings: Mapping[str, Any]) -> List[ReportSection]:
    return [ReportSection("Settings", settings=settings), ReportSection("Versions", settings=versions())]


def _interval_cells(row: ClassReport) -> Dict[str, Any]:
    """The confidence interval of a power measured on a sample, and the images it was measured on."""
    if row.power_interval is None:
        return {}
    return {"power low": row.power_interval[0], "power high": row.power_interval[1], "images measured": row.measured}


def search_page(report: SearchReport, figure_png: bytes, command_line: str) -> str:
    """The page of a ``demo`` or ``search`` run.

    Args:
        report: the run's report (its settings and test accuracy included).
        figure_png: ``patterns.png``'s bytes.
        command_line: the command that produced the run.

    Returns:
        The HTML page.
    """
    rows = [
        {
            "class": row.class_,
            "name": row.name if row.name is not None else str(row.class_),
            "k": row.k,
            "predictive power": row.predictive_power,
            **_interval_cells(row),
            "floor": row.floor,
            "random": row.random,
            **row.baselines,
        }
        for row in report.classes
    ]
    methods = list(report.classes[0].baselines) if report.classes else []
    footer: Dict[str, Any] = {"class": "mean"}
    if report.classes:
        footer.update(
            {
                "predictive power": report.mean("predictive_power"),
                "floor": report.mean("floor"),
                "random": report.mean("random"),
                **{method: report.mean(method) for method in methods},
            }
        )
    settings = {"command": command_line, "test accuracy": report.test_accuracy, **report.settings}
    columns = list(rows[0]) if rows else []
    text = legend(columns, SEARCH_COLUMNS, "power of the top-k pixels of Captum's {}")
    sections = [
        ReportSection("Classes", text=text, table=rows, footer=footer),
        ReportSection(
            "Patterns",
            figures=[
                ReportFigure(figure_png, "Each class's canvas, attribution map and top-k pattern (patterns.png).")
            ],
        ),
        *_run_sections(settings),
    ]
    return html_report("Class patterns", sections)


def scan_page(result: ScanResult, class_names: Sequence[str], figure_png: bytes, settings: Mapping[str, Any]) -> str:
    """The page of a ``scan`` run: the verdict, the classes, the recovered triggers, the figure.

    Args:
        result: the scan's result.
        class_names: a name per scanned class.
        figure_png: ``scan.png``'s bytes.
        settings: what the run was given (command, data, model, thresholds, ...).

    Returns:
        The HTML page.
    """
    names = [str(name) for name in class_names]
    row_of = {cls: row for row, cls in enumerate(result.classes)}
    rows = [
        {
            "class": cls,
            "name": names[row],
            "score": result.scores[row],
            "anomaly index": result.anomaly_index[row],
            "k": result.patterns[row].k,
            "power": result.powers[row],
            # Only when the blend probe ran: a column of blanks would name a number the table does not have.
            **({"blend anomaly index": result.blend_anomaly_index[row]} if result.blend_anomaly_index else {}),
            **({"warp anomaly index": result.warp_anomaly_index[row]} if result.warp_anomaly_index else {}),
            **({"accuracy": result.class_accuracy[row]} if result.class_accuracy else {}),
            **({"accuracy index": result.accuracy_index[row]} if result.accuracy_index else {}),
            "flagged": cls in result.flagged,
        }
        for row, cls in enumerate(result.classes)
    ]
    flagged = ", ".join(names[row_of[cls]] for cls in result.flagged) or "none"
    verdict = f"Flagged: {flagged} (score {result.score}, threshold {result.scoring.threshold:g}"
    if result.blend is not None:
        verdict += f"; blend probe threshold {result.scoring.blend_threshold:g}"
    if result.warp is not None:
        verdict += f"; warp probe threshold {result.scoring.warp_threshold:g}"
    if result.collapsed:
        collapsed = ", ".join(names[row_of[cls]] for cls in result.collapsed)
        verdict += f"; collapsed, the model hardly recognises its held-out images: {collapsed}"
    if result.weakened:
        weakened = ", ".join(names[row_of[cls]] for cls in result.weakened)
        verdict += f"; weakened, recognised far less often than by the references: {weakened}"
    if result.reference_tables:
        count = len(result.reference_tables)
        verdict += f"; relative to {count} reference model{'s' if count > 1 else ''}"
        if result.reference_spread is not None:
            verdict += f", whose spread of {result.reference_spread:.2f} the relative index divides by at least"
    verdict += ")."
    if result.trigger_jaccard is not None and result.jaccard_class is not None:
        verdict += (
            f" The recovered trigger of {names[row_of[result.jaccard_class]]} overlaps the true trigger with "
            f"Jaccard index {result.trigger_jaccard:.2f}."
        )
    triggers, pictures = [], []
    for cls in result.flagged:
        if cls not in result.trigger_maps:
            continue
        trigger = result.recovered_trigger(cls)
        name = names[row_of[cls]]
        where = trigger_place(result, cls)
        triggers.append(
            {
                "class": cls,
                "name": name,
                "anomaly index": result.anomaly_index[row_of[cls]],
                "pixels": trigger.k,
                "held-out success": result.trigger_success.get(cls),
                "location": where,
            }
        )
        pictures.append(
            ReportFigure(pattern_image(trigger), f"recovered trigger of {name}: {trigger.k} pixels, {where}")
        )
    trigger_text = (
        "The trigger recovered for each flagged class: a second search with a penalty that keeps it one compact "
        "region. Pixels outside it are drawn light blue."
        if triggers
        else "No class is flagged, so no trigger was recovered."
    )
    sections = [
        ReportSection("Verdict", text=verdict),
        ReportSection("Classes", text=legend(list(rows[0]) if rows else [], SCAN_COLUMNS), table=rows),
        ReportSection("Flagged classes and recovered triggers", text=trigger_text, table=triggers, figures=pictures),
        ReportSection(
            "Patterns and anomaly indices",
            figures=[ReportFigure(figure_png, "Each class's pattern above its anomaly index (scan.png).")],
        ),
        *_run_sections(settings),
    ]
    return html_report("Backdoor scan", sections)

"""The detector table's summary: per architecture, detector and attack, the share found, AUROC and seconds.

Shared by ``bench_detectors`` (which writes the rows and prints the tables) and the setting
rules (``_setting_rules``), which score kept scans the table's way.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

from sklearn.metrics import roc_auc_score

from benchmarks import cifar10_zoo as zoo  # the attacks, in the table's column order

EFFECTIVE_ASR = 0.5
"""Attack success rate from which a backdoored model counts in ``detected_share_effective`` (as in bench_backdoor)."""


def auroc(positives: Sequence[float], negatives: Sequence[float]) -> Optional[float]:
    """The probability that a random positive scores above a random negative (ties count half)."""
    if not positives or not negatives:
        return None
    truth = [1] * len(positives) + [0] * len(negatives)
    return float(roc_auc_score(truth, list(positives) + list(negatives)))


def _took(row: Dict[str, Any]) -> bool:
    """Whether a backdoored model's poisoning took (its attack success reaches ``EFFECTIVE_ASR``)."""
    return (row.get("attack_success") or 0.0) >= EFFECTIVE_ASR


def summarise(rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Per detector: detection share per attack, clean false-alarm share, AUROC, seconds."""
    table: Dict[str, Any] = {}
    for detector in sorted({r["detector"] for r in rows}):
        mine = [r for r in rows if r["detector"] == detector]
        clean = [r for r in mine if r["attack"] is None]
        cells: Dict[str, Any] = {
            "clean": {
                "models": len(clean),
                "flagged_share": sum(bool(r["flagged"]) for r in clean) / len(clean) if clean else None,
            }
        }
        for attack in sorted({r["attack"] for r in mine if r["attack"] is not None}):
            hit = [r for r in mine if r["attack"] == attack]
            # A poisoning that did not take leaves no backdoor to find: counted apart (an
            # unknown success too).
            working = [r for r in hit if _took(r)]
            cells[attack] = {
                "models": len(hit),
                "detected_share": sum(r["target"] in r["flagged"] for r in hit) / len(hit),
                "working_models": len(working),
                "detected_share_effective": (
                    sum(r["target"] in r["flagged"] for r in working) / len(working) if working else None
                ),
                "auroc": auroc([r["score"] for r in hit], [r["score"] for r in clean]),
            }
        working = [r for r in mine if r["attack"] is not None and _took(r)]
        shares = [c.get("detected_share_effective") for c in cells.values()]
        shares = [share for share in shares if share is not None]
        # Every attack weighs the same in the mean, however many of its models are finished.
        cells["mean_detection"] = sum(shares) / len(shares) if shares else None
        cells["auroc_all"] = auroc([r["score"] for r in working], [r["score"] for r in clean])
        cells["seconds_per_model"] = sum(r["seconds"] for r in mine) / len(mine)
        patches = [r for r in mine if r["attack"] == "patch" and _took(r) and "trigger_jaccard" in r]
        if patches:
            cells["patch_triggers"] = _patch_triggers(patches)
        table[detector] = cells
    return table


def _patch_triggers(rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Of the patch models whose target is flagged: how many have a reported trigger, and its Jaccard with the patch."""
    found = [r for r in rows if r["target"] in r["flagged"]]
    reported = [r for r in found if r["target"] in r["reported_triggers"]]
    jaccards = [r["trigger_jaccard"] for r in reported if r["trigger_jaccard"] is not None]
    # Training flips images left to right, so the patch was taught at its mirror place too:
    # the better of the two is the recovered trigger's agreement with what the model learned.
    either = [max(r["trigger_jaccard"], r["trigger_jaccard_mirror"]) for r in reported if _has_both(r)]
    return {
        "found": len(found),
        "reported": len(reported),
        "jaccard_mean": sum(jaccards) / len(jaccards) if jaccards else None,
        "jaccard_min": min(jaccards) if jaccards else None,
        "either_place_mean": sum(either) / len(either) if either else None,
        "either_place_min": min(either) if either else None,
        "either_place_models": len(either),
    }


def _has_both(row: Dict[str, Any]) -> bool:
    return row["trigger_jaccard"] is not None and row.get("trigger_jaccard_mirror") is not None


def summarise_by_arch(rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    """:func:`summarise` for each architecture apart (the issue's bars hold per architecture)."""
    archs = sorted({r.get("arch") for r in rows})
    return {arch: summarise([r for r in rows if r.get("arch") == arch]) for arch in archs}


def _cell(cell: Dict[str, Any]) -> str:
    """One attack's cell: working backdoored models found, and the AUROC of the per-model score."""
    working = cell["working_models"]
    if not working:
        return f"({cell['models']} did not take)"
    found = round(cell["detected_share_effective"] * working)
    score = "" if cell["auroc"] is None else f", AUROC {cell['auroc']:.2f}"
    return f"{found}/{working}{score}"


def table_rows(table: Dict[str, Any]) -> List[List[str]]:
    """One architecture's table as text cells: a header, then a row per detector."""
    attacks = [a for a in zoo.ATTACKS if any(a in cells for cells in table.values())]
    rows = [["detector", *attacks, "clean flagged", "mean detection", "AUROC, all", "s/model"]]
    for detector, cells in table.items():
        clean = cells["clean"]
        flagged = "-" if not clean["models"] else round(clean["flagged_share"] * clean["models"])
        clean_text = "-" if not clean["models"] else f"{flagged}/{clean['models']}"
        mean = "-" if cells["mean_detection"] is None else f"{cells['mean_detection']:.2f}"
        pooled = "-" if cells["auroc_all"] is None else f"{cells['auroc_all']:.2f}"
        row = [detector, *(_cell(cells[a]) if a in cells else "-" for a in attacks)]
        rows.append(row + [clean_text, mean, pooled, f"{cells['seconds_per_model']:.0f}"])
    return rows


def markdown_tables(by_arch: Dict[str, Any]) -> str:
    """Each architecture's table: a row per detector; a column per attack, then clean, mean, AUROC and seconds."""
    parts = []
    for arch, table in by_arch.items():
        rows = table_rows(table)
        parts.append(f"**{arch}** (cells: working backdoors whose target is flagged, AUROC against the clean models)\n")
        parts.append("| " + " | ".join(rows[0]) + " |")
        parts.append("|---" * len(rows[0]) + "|")
        parts += ["| " + " | ".join(row) + " |" for row in rows[1:]]
        parts.append("")
        parts += _trigger_lines(table)
        parts.append("")
    return "\n".join(parts)


ARCH_TITLES = {"preact18": "PreAct-ResNet-18", "vgg": "VGG-style network", "gap": "Pooled CNN"}
"""How the docs name each zoo architecture."""


def rst_tables(by_arch: Dict[str, Any]) -> str:
    """The same tables as reStructuredText list tables, for the scan's docs page."""
    parts = []
    for arch, table in by_arch.items():
        name = ARCH_TITLES.get(arch, arch)
        title = f"{name}: working backdoors whose target is flagged, AUROC against the clean models"
        parts += [f".. list-table:: {title}", "   :header-rows: 1", ""]
        for row in table_rows(table):
            parts += [f"   * - {row[0]}", *(f"     - {cell}" for cell in row[1:])]
        parts.append("")
        for line in _trigger_lines(table):
            parts += [line.rstrip(), ""]
    return "\n".join(parts)


def _trigger_lines(table: Dict[str, Any]) -> List[str]:
    return [_patch_trigger_line(d, cells["patch_triggers"]) for d, cells in table.items() if "patch_triggers" in cells]


def _patch_trigger_line(detector: str, found: Dict[str, Any]) -> str:
    text = f"{detector}: a trigger is reported for {found['reported']} of the {found['found']} patch targets found"
    if found["jaccard_mean"] is not None:
        mean, least = found["jaccard_mean"], found["jaccard_min"]
        text += f"; Jaccard with the true patch {mean:.2f} on average, {least:.2f} at least"
    if found.get("either_place_mean") is not None:
        mean, least, count = found["either_place_mean"], found["either_place_min"], found["either_place_models"]
        text += (
            f"; with the patch or its mirror image (training flips images), {mean:.2f} on average, "
            f"{least:.2f} at least, on {count} model{'s' if count != 1 else ''} with both measured"
        )
    return text + ".  "

"""A scan setting's rule on a zoo: each model's flags at a new setting against those at the kept one.

``bench_scan_precision`` (held-out images per class) and ``bench_warp_batch`` (the warp probe's
batch) both score every kept scan of a zoo at each setting, alone and against the zoo's other
clean models of its architecture (as the detector table does), and compare the flags with
those at the setting the scans were kept at.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import torch

from benchmarks import bench_detectors as detectors  # the table's images, AUROC and attack success
from benchmarks import cifar10_models as models
from benchmarks import cifar10_zoo as zoo
from benchmarks._detector_tables import EFFECTIVE_ASR, auroc
from captum_classpattern.backdoor import ScanResult
from captum_classpattern.data import Split

Extra = Callable[[ScanResult, ScanResult], Dict[str, Any]]


def add_zoo_arguments(parser: argparse.ArgumentParser) -> None:
    """``--plan``, ``--archs``, ``--data``, ``--cache`` and ``--threads``, read by :func:`zoo_inputs`."""
    parser.add_argument("--plan", choices=sorted(zoo.PLANS), default="dev")
    parser.add_argument("--archs", nargs="+", default=["preact18"], choices=list(models.ARCHITECTURES))
    parser.add_argument("--data", help="CIFAR-10 folder (default: $CLASSPATTERN_CIFAR10)")
    parser.add_argument("--cache", help="where the zoo's models are (default: <package cache>/cifar10)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")


def zoo_inputs(args: argparse.Namespace, program: str) -> Optional[Tuple[str, Dict[str, Split], List[zoo.ZooEntry]]]:
    """The zoo's cache folder, the table's images and the plan's models; ``None`` (said on stderr) without CIFAR-10."""
    root = models.cifar10_root(args.data)
    if root is None:
        print(f"{program}: no CIFAR-10 folder: pass --data or set CLASSPATTERN_CIFAR10", file=sys.stderr)
        return None
    if args.threads:
        torch.set_num_threads(args.threads)
    entries = zoo.plan_entries(args.plan, args.archs, list(zoo.ATTACKS))
    return models.cache_folder(args.cache), detectors.test_data(root, False), entries


def recorded_seconds(path: str, key: str) -> Optional[float]:
    """The seconds a kept file records under ``key`` (``None`` where it has none)."""
    with open(path) as stream:
        return json.load(stream).get(key)


def mean_seconds(scanned: List[zoo.ZooEntry], path_of: Callable[[zoo.ZooEntry], str], key: str) -> float:
    """The mean over the models of the seconds each one's file (``path_of(entry)``) records under ``key``."""
    return round(sum(recorded_seconds(path_of(entry), key) or 0.0 for entry in scanned) / len(scanned), 1)


def flag_rows(
    scanned: List[zoo.ZooEntry], scans: Mapping[str, ScanResult], extra: Optional[Extra] = None
) -> Dict[str, Dict[str, Any]]:
    """Each model's flags and score alone and against the other clean models (plus ``extra(alone, compared)``)."""
    clean = [e for e in scanned if e.attack is None]
    rows: Dict[str, Dict[str, Any]] = {}
    for entry in scanned:
        alone = scans[entry.name]
        others = [scans[c.name] for c in detectors.references_of(entry, clean)]
        compared = alone.with_references(others)
        rows[entry.name] = {
            "alone": alone.flagged,
            "with_references": compared.flagged,
            "score_alone": round(alone.model_score(), 3),
            "score_with_references": round(compared.model_score(), 3),
            **(extra(alone, compared) if extra else {}),
        }
    return rows


def agreement(
    scanned: List[zoo.ZooEntry], rows: Mapping[str, Dict[str, Any]], kept: Mapping[str, Dict[str, Any]], cache: str
) -> Dict[str, Any]:
    """How ``rows`` agree with ``kept`` (the flags at the kept setting), and what they find with references."""
    clean = [e for e in scanned if e.attack is None]
    working = [
        e for e in scanned if e.attack is not None and (detectors.attack_success(e.name, cache) or 0) >= EFFECTIVE_ASR
    ]
    return {
        "same_flags_with_references": sum(rows[n]["with_references"] == kept[n]["with_references"] for n in rows),
        "same_flags_alone": sum(rows[n]["alone"] == kept[n]["alone"] for n in rows),
        "targets_found_with_references": sum(e.target in rows[e.name]["with_references"] for e in working),
        "working_backdoors": len(working),
        "clean_flagged_with_references": sum(bool(rows[e.name]["with_references"]) for e in clean),
        "auroc_with_references": auroc(
            [rows[e.name]["score_with_references"] for e in working],
            [rows[e.name]["score_with_references"] for e in clean],
        ),
    }

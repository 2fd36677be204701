"""The backdoor-detection table: every detector on every model of a CIFAR-10 zoo, resumably.

Detectors (``--detectors``):

* ``scan``: :func:`captum_classpattern.backdoor.scan` at its defaults on clean test images;
* ``scan-ref``: the same scan compared with the scans of the zoo's clean models of the
  architecture (a clean model is never its own reference), by
  :meth:`~captum_classpattern.backdoor.ScanResult.with_references`: every model is searched
  once, its scan kept in ``<cache>/detector-scans/<name>.json``, and the comparison costs no
  search (its row's seconds are the suspect's own scan; the references' scans, a one-off
  cost per architecture, are in its ``reference_seconds``);
* ``nc``: Neural Cleanse (:func:`~captum_classpattern.backdoor.neural_cleanse`) at the
  authors' settings on the same images;
* ``mmbd``: MM-BD (:func:`~captum_classpattern.backdoor.max_margin_detection`), data-free.

Each (model, detector) result is one JSON line in ``--out`` (rewritten atomically after
each), so a table is built over as many runs as it takes; finished pairs are skipped. The
last line printed is the summary, per architecture (``by_arch``), detector and attack: the
share of backdoored models whose target is flagged (for the clean column, the share of clean
models with any flag), the AUROC of the per-model score (backdoored against clean models of
the same plan and architecture), the mean detection over the attacks whose poisoning took,
the AUROC over all of them, and the mean seconds per model; ``--markdown`` prints it as one
table per architecture. ``scan-ref`` waits until every clean model of the architecture in
the plan is trained, so all its rows compare with the same references.

Per-model scores: the scan's :meth:`~captum_classpattern.backdoor.ScanResult.model_score`
(its largest one-sided anomaly index over the threshold, patterns or a probe, or its
collapse bar over a class's accuracy), Neural Cleanse's largest anomaly index over its
threshold, MM-BD's ``-log10`` p-value.

Usage::

    python -m benchmarks.bench_detectors --plan dev --archs preact18 --detectors mmbd nc
    python -m benchmarks.bench_detectors --plan dev --summary-only --markdown
    python -m benchmarks.bench_detectors --plan replica --archs gap --rescore   # new scoring rules, no new search
    # beside a zoo process: scan its models as they are trained, for up to three hours
    python -m benchmarks.bench_detectors --plan replica --archs vgg --watch-minutes 180
    # a second process on another architecture writes its own file; summarise them together
    python -m benchmarks.bench_detectors --plan replica --archs gap --out benchmarks/results/detectors-replica-gap.jsonl
    python -m benchmarks.bench_detectors --plan replica --summary-only --also benchmarks/results/detectors-*-gap.jsonl
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from benchmarks import bench_cifar10 as patterns_bench  # its clean search / held-out split of the test set
from benchmarks import cifar10_models as models  # the training script: names, cache, loading
from benchmarks import cifar10_zoo as zoo  # the plans and their manifests
from benchmarks._detector_tables import markdown_tables, rst_tables, summarise_by_arch
from captum_classpattern.backdoor import (
    PatchTrigger,
    ScanResult,
    ScanSettings,
    ScoringSettings,
    max_margin_detection,
    neural_cleanse,
    probe_warps,
    remeasure,
    scan,
)
from captum_classpattern.data import Split, load_cifar10

DETECTORS = ("scan", "scan-ref", "nc", "mmbd")
RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def _verdict(flagged: Sequence[int], score: float, seconds: float) -> Dict[str, Any]:
    return {"flagged": [int(c) for c in flagged], "score": float(score), "seconds": round(seconds, 2)}


def kept_scan(entry: zoo.ZooEntry, cache: str, data: Dict[str, Split]) -> ScanResult:
    """The scan of a zoo model at the defaults, run once and kept in ``<cache>/detector-scans``.

    A scan kept before the scan measured each class's held-out accuracy or ran the warp
    probe gets them added (the probe at the defaults, with the kept scan's seed and
    held-out subsets, as a new scan runs it; its seconds are added to the scan's). One
    kept at another ``max_eval`` or warp batch than today's defaults is brought to them
    (:func:`remeasured_scan`, :func:`rewarped_scan`; its seconds stay those of the run).
    """
    path = _kept_path(entry, cache)
    search, held = data["search"], data["held_out"]
    if not os.path.exists(path):
        model = entry.load(cache)
        found = scan(model, search.images, search.labels, held_out=(held.images, held.labels))
        found.to_json(path)
        return found
    found = ScanResult.from_json(path)
    if found.class_accuracy and found.warp is not None:
        default = ScoringSettings().max_eval
        found = found if found.scoring.max_eval == default else remeasured_scan(entry, cache, data, default)
        batch = ScanSettings().warp_batch_size
        return found if found.settings.warp_batch_size == batch else rewarped_scan(entry, cache, data, found, batch)
    model = entry.load(cache)
    record = found.to_dict()
    if not found.class_accuracy:
        with torch.inference_mode():
            predicted = torch.cat([model(batch).argmax(1) for batch in held.images.split(500)])
        record["class_accuracy"] = [float((predicted[held.labels == c] == c).double().mean()) for c in found.classes]
    if found.warp is None:
        began = time.perf_counter()
        settings = ScanSettings()  # the defaults the kept scan ran, but for the warp probe
        probe = probe_warps(
            model, torch.tensor(found.classes), search.images, search.labels, (held.images, held.labels), settings,
            max_images=found.scoring.max_eval, seed=found.seed,
        )  # fmt: skip
        warp_settings = {k: v for k, v in settings.to_dict().items() if k.startswith("warp_")}
        record.update(warp=probe.to_dict(), settings={**record["settings"], **warp_settings})
        record["seconds"] = found.seconds + time.perf_counter() - began
    found = ScanResult.from_dict(record)
    found.to_json(path)
    return found


def remeasured_scan(entry: zoo.ZooEntry, cache: str, data: Dict[str, Split], count: int) -> ScanResult:
    """The kept scan of ``entry`` measured again on ``count`` held-out images per class, once, kept beside it.

    The search does not depend on the held-out images, so this is the scan at
    ``max_eval = count`` (:func:`~captum_classpattern.backdoor.remeasure`); its seconds
    stay the kept scan's, and the time the new measurement took is in
    ``<cache>/remeasured/<name>-m<count>.json`` as ``remeasure_seconds``.
    """
    path = os.path.join(cache, "remeasured", f"{entry.name}-m{count}.json")
    if os.path.exists(path):
        return ScanResult.from_json(path)
    kept = ScanResult.from_json(_kept_path(entry, cache))
    began = time.perf_counter()
    found = remeasure(kept, entry.load(cache), data["held_out"], ScoringSettings(max_eval=count))
    record = {**found.to_dict(), "remeasure_seconds": round(time.perf_counter() - began, 2)}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    models.write_json_atomic(path, record)
    return found


def rewarped_scan(entry: zoo.ZooEntry, cache: str, data: Dict[str, Split], kept: ScanResult, batch: int) -> ScanResult:
    """``kept`` with its warp probe learned again on ``batch`` images per class per step, once, kept on disk.

    The probe runs as a scan at today's defaults runs it, with the kept scan's seed and
    ``max_eval``; the rest of the scan is the kept one, scored alone. The probe's seconds
    are in ``<cache>/warp-batch/<name>-b<batch>.json`` as ``warp_probe_seconds``; the
    result's seconds stay the kept scan's (``timed_warp_batch_size`` in a row says so).
    """
    path = os.path.join(cache, "warp-batch", f"{entry.name}-b{batch}.json")
    if os.path.exists(path):
        return ScanResult.from_json(path)
    model = entry.load(cache).requires_grad_(False)  # as the scan runs it: only the fields get gradients
    search, held = data["search"], data["held_out"]
    settings = kept.settings.replace(warp_batch_size=batch)
    began = time.perf_counter()
    probe = probe_warps(
        model, torch.tensor(kept.classes), search.images, search.labels, (held.images, held.labels), settings,
        max_images=kept.scoring.max_eval, seed=kept.seed,
    )  # fmt: skip
    seconds = time.perf_counter() - began
    record = dataclasses.replace(kept, warp=probe, settings=settings).rescore("power_auc", reference=False).to_dict()
    models.write_json_atomic(path, {**record, "warp_probe_seconds": round(seconds, 1)})
    return ScanResult.from_dict(record)


def timed_warp_batch_size(entry: zoo.ZooEntry, cache: str) -> int:
    """The warp batch the kept scan ran with (its seconds are that run's): the search's batch before it had its own."""
    with open(_kept_path(entry, cache)) as stream:
        settings = json.load(stream)["settings"]
    return int(settings.get("warp_batch_size", settings["batch_size"]))


def timed_max_eval(entry: zoo.ZooEntry, cache: str) -> int:
    """The ``max_eval`` the kept scan ran at: a scan re-measured at a new default keeps the seconds of that run."""
    with open(_kept_path(entry, cache)) as stream:
        return int(json.load(stream)["scoring"]["max_eval"])


def trigger_findings(found: ScanResult, entry: zoo.ZooEntry) -> Dict[str, Any]:
    """The classes whose recovered trigger is reported and, for a patch, the target's trigger against the true one.

    ``trigger_jaccard`` is :meth:`~captum_classpattern.backdoor.ScanResult.jaccard` (the
    recovered map's top pixels, as many as the true patch has, in image coordinates);
    ``None`` where no trigger was recovered for the target. ``trigger_jaccard_mirror`` is
    the same against the patch flipped left to right: the zoo's recipe flips half of each
    batch, poisoned images included, so the model is taught the patch at both places.
    """
    findings: Dict[str, Any] = {"reported_triggers": found.reported_triggers}
    if entry.attack == "patch":
        side = found.maps.shape[-1]
        recovered = entry.target in found.trigger_maps
        trigger = models.trigger_of("patch")
        if not isinstance(trigger, PatchTrigger):
            raise TypeError(f"the zoo's patch trigger is a {type(trigger).__name__}, not a PatchTrigger")
        true_mask = trigger.mask(side, side)
        findings["trigger_jaccard"] = round(found.jaccard(true_mask, entry.target), 3) if recovered else None
        mirrored = true_mask.flip(-1)
        findings["trigger_jaccard_mirror"] = round(found.jaccard(mirrored, entry.target), 3) if recovered else None
        findings["trigger_success"] = found.trigger_success.get(entry.target)
    return findings


def run_scan(entry: zoo.ZooEntry, cache: str, data: Dict[str, Split]) -> Dict[str, Any]:
    """The class-pattern scan alone; its flags, per-model score and recovered triggers."""
    found = kept_scan(entry, cache, data)
    return {
        **_verdict(found.flagged, found.model_score(), found.seconds),
        "timed_max_eval": timed_max_eval(entry, cache),
        "timed_warp_batch_size": timed_warp_batch_size(entry, cache),
        **trigger_findings(found, entry),
    }


def run_scan_with_references(
    entry: zoo.ZooEntry, cache: str, data: Dict[str, Split], references: List[zoo.ZooEntry]
) -> Dict[str, Any]:
    """The scan compared with the clean references' scans; its flags, score and the references' one-off cost."""
    suspect = kept_scan(entry, cache, data)
    kept = [kept_scan(reference, cache, data) for reference in references]
    began = time.perf_counter()
    found = suspect.with_references(kept)
    verdict = _verdict(found.flagged, found.model_score(), suspect.seconds + time.perf_counter() - began)
    verdict["reference_seconds"] = round(sum(r.seconds for r in kept), 2)
    verdict["weakened"] = found.weakened  # absent from rows scored before the accuracy check
    verdict["timed_max_eval"] = timed_max_eval(entry, cache)
    verdict["timed_warp_batch_size"] = timed_warp_batch_size(entry, cache)
    return {**verdict, **trigger_findings(found, entry)}


def run_neural_cleanse(model: Callable, data: Dict[str, Split]) -> Dict[str, Any]:
    """Neural Cleanse at the authors' settings; its flags and per-model score."""
    began = time.perf_counter()
    found = neural_cleanse(model, data["search"].images, data["search"].labels)
    score = max(found.anomaly_index) / found.settings.threshold
    return _verdict(found.flagged, score, time.perf_counter() - began)


def run_max_margin(model: Callable, data: Dict[str, Split]) -> Dict[str, Any]:
    """MM-BD at the authors' settings (data-free); its flag and per-model score."""
    found = max_margin_detection(model, tuple(data["search"].images.shape[1:]))
    return _verdict([found.target] if found.flagged else [], found.score, found.seconds)


def detect(
    detector: str, entry: zoo.ZooEntry, cache: str, data: Dict[str, Split], clean: List[zoo.ZooEntry]
) -> Dict[str, Any]:
    """Run one detector on one zoo model."""
    if detector == "scan":
        return run_scan(entry, cache, data)
    if detector == "scan-ref":
        return run_scan_with_references(entry, cache, data, references_of(entry, clean))
    model = entry.load(cache)
    if detector == "mmbd":
        return run_max_margin(model, data)
    return run_neural_cleanse(model, data)


def references_of(entry: zoo.ZooEntry, clean: List[zoo.ZooEntry]) -> List[zoo.ZooEntry]:
    """The references of a zoo model: the clean models of its architecture, never itself."""
    return [c for c in clean if c.arch == entry.arch and c.name != entry.name]


def rescore_rows(rows: List[Dict[str, Any]], cache: str, data: Dict[str, Split], clean: List[zoo.ZooEntry]) -> int:
    """Score the ``scan-ref`` rows again at today's rules from the kept scans (no search); returns how many.

    The flags, score and trigger findings change; the seconds stay those of the scans as
    run. A row whose model's or references' kept scans are not in ``cache`` (a model
    trained on another machine) stays as written.
    """
    count = 0
    for position, row in enumerate(rows):
        if row["detector"] != "scan-ref":
            continue
        entry = zoo.entry_named(row["name"])
        if not all(os.path.exists(_kept_path(e, cache)) for e in [entry, *references_of(entry, clean)]):
            continue
        timing = {
            k: row[k] for k in ("seconds", "reference_seconds", "timed_max_eval", "timed_warp_batch_size") if k in row
        }
        rows[position] = {**row, **detect("scan-ref", entry, cache, data, clean), **timing}
        count += 1
    return count


def _kept_path(entry: zoo.ZooEntry, cache: str) -> str:
    return os.path.join(cache, "detector-scans", entry.name + ".json")


def _load_rows(path: str) -> List[Dict[str, Any]]:
    if not os.path.exists(path):
        return []
    with open(path) as stream:
        return [json.loads(line) for line in stream if line.strip()]


def _save_rows(path: str, rows: List[Dict[str, Any]]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in rows)
    models.write_atomic(path, text.encode())


def _as_run(entry: zoo.ZooEntry, cache: str) -> ScanResult:
    """The kept scan a row was written from: at today's ``max_eval`` where it was re-measured, as kept otherwise."""
    remeasured = os.path.join(cache, "remeasured", f"{entry.name}-m{ScoringSettings().max_eval}.json")
    kept = _kept_path(entry, cache)
    return ScanResult.from_json(remeasured if os.path.exists(remeasured) else kept)


def _add_trigger_findings(rows: List[Dict[str, Any]], cache: str) -> bool:
    """Fill in the recovered-trigger findings of scan rows written without them; returns whether any were.

    They come from the kept scans the rows were written from; no model runs. A row whose
    kept scan is not in the cache is left as written.
    """
    added = False
    for row in rows:
        if row["detector"] not in ("scan", "scan-ref") or _has_trigger_findings(row):
            continue
        entry = zoo.entry_named(row["name"])
        if not os.path.exists(_kept_path(entry, cache)):
            continue
        found = _as_run(entry, cache)
        if row["detector"] == "scan-ref":
            clean = zoo.plan_entries(zoo.plan_of(entry.name), [entry.arch], [])
            found = found.with_references([_as_run(c, cache) for c in references_of(entry, clean)])
        row.update(trigger_findings(found, entry))
        added = True
    return added


def _has_trigger_findings(row: Dict[str, Any]) -> bool:
    return "reported_triggers" in row and (row["attack"] != "patch" or "trigger_jaccard_mirror" in row)


def attack_success(name: str, cache: str) -> Optional[float]:
    """A zoo model's attack success rate from its record in the cache (``None`` without one)."""
    record = os.path.join(cache, name + ".json")
    if not os.path.exists(record):
        return None
    with open(record) as stream:
        return json.load(stream).get("attack_success_rate")


def _add_attack_success(rows: List[Dict[str, Any]], cache: str) -> None:
    """Fill in the attack success of rows written without it."""
    for row in rows:
        if row["attack"] is not None and "attack_success" not in row:
            row["attack_success"] = attack_success(row["name"], cache)


def test_data(root: str, quick: bool) -> Dict[str, Split]:
    # 400 per class: the split takes 200 of each for the search and 200 for the held-out set.
    test = load_cifar10(root, train=False, limit=4000 if quick else None)
    search, held = patterns_bench.split_test(test, seed=0)
    if quick:  # a few images per class keep the smoke run short
        search, held = Split(search.images[::4], search.labels[::4]), Split(held.images[::4], held.labels[::4])
    return {"search": search, "held_out": held}


WATCH_POLL_SECONDS = 60.0
"""How often ``--watch-minutes`` looks for newly trained zoo models."""


def plan_and_references(args: argparse.Namespace, cache: str) -> Tuple[List[zoo.ZooEntry], List[zoo.ZooEntry]]:
    """The chosen part of the plan, and its clean models that can serve as references here."""
    entries = zoo.plan_entries(args.plan, args.archs, args.attacks)
    return entries, zoo.reference_models(entries, cache, None if args.quick else zoo.REFERENCE_SCANS)


def run_pending(
    args: argparse.Namespace, rows: List[Dict[str, Any]], out: str, cache: str, data: Dict[str, Split], began: float
) -> bool:
    """Run every missing (model, detector) pair of the trained models, saving each row as it comes.

    Returns:
        ``False`` when ``--budget-minutes`` ran out before every pair was run.
    """
    entries, clean = plan_and_references(args, cache)
    ready = [e for e in entries if zoo.entry_status(e, cache)["status"] == "done"]
    # References are all of the plan's clean models of the architecture or none: a
    # table whose rows compared with two or three references by turns would mix rules.
    pending_clean = {e.arch for e in entries if e.attack is None and e not in clean}
    done = {(r["name"], r["detector"]) for r in rows}
    for entry in ready:
        for detector in args.detectors:
            if (entry.name, detector) in done or (detector == "scan-ref" and entry.arch in pending_clean):
                continue
            if args.budget_minutes is not None and (time.perf_counter() - began) / 60 > args.budget_minutes:
                return False
            verdict = detect(detector, entry, cache, data, clean)
            success = attack_success(entry.name, cache)
            rows.append({"name": entry.name, "detector": detector, "arch": entry.arch, "attack": entry.attack,
                         "target": entry.target, "attack_success": success, **verdict})  # fmt: skip
            _save_rows(out, rows)
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    if pending_clean and "scan-ref" in args.detectors:
        print(f"scan-ref waits for every clean model of {sorted(pending_clean)}", file=sys.stderr)
    return True


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the missing (model, detector) pairs within the budget; print the summary. Returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plan", choices=sorted(zoo.PLANS), default="dev")
    parser.add_argument("--archs", nargs="+", default=list(models.ARCHITECTURES), choices=list(models.ARCHITECTURES))
    parser.add_argument("--attacks", nargs="+", default=list(zoo.ATTACKS), choices=list(zoo.ATTACKS))
    parser.add_argument("--detectors", nargs="+", default=list(DETECTORS), choices=DETECTORS)
    parser.add_argument("--data", help="CIFAR-10 folder (default: $CLASSPATTERN_CIFAR10)")
    parser.add_argument("--cache", help="where the zoo's models are (default: <package cache>/cifar10)")
    parser.add_argument("--out", help="the JSON-lines results (default: benchmarks/results/detectors-<plan>.jsonl)")
    parser.add_argument("--budget-minutes", type=float, help="start no new pair after this many minutes")
    parser.add_argument("--watch-minutes", type=float, help="keep running the pairs of newly trained models this long")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--summary-only", action="store_true", help="summarise the results file; run nothing")
    parser.add_argument("--rescore", action="store_true", help="score the scan-ref rows again from the kept scans")
    parser.add_argument("--also", nargs="+", default=[], help="more JSON-lines results to summarise with --out's")
    tables = parser.add_mutually_exclusive_group()
    tables.add_argument("--markdown", action="store_true", help="print Markdown tables, one per architecture")
    tables.add_argument("--rst", action="store_true", help="print reStructuredText list tables (the docs page's)")
    parser.add_argument("--quick", action="store_true", help="the quick zoo (cifar10_zoo.py --quick), few images")
    args = parser.parse_args(argv)
    cache = models.cache_folder(args.cache, args.quick)
    suffix = "-quick" if args.quick else ""
    out = args.out or os.path.join(RESULTS_DIR, f"detectors-{args.plan}{suffix}.jsonl")
    rows = _load_rows(out)
    root = models.cifar10_root(args.data)
    if not args.summary_only and root is not None:
        if args.threads:
            torch.set_num_threads(args.threads)
        data = test_data(root, args.quick)
        if _add_trigger_findings(rows, cache):
            _save_rows(out, rows)
        if args.rescore:
            clean = plan_and_references(args, cache)[1]
            print(f"{rescore_rows(rows, cache, data, clean)} scan-ref rows scored again", file=sys.stderr)
            _save_rows(out, rows)
        began = time.perf_counter()
        watch_until = began + 60 * (args.watch_minutes or 0.0)
        # --watch-minutes: models that a zoo process is still training are scanned as they land.
        while run_pending(args, rows, out, cache, data, began) and time.perf_counter() < watch_until:
            time.sleep(min(WATCH_POLL_SECONDS, max(0.0, watch_until - time.perf_counter())))
    summarised = rows + [row for path in args.also for row in _load_rows(path)]
    _add_attack_success(summarised, cache)
    by_arch = summarise_by_arch(summarised)
    if args.markdown or args.rst:
        print(markdown_tables(by_arch) if args.markdown else rst_tables(by_arch))
    else:
        print(json.dumps({"results": [out, *args.also], "pairs": len(summarised), "by_arch": by_arch}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Build a zoo of CIFAR-10 models for the backdoor-scan benchmark, resumably, with a manifest.

A zoo is a plan: per architecture, clean models (``natural`` training, several seeds) and,
per attack, backdoored models with several targets and seeds. Each model is trained by
``cifar10_models.train_one`` (the same recipe, cache and epoch checkpoints), so a zoo is
built over as many runs as it takes: stop it at any time (Ctrl-C, ``--budget-minutes``, a
lost session) and the next run resumes the model in progress from its last epoch and skips
the finished ones.

Two named plans keep the scan benchmark honest (rules are tuned on ``dev`` and reported on
``replica``, whose seeds and targets are new):

* ``dev``: targets 0 and 5, seed 0; clean seeds 0, 1, 2;
* ``replica``: targets 2 and 7, seed 10; clean seeds 10, 11, 12.

The manifest (``<cache>/zoo-<plan>.json``, and ``--manifest PATH`` for a copy to commit)
lists every planned model: its file stem, architecture, attack, target, seed, status
(``done``, ``partial`` with the epochs finished, or ``pending``) and, once done, its clean
accuracy, attack success rate and training minutes.

A model cache stays on the machine that trained it. Writing the manifest over a copy made
elsewhere keeps the rows of models finished there as ``done elsewhere``, and a model trained
again keeps the earlier numbers under ``earlier`` (the zoo's training is seeded: on this
CPU a retrained model has the same clean accuracy to the fourth digit). The clean models'
kept scans, all a reference comparison needs, are kept in ``results/reference-scans``
(:func:`reference_models`). ``--models`` trains only the named models, so two processes
can build one plan side by side.

Usage::

    python -m benchmarks.cifar10_zoo --plan dev --dry-run                 # the plan and its status
    python -m benchmarks.cifar10_zoo --plan dev --archs preact18 --attacks patch sig --budget-minutes 120
    python -m benchmarks.cifar10_zoo --plan dev --quick                    # 2,000 images, 1 epoch, scratch cache
    python -m benchmarks.cifar10_zoo --plan replica --archs gap --models gap-natural-s11 gap-sig-half-t2-s10

The last line printed is the manifest as one JSON object.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import functools
import gzip
import json
import os
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from benchmarks import cifar10_models as models  # the training script: its recipe and cache
from captum_classpattern.data import Split, load_cifar10
from captum_classpattern.training import TrainingRecipe

PLANS: Dict[str, Dict[str, List[int]]] = {
    "dev": {"targets": [0, 5], "seeds": [0], "clean_seeds": [0, 1, 2]},
    "replica": {"targets": [2, 7], "seeds": [10], "clean_seeds": [10, 11, 12]},
}
"""The named zoos: backdoor targets, backdoor seeds and clean-model seeds per architecture."""

ATTACKS = tuple(a for a in models.BACKDOORS if a != "adaptive")
"""The attacks the training script can plant; Adap-Blend at 1% (at the authors' 0.3% it does not take)."""


@dataclasses.dataclass(frozen=True)
class ZooEntry:
    """One planned model: ``attack`` is ``None`` for a clean model."""

    arch: str
    attack: Optional[str]
    target: Optional[int]
    seed: int

    @property
    def setting(self) -> str:
        return self.attack or "natural"

    @property
    def trained_target(self) -> int:
        """The target the model was trained with (the training script's default for a clean model)."""
        return self.target if self.target is not None else models.BACKDOOR_TARGET

    @property
    def name(self) -> str:
        return models.run_name(self.arch, self.setting, self.seed, self.trained_target)

    def load(self, cache: str) -> nn.Module:
        """The trained model from ``cache``."""
        return models.load_trained(self.arch, self.setting, self.seed, cache, self.trained_target)


def plan_of(name: str) -> str:
    """The first plan with a model called ``name`` (e.g. ``preact18-natural-s0``: ``"dev"``).

    Raises:
        ValueError: no plan has a model of that name.
    """
    for plan in PLANS:
        if any(entry.name == name for entry in plan_entries(plan, list(models.ARCHITECTURES), list(ATTACKS))):
            return plan
    raise ValueError(f"no zoo plan has a model called {name!r} (e.g. preact18-natural-s0, gap-patch-t2-s10).")


def entry_named(name: str) -> ZooEntry:
    """The model of any plan called ``name`` (e.g. ``preact18-natural-s0``).

    Raises:
        ValueError: no plan has a model of that name.
    """
    entries = plan_entries(plan_of(name), list(models.ARCHITECTURES), list(ATTACKS))
    return next(entry for entry in entries if entry.name == name)


def plan_entries(plan: str, archs: Sequence[str], attacks: Sequence[str]) -> List[ZooEntry]:
    """Every model of a named plan: per architecture the clean ones, then every attack at the first target, ...

    Attacks vary fastest, so a zoo stopped half-way already has a model of every attack.
    """
    spec = PLANS[plan]
    entries: List[ZooEntry] = []
    for arch in archs:
        entries += [ZooEntry(arch, None, None, seed) for seed in spec["clean_seeds"]]
        for seed in spec["seeds"]:
            for target in spec["targets"]:
                entries += [ZooEntry(arch, attack, target, seed) for attack in attacks]
    return entries


_RESULT_KEYS = ("clean_accuracy", "attack_success_rate", "robust_accuracy", "minutes")


def entry_status(entry: ZooEntry, cache: str) -> Dict[str, Any]:
    """The manifest row of one entry, read from the cache (nothing is trained)."""
    row: Dict[str, Any] = {**dataclasses.asdict(entry), "name": entry.name}
    record = os.path.join(cache, entry.name + ".json")
    partial = os.path.join(cache, entry.name + ".partial.pt")
    diverged = _diverged_path(entry, cache)
    if os.path.exists(diverged):
        with open(diverged) as stream:
            row.update(status="diverged", error=stream.read().strip())
    elif os.path.exists(record):
        with open(record) as stream:
            done = json.load(stream)
        row.update(status="done", file=entry.name + ".pt")
        for key in _RESULT_KEYS:
            if done.get(key) is not None:
                row[key] = round(float(done[key]), 4)
    elif os.path.exists(partial):
        state = torch.load(partial, map_location="cpu", weights_only=False)
        row.update(status="partial", epochs_done=int(state.get("epoch", 0)))
    else:
        row["status"] = "pending"
    return row


RECIPE_CHANGES: Dict[Tuple[str, str], Dict[str, Any]] = {("vgg", "iad"): {"peak_lr": 0.1}}
"""Recipe settings that differ for one (architecture, attack), each decided before its models were
trained again: IAD diverged on the VGG at the recipe's peak of 0.2 (``benchmarks/RESULTS.md``)."""


def recipe_of(entry: ZooEntry, quick: bool = False) -> TrainingRecipe:
    """The training recipe of a zoo model: its architecture's, with any ``RECIPE_CHANGES`` of its attack."""
    recipe = models.RECIPES[entry.arch]
    recipe = dataclasses.replace(recipe, **RECIPE_CHANGES.get((entry.arch, entry.attack or "natural"), {}))
    return dataclasses.replace(recipe, epochs=1) if quick else recipe


def _diverged_path(entry: ZooEntry, cache: str) -> str:
    """Where a model whose training diverged is marked, so that no later run trains it again."""
    return os.path.join(cache, entry.name + ".diverged.txt")


def train_or_mark(entry: ZooEntry, cache: str, train: Callable[[], Any]) -> bool:
    """Run ``train``; when it diverges, mark the entry (status ``diverged``) and say so. Returns whether it trained.

    Resumed with the same recipe it would likely diverge again (only the thread count's
    rounding differs between runs): it is marked and skipped, and the zoo goes on with the
    next model. Delete the mark to try again.
    """
    try:
        train()
    except FloatingPointError as error:
        models.write_atomic(_diverged_path(entry, cache), f"{error}\n".encode())
        print(f"{entry.name}: {error} Marked as diverged; going on with the next model.", file=sys.stderr)
        return False
    return True


def manifest(plan: str, entries: List[ZooEntry], cache: str) -> Dict[str, Any]:
    """The zoo's manifest: the plan, its counts by status, and one row per model."""
    rows = [entry_status(e, cache) for e in entries]
    return {"plan": plan, "spec": PLANS[plan], "cache": cache, "counts": _status_counts(rows), "models": rows}


def _status_counts(rows: List[Dict[str, Any]]) -> Dict[str, int]:
    return dict(collections.Counter(row["status"] for row in rows))


REFERENCE_SCANS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "reference-scans")
"""Where the clean models' kept scans are kept (gzipped, committed): a model cache does not move between machines."""


def reference_models(entries: List[ZooEntry], cache: str, folder: Optional[str] = REFERENCE_SCANS) -> List[ZooEntry]:
    """The plan's clean models that can serve as scan references here: trained in this cache, or scanned before.

    A reference comparison needs only the clean model's kept scan (``<cache>/detector-scans``),
    so those scans are also kept in ``folder``: each one the cache lacks is copied into it,
    each one ``folder`` lacks is copied there, and then a clean model scanned on another
    machine is a reference here without being trained again (``folder=None``: the cache
    alone, as for the quick zoo, whose model names are the dev plan's). A scan kept at other
    defaults than today's still needs its model, to be brought up to date.
    """
    scans = os.path.join(cache, "detector-scans")
    clean = [e for e in entries if e.attack is None]
    if folder:
        os.makedirs(scans, exist_ok=True)
        os.makedirs(folder, exist_ok=True)
        for entry in clean:
            _share_kept_scan(os.path.join(scans, entry.name + ".json"), os.path.join(folder, entry.name + ".json.gz"))
    return [
        e
        for e in clean
        if os.path.exists(os.path.join(scans, e.name + ".json")) or entry_status(e, cache)["status"] == "done"
    ]


def _share_kept_scan(kept: str, committed: str) -> None:
    """Copy a kept scan to whichever of the cache (``kept``) and the committed folder lacks it."""
    if os.path.exists(committed) and not os.path.exists(kept):
        with gzip.open(committed, "rb") as stream:
            models.write_atomic(kept, stream.read())
    elif os.path.exists(kept) and not os.path.exists(committed):
        with open(kept, "rb") as stream:
            models.write_atomic(committed, gzip.compress(stream.read(), compresslevel=9, mtime=0))


def with_earlier(record: Dict[str, Any], earlier: Dict[str, Any]) -> Dict[str, Any]:
    """``record`` with what an earlier manifest of the plan says of models trained elsewhere.

    A model cache does not move between machines, so a model finished on another one is
    ``pending`` here: its earlier row is kept as ``done elsewhere`` (its weights are not in
    this cache). A model trained again here keeps the earlier numbers under ``earlier``, so
    a retrained model can be compared with the one the committed results came from (a
    model is taken as retrained when its training minutes differ from the earlier row's).
    """
    before = {row["name"]: row for row in earlier.get("models", []) if row.get("status", "").startswith("done")}
    rows = []
    for row in record["models"]:
        old = before.get(row["name"])
        if old is not None and row["status"] == "pending":
            row = {**old, "status": "done elsewhere"}
            row.pop("file", None)
        elif (
            old is not None
            and row["status"] == "done"
            and (old.get("earlier") or old.get("minutes") != row.get("minutes"))
        ):
            previous = old.get("earlier") or {k: old[k] for k in _RESULT_KEYS if k in old}
            row = {**row, "earlier": previous}
        rows.append(row)
    return {**record, "counts": _status_counts(rows), "models": rows}


def _write_manifests(record: Dict[str, Any], paths: Sequence[str]) -> None:
    for path in paths:
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        merged = record
        if os.path.exists(path):
            with open(path) as stream:
                merged = with_earlier(record, json.load(stream))
        models.write_json_atomic(path, merged)


def chosen_entries(entries: List[ZooEntry], names: Optional[Sequence[str]]) -> List[ZooEntry]:
    """The entries to train: all, or those named (so two processes can share a plan without racing).

    Raises:
        ValueError: a name that is not one of ``entries``.
    """
    if not names:
        return entries
    by_name = {entry.name: entry for entry in entries}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise ValueError(f"not in this plan's --archs/--attacks: {', '.join(unknown)} (see --dry-run for the names)")
    return [by_name[name] for name in names]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Train the zoo's missing models within the budget; print the manifest. Returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plan", choices=sorted(PLANS), default="dev")
    parser.add_argument("--archs", nargs="+", default=list(models.ARCHITECTURES), choices=list(models.ARCHITECTURES))
    parser.add_argument("--attacks", nargs="+", default=list(ATTACKS), choices=list(ATTACKS))
    parser.add_argument(
        "--models", nargs="+", metavar="NAME", help="train only these models of the plan (e.g. gap-natural-s11)"
    )
    parser.add_argument("--data", help="CIFAR-10 folder (default: $CLASSPATTERN_CIFAR10)")
    parser.add_argument("--cache", help="where models are kept (default: <package cache>/cifar10)")
    parser.add_argument("--manifest", help="also write the manifest here (e.g. a file to commit)")
    parser.add_argument("--budget-minutes", type=float, help="start no new model after this many minutes")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--robust-images", type=int, default=1000, help="test images for PGD-20")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and its status; train nothing")
    parser.add_argument("--quick", action="store_true", help="2,000 training images, 1 epoch, a scratch cache")
    args = parser.parse_args(argv)
    cache = models.cache_folder(args.cache, args.quick)
    entries = plan_entries(args.plan, args.archs, args.attacks)
    try:
        chosen = chosen_entries(entries, args.models)
    except ValueError as error:
        parser.error(str(error))
    paths = [os.path.join(cache, f"zoo-{args.plan}.json")] + ([args.manifest] if args.manifest else [])
    root = models.cifar10_root(args.data)
    if args.dry_run or root is None:
        record = manifest(args.plan, entries, cache)
        if root is None and not args.dry_run:
            record["skipped"] = "no CIFAR-10: give --data PATH or set CLASSPATTERN_CIFAR10"
        if args.manifest:  # a copy of the status to keep, even when nothing is trained
            _write_manifests(record, [args.manifest])
        print(json.dumps(record))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    os.makedirs(cache, exist_ok=True)
    train = load_cifar10(root, train=True, limit=2000 if args.quick else None)
    test = load_cifar10(root, train=False, limit=1000 if args.quick else None)
    order = torch.argsort(models.rank_in_class(test.labels) * 10 + test.labels)
    test = Split(test.images[order], test.labels[order])
    began = time.perf_counter()
    # Models already begun come first, so a stopped zoo finishes what it started.
    todo = sorted(entries, key=lambda e: entry_status(e, cache)["status"] != "partial")
    for entry in todo:
        if entry not in chosen or entry_status(entry, cache)["status"] in ("done", "diverged"):
            continue
        if args.budget_minutes is not None and (time.perf_counter() - began) / 60 > args.budget_minutes:
            print(f"budget of {args.budget_minutes} minutes spent; run again to go on", file=sys.stderr)
            break
        recipe = recipe_of(entry, args.quick)
        robust = min(args.robust_images, 200) if args.quick else args.robust_images
        target = entry.trained_target
        run = functools.partial(
            models.train_one, entry.arch, entry.setting, entry.seed, train, test, cache, recipe, robust, target
        )
        train_or_mark(entry, cache, run)
        _write_manifests(manifest(args.plan, entries, cache), paths)
    record = manifest(args.plan, entries, cache)
    _write_manifests(record, paths)
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

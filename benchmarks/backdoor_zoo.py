"""The backdoor model zoo: clean, backdoored and reference models on the photo digits, trained once and cached.

Per architecture (``spatial``, ``gap``, ``resnet18`` and optionally ``vgg``, built by
:func:`captum_classpattern.models.make_model`) on :func:`captum_classpattern.data.load_photo_digits`
(3 x 32 x 32):

* 10 clean models (seeds 0-9);
* 12 backdoored models: a BadNets patch (4 x 4 white square, bottom-right) and a Blended
  noise trigger (alpha 0.2), targets 0 and 5, seeds 0, 1 and 2, 10% all-to-one poisoning;
* 3 reference models (seeds 100-102): clean models a defender trains on its own clean data.

Each model is saved as ``<root>/<arch>/<name>.pt`` (a state dict) with a JSON sidecar
``<name>.json`` (architecture, kind, trigger, target, seed, training settings, clean
accuracy, attack success rate, seconds). :func:`load_zoo` returns the models, training
only the ones missing, so an interrupted run resumes. ``--quick`` is a small plan (2 clean,
2 backdoored, 1 reference, fewer epochs) kept in ``<root>/quick``.

Usage::

    python -m benchmarks.backdoor_zoo                          # the full zoo, spatial, gap, resnet18
    python -m benchmarks.backdoor_zoo --archs gap vgg --quick  # a small zoo of two architectures
    python -m benchmarks.backdoor_zoo --list                   # what is cached, with its numbers

The root is ``--out``, else ``$CLASSPATTERN_CACHE/backdoor_zoo`` (``~/.cache/captum_classpattern``
without the variable). In Python::

    from benchmarks.backdoor_zoo import load_zoo, zoo_data
    data = zoo_data()
    for entry in load_zoo("resnet18", kinds=("clean", "patch")):
        entry.model, entry.meta["attack_success_rate"], entry.trigger
"""

from __future__ import annotations

import argparse
import io
import json
import os
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from benchmarks._harness import Timer, add_quick_option, emit_json, seeded, set_threads, write_atomic, write_json_atomic
from captum_classpattern.backdoor import BlendTrigger, PatchTrigger, PoisonedDataset, Trigger, backdoor_metrics
from captum_classpattern.data import Dataset3, load_photo_digits
from captum_classpattern.models import make_model
from captum_classpattern.training import accuracy, default_cache_dir, train_classifier

ZOO_VERSION = 1
KINDS = ("clean", "patch", "blend", "reference")
DATA = {"size": 32, "seed": 0, "copies": 3, "held_out_copies": 1}
POISON_RATE = 0.1
# Training per architecture: epochs (full, quick), Adam's learning rate, base width.
TRAINING: Dict[str, Dict] = {
    "spatial": {"epochs": 4, "quick_epochs": 2, "lr": 2e-3, "width": 16},
    "gap": {"epochs": 8, "quick_epochs": 3, "lr": 5e-3, "width": 16},
    "vgg": {"epochs": 4, "quick_epochs": 2, "lr": 2e-3, "width": 16},
    "resnet18": {"epochs": 3, "quick_epochs": 2, "lr": 5e-3, "width": 8},
}
ARCHS = tuple(TRAINING)
DEFAULT_ARCHS = ("spatial", "gap", "resnet18")


def make_trigger(kind: str) -> Trigger:
    """The trigger of a backdoored model: ``"patch"`` (4 x 4 white, bottom-right) or ``"blend"`` (noise, 0.2)."""
    if kind == "patch":
        return PatchTrigger(size=4, position="bottom-right", content=1.0)
    if kind == "blend":
        return BlendTrigger("noise", alpha=0.2, seed=0)
    raise ValueError(f"kind must be 'patch' or 'blend' for a trigger, got {kind!r}.")


def zoo_data() -> Dataset3:
    """The photo digits every zoo model is trained and measured on."""
    return load_photo_digits(**DATA)


def plan(quick: bool = False, replica: int = 0) -> List[Tuple[str, Optional[int], int]]:
    """The ``(kind, target, seed)`` of every model of one architecture, in training order.

    The order interleaves kinds so that a partly trained zoo already holds some of each.
    ``replica`` ``r`` > 0 is a held-out copy of the plan: the same kinds and targets with
    new seeds (clean ``10 r`` to ``10 r + 9``, backdoored ``3 r`` to ``3 r + 2``) and the same
    three reference models, to check on fresh models what was decided on replica 0.
    """
    if quick:
        return [("reference", None, 100), ("clean", None, 0), ("patch", 0, 0), ("blend", 0, 0), ("clean", None, 1)]
    attacked_seeds = range(3 * replica, 3 * replica + 3)
    attacked = [(kind, target, seed) for seed in attacked_seeds for target in (0, 5) for kind in ("patch", "blend")]
    clean = [("clean", None, seed) for seed in range(10 * replica, 10 * replica + 10)]
    reference = [("reference", None, seed) for seed in (100, 101, 102)]
    order: List[Tuple[str, Optional[int], int]] = []
    while attacked or clean or reference:
        for group, take in ((reference, 1), (clean, 3), (attacked, 4)):
            order += group[:take]
            del group[:take]
    return order


def entry_name(kind: str, target: Optional[int], seed: int) -> str:
    """File stem of a model: ``clean-s3``, ``patch-t5-s1``, ``reference-s100``."""
    return f"{kind}-s{seed}" if target is None else f"{kind}-t{target}-s{seed}"


def default_root() -> str:
    """``$CLASSPATTERN_CACHE/backdoor_zoo`` (``~/.cache/captum_classpattern/backdoor_zoo`` without it)."""
    return os.path.join(default_cache_dir(), "backdoor_zoo")


@dataclass
class ZooEntry:
    """One model of the zoo with its metadata (the JSON sidecar)."""

    arch: str
    kind: str
    target: Optional[int]
    seed: int
    model: nn.Module
    meta: Dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The file stem, e.g. ``patch-t0-s1``."""
        return entry_name(self.kind, self.target, self.seed)

    @property
    def trigger(self) -> Optional[Trigger]:
        """The planted trigger, ``None`` for clean and reference models."""
        return make_trigger(self.kind) if self.kind in ("patch", "blend") else None

    def poisoned_training_set(self, data: Dataset3) -> PoisonedDataset:
        """The poisoned training view this model was trained on (its ``poisoned_indices`` are known)."""
        if self.trigger is None or self.target is None:
            raise ValueError(f"{self.name} is not backdoored.")
        return PoisonedDataset(
            (data.train.images, data.train.labels), self.trigger, self.target, POISON_RATE, self.seed
        )


def _settings(arch: str, quick: bool) -> Dict:
    training = TRAINING[arch]
    return {
        "version": ZOO_VERSION,
        "data": DATA,
        "poison_rate": POISON_RATE,
        "epochs": training["quick_epochs" if quick else "epochs"],
        "lr": training["lr"],
        "width": training["width"],
    }


def _build(arch: str, seed: int, width: int) -> nn.Module:
    return seeded(seed, partial(make_model, arch, num_classes=10, in_channels=3, image_size=DATA["size"], width=width))


def train_entry(
    arch: str, kind: str, target: Optional[int], seed: int, data: Dataset3, quick: bool = False
) -> ZooEntry:
    """Train one zoo model (no caching) and measure it on the eval split."""
    settings = _settings(arch, quick)
    images, labels = data.train.images, data.train.labels
    if kind in ("patch", "blend"):
        images, labels = PoisonedDataset((images, labels), make_trigger(kind), target, POISON_RATE, seed).tensors()
    model = _build(arch, seed, settings["width"])
    with Timer() as clock:
        train_classifier(model, images, labels, epochs=settings["epochs"], lr=settings["lr"], seed=seed)
    seconds = clock.seconds
    meta = {"arch": arch, "kind": kind, "target": target, "seed": seed, "settings": settings}
    if kind in ("patch", "blend"):
        meta["trigger"] = repr(make_trigger(kind))
        meta.update(backdoor_metrics(model, data.eval.images, data.eval.labels, make_trigger(kind), target).to_dict())
    else:
        meta["trigger"] = None
        meta["clean_accuracy"] = accuracy(model, data.eval.images, data.eval.labels)
    meta["train_seconds"] = round(seconds, 2)
    meta["parameters"] = sum(p.numel() for p in model.parameters())
    return ZooEntry(arch, kind, target, seed, model.eval(), meta)


def _load_cached(folder: str, name: str, arch: str, settings: Dict) -> Optional[Tuple[nn.Module, Dict]]:
    sidecar, weights = os.path.join(folder, name + ".json"), os.path.join(folder, name + ".pt")
    if not (os.path.isfile(sidecar) and os.path.isfile(weights)):
        return None
    with open(sidecar) as stream:
        meta = json.load(stream)
    if meta.get("settings") != json.loads(json.dumps(settings)):
        return None
    model = _build(arch, meta["seed"], settings["width"])
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval(), meta


def load_entry(
    arch: str,
    step: Tuple[str, Optional[int], int],
    *,
    quick: bool = False,
    root: Optional[str] = None,
    train_missing: bool = True,
    data: Optional[Dataset3] = None,
    log: Optional[Callable[[str], None]] = print,
) -> Optional[ZooEntry]:
    """One zoo model, ``step = (kind, target, seed)``, from the cache or trained and cached now.

    Returns ``None`` when it is not cached and ``train_missing`` is ``False``. A cached model
    trained with other settings (epochs, data, ...) counts as missing.
    """
    kind, target, seed = step
    folder = os.path.join(root or default_root(), *(["quick"] if quick else []), arch)
    settings = _settings(arch, quick)
    name = entry_name(kind, target, seed)
    cached = _load_cached(folder, name, arch, settings)
    if cached is not None:
        return ZooEntry(arch, kind, target, seed, cached[0], cached[1])
    if not train_missing:
        return None
    entry = train_entry(arch, kind, target, seed, data if data is not None else zoo_data(), quick)
    buffer = io.BytesIO()
    torch.save(entry.model.state_dict(), buffer)
    write_atomic(os.path.join(folder, name + ".pt"), buffer.getvalue())
    write_json_atomic(os.path.join(folder, name + ".json"), entry.meta)
    if log is not None:
        log(f"{time.strftime('%H:%M:%S')} trained {arch}/{name}: {describe(entry.meta)}")
    return entry


def load_zoo(
    arch: str,
    kinds: Sequence[str] = KINDS,
    *,
    quick: bool = False,
    root: Optional[str] = None,
    train_missing: bool = True,
    data: Optional[Dataset3] = None,
    log: Optional[Callable[[str], None]] = print,
    replica: int = 0,
) -> List[ZooEntry]:
    """The zoo's models of one architecture (eval mode), training and caching the missing ones.

    Args:
        arch: one of :data:`ARCHS`.
        kinds: which kinds to return, among ``"clean"``, ``"patch"``, ``"blend"``, ``"reference"``.
        quick: the small plan (kept apart, in ``<root>/quick``).
        root: the zoo's folder; :func:`default_root` if ``None``.
        train_missing: train what is not cached; if ``False``, return only cached models.
        data: the photo digits, if already loaded (:func:`zoo_data`); loaded when needed.
        log: called with one line per model trained; ``None`` for silence.
        replica: which copy of the plan (:func:`plan`); 0 is the benchmark's zoo.

    Returns:
        The entries in plan order.
    """
    if arch not in TRAINING:
        raise ValueError(f"arch must be one of {', '.join(ARCHS)}, got {arch!r}.")
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"kinds must be among {', '.join(KINDS)}, got {sorted(unknown)}.")
    loaded = {} if data is None else {"data": data}
    entries = []
    for step in plan(quick, replica):
        if step[0] in kinds:
            entry = _cached_or_trained(arch, step, quick, root, loaded if train_missing else None, log)
            if entry is not None:
                entries.append(entry)
    return entries


def _cached_or_trained(
    arch: str,
    step: Tuple[str, Optional[int], int],
    quick: bool,
    root: Optional[str],
    loaded: Optional[Dict[str, Dataset3]],
    log: Optional[Callable[[str], None]],
) -> Optional[ZooEntry]:
    """The cached model, else (``loaded`` not ``None``) train it; the data are read at the first model trained."""
    entry = load_entry(arch, step, quick=quick, root=root, train_missing=False)
    if entry is None and loaded is not None:
        if "data" not in loaded:
            loaded["data"] = zoo_data()
        entry = load_entry(arch, step, quick=quick, root=root, data=loaded["data"], log=log)
    return entry


def describe(meta: Dict) -> str:
    """One line of a model's numbers: clean accuracy, ASR for backdoored models, training seconds."""
    text = f"CA {meta['clean_accuracy']:.3f}"
    if meta.get("attack_success_rate") is not None:
        text += f"  ASR {meta['attack_success_rate']:.3f}"
    return text + f"  {meta['train_seconds']:.1f} s"


def summary(entries: Sequence[ZooEntry]) -> Dict:
    """Per kind: count, clean accuracy range, ASR range and mean training seconds."""
    table: Dict[str, Dict] = {}
    for kind in KINDS:
        group = [e.meta for e in entries if e.kind == kind]
        if not group:
            continue
        row = {
            "models": len(group),
            "clean_accuracy": [
                round(min(m["clean_accuracy"] for m in group), 4),
                round(max(m["clean_accuracy"] for m in group), 4),
            ],
            "mean_train_seconds": round(sum(m["train_seconds"] for m in group) / len(group), 1),
        }
        if kind in ("patch", "blend"):
            asr = [m["attack_success_rate"] for m in group]
            row["attack_success_rate"] = [round(min(asr), 4), round(max(asr), 4)]
        table[kind] = row
    return table


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Train (or list) the zoo's models; print one line per model and, last, one JSON line. Returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--archs", nargs="+", choices=ARCHS, default=list(DEFAULT_ARCHS), help="architectures")
    add_quick_option(parser, "2 clean, 2 backdoored, 1 reference model, fewer epochs")
    parser.add_argument("--out", help="the zoo's folder (default $CLASSPATTERN_CACHE/backdoor_zoo)")
    parser.add_argument("--list", action="store_true", help="only list the cached models; train nothing")
    parser.add_argument(
        "--reverse", action="store_true", help="go through the plan from its end (a second worker filling the same zoo)"
    )
    parser.add_argument(
        "--replica", type=int, default=0, help="a held-out copy of the plan with new seeds (see plan()); 0: the zoo"
    )
    args = parser.parse_args(argv)
    set_threads(1)
    root = args.out or default_root()
    clock = Timer()
    print(f"zoo at {root}{' (quick)' if args.quick else ''}", flush=True)
    loaded: Optional[Dict[str, Dataset3]] = None if args.list else {}
    results: Dict[str, List[ZooEntry]] = {arch: [] for arch in args.archs}
    # Round-robin over architectures, one plan step at a time, so that all of them fill up together.
    steps = plan(args.quick, args.replica)
    for step in reversed(steps) if args.reverse else steps:
        for arch in args.archs:
            entry = _cached_or_trained(arch, step, args.quick, root, loaded, print)
            if entry is not None:
                results[arch].append(entry)
                if args.list:
                    print(f"{arch}/{entry.name}: {describe(entry.meta)}")
    report = {arch: summary(entries) for arch, entries in results.items()}
    report["root"] = root
    report["quick"] = args.quick
    report["total_seconds"] = round(clock.seconds, 1)
    emit_json(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

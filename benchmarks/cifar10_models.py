"""Train the CIFAR-10 models of the real-data benchmarks, resumably, and cache them outside git.

Three architectures (a PreAct-ResNet-18 at width 16, the backdoor benchmarks' network at a
quarter of its channels; a VGG-style net; a global-average-pooling CNN) in the paper's three
settings:

* ``natural``: plain training;
* ``patch`` and ``blend``: backdoored by poisoning 10% of the training images (all-to-one,
  target class 0) with :class:`~captum_classpattern.backdoor.PatchTrigger` (3 x 3 white,
  bottom-right) or :class:`~captum_classpattern.backdoor.BlendTrigger` (uniform noise,
  alpha 0.2);
* ``adversarial``: FGSM with a random start (Wong et al. 2020; L-inf 8/255, step 10/255)
  through ``captum.robust.PGD`` with one step, evaluated under PGD-20.

and the attacks of the backdoor benchmarks (all-to-one, target class 0 unless a zoo says
otherwise; each at its paper's or BackdoorBench's defaults, see ``docs/attacks.rst``):

* ``sig``: the sinusoidal signal, clean-label, on the whole target class (10% of the set);
  ``sig-half`` on half of it (5% of the set), which leaves the class recognised;
* ``bpp``: 3-bit colour depth, 10% relabelled, 10% negatives carrying another image's
  quantisation residual;
* ``lc``: label-consistent, the target class hardened by 10 PGD steps (eps 16/255) on the
  adversarially trained ResNet of this script, with the four-corner checkerboard;
  ``lc-half`` the same on half the target class;
* ``adaptive``: Adap-Blend, 0.3% poisoned and 0.3% cover items blended at 0.15 on half of
  16 pieces, tested with the whole pattern at 0.2; ``adaptive-1pct`` the same at 1% poisoned
  and 1% cover (a departure: at 0.3% the 12-epoch recipe does not learn the trigger);
* ``wanet`` and ``iad``: poisoned inside the training loop after augmentation (WaNet's
  noise mode with cross ratio 2; IAD's generators trained with the classifier, 5 epochs of
  mask pre-training), IAD's trained trigger kept beside the model (``<name>.trigger.pt``).

All use :func:`~captum_classpattern.training.train_with_recipe` (one-cycle SGD, label
smoothing 0.1, reflected crops and flips). Each run writes a checkpoint after every epoch
(``<cache>/<name>.partial.pt``) and resumes from it, so a zoo can be built over several
sessions; a finished run leaves ``<name>.pt`` (the state dict) and ``<name>.json`` (its
curve, minutes and metrics) and is skipped afterwards.

CIFAR-10 is read from ``--data`` or ``$CLASSPATTERN_CIFAR10`` (either torchvision's
``cifar-10-batches-py`` or ``train/`` and ``test/`` class folders); without it the script says so
and exits 0. Models go to ``--cache`` (default ``$CLASSPATTERN_CACHE/cifar10`` or
``~/.cache/captum_classpattern/cifar10``), never into the repository.

Usage::

    python -m benchmarks.cifar10_models --data ~/.cache/cifar10            # every model and setting
    python -m benchmarks.cifar10_models --models preact18 --settings natural adversarial
    python -m benchmarks.cifar10_models --quick                           # 2,000 images, 1 epoch

The last line printed is one JSON object: per run, its settings, minutes and metrics.

This script imports only the standard library, torch and the package (not the benchmarks'
harness), so that it also runs by path, ``python benchmarks/cifar10_models.py ...``.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
from torch import nn

from captum_classpattern.backdoor import (
    ADAPTIVE_BLEND_COVER_RATE,
    ADAPTIVE_BLEND_RATE,
    LC_EPS,
    AdaptiveBlendTrigger,
    BitDepthTrigger,
    BlendTrigger,
    InputAwarePoisoning,
    InputAwareSettings,
    InputAwareTrigger,
    LabelConsistentTrigger,
    PatchTrigger,
    PoisonedDataset,
    SignalTrigger,
    WarpPoisoning,
    WarpTrigger,
    backdoor_metrics,
    label_consistent_dataset,
)
from captum_classpattern.data import Split, load_cifar10
from captum_classpattern.models import PreActResNet18, SmallCNN, SmallVGG
from captum_classpattern.training import (
    PGDPerturbation,
    TrainingRecipe,
    accuracy,
    default_cache_dir,
    pgd_robust_accuracy,
    train_with_recipe,
)

ARCHITECTURES: Dict[str, Callable[[], nn.Module]] = {
    "preact18": lambda: PreActResNet18(num_classes=10, width=16),
    "vgg": lambda: SmallVGG(in_channels=3, num_classes=10, width=24, hidden=256),
    "gap": lambda: SmallCNN(in_channels=3, num_classes=10, width=32),
}
"""The architectures by name, each freshly initialised from torch's global generator."""


def build_preact18() -> nn.Module:
    """The zoo's PreAct-ResNet-18, untrained: a ``--model`` factory for ``classpattern scan``."""
    return ARCHITECTURES["preact18"]()


def build_vgg() -> nn.Module:
    """The zoo's VGG-style network, untrained: a ``--model`` factory for ``classpattern scan``."""
    return ARCHITECTURES["vgg"]()


def build_gap() -> nn.Module:
    """The zoo's pooled CNN, untrained: a ``--model`` factory for ``classpattern scan``."""
    return ARCHITECTURES["gap"]()


SETTINGS = (
    "natural", "patch", "blend", "adversarial", "sig", "bpp", "lc", "adaptive", "adaptive-1pct", "wanet", "iad",
    "sig-half", "lc-half",
)  # fmt: skip
BACKDOORS = ("patch", "blend", "sig", "bpp", "lc", "adaptive", "adaptive-1pct", "wanet", "iad", "sig-half", "lc-half")
"""The backdoored settings; ``wanet`` and ``iad`` poison inside the training loop (after augmentation)."""
IAD_SETTINGS = InputAwareSettings(mask_epochs=5)
"""IAD here: 5 epochs of mask pre-training instead of the authors' 25 (each costs about one classifier epoch)."""
BACKDOOR_TARGET = 0
POISON_RATE = 0.1
EPS = 8 / 255
RECIPES = {
    "preact18": TrainingRecipe(epochs=12),
    "vgg": TrainingRecipe(epochs=12),
    "gap": TrainingRecipe(epochs=12),
}
"""Epochs and schedule per architecture (the same recipe in every setting)."""


def write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file beside it, so a killed run leaves no torn file."""
    folder = os.path.dirname(os.path.abspath(path))
    with tempfile.NamedTemporaryFile(dir=folder, delete=False, suffix=".tmp") as stream:
        stream.write(data)
        temporary = stream.name
    os.replace(temporary, path)


def write_json_atomic(path: str, record: Any) -> None:
    """:func:`write_atomic` of ``record`` as JSON."""
    write_atomic(path, json.dumps(record, indent=1).encode())


def cifar10_root(given: Optional[str]) -> Optional[str]:
    """The CIFAR-10 folder: ``given``, else ``$CLASSPATTERN_CIFAR10``, else ``None``."""
    return given or os.environ.get("CLASSPATTERN_CIFAR10") or None


def cache_folder(given: Optional[str], quick: bool = False) -> str:
    """Where the models live: ``given``, else ``<default cache>/cifar10``; its ``quick`` folder for the smoke runs."""
    folder = given or os.path.join(default_cache_dir(), "cifar10")
    return os.path.join(folder, "quick") if quick else folder


def run_name(arch: str, setting: str, seed: int, target: int = BACKDOOR_TARGET) -> str:
    """The file stem of one trained model, e.g. ``preact18-natural-s0`` or ``preact18-sig-t3-s1``.

    The target appears only when it is not the default class 0 (and never for the settings
    without a backdoor), so the stems of the first models stay valid.
    """
    if target == BACKDOOR_TARGET or setting not in BACKDOORS:
        return f"{arch}-{setting}-s{seed}"
    return f"{arch}-{setting}-t{target}-s{seed}"


def trigger_of(setting: str, seed: int = 0, saved: Optional[str] = None) -> Optional[Callable]:
    """The test-time backdoor trigger of a setting (``None`` for natural and adversarial training).

    WaNet's field is drawn from the model's ``seed``; IAD's trigger is trained with the
    model and read from ``saved`` (the run's ``.trigger.pt``; ``None`` without it).
    """
    if setting == "wanet":
        return WarpTrigger(seed=seed)
    if setting == "iad":
        if saved is None or not os.path.exists(saved):
            return None
        state = torch.load(saved, map_location="cpu", weights_only=True)
        return InputAwareTrigger.from_state_dict(state, IAD_SETTINGS)
    triggers: Dict[str, Callable[[], Callable]] = {
        "patch": PatchTrigger,
        "blend": BlendTrigger,
        "sig": SignalTrigger,
        "sig-half": SignalTrigger,
        "bpp": BitDepthTrigger,
        "lc": LabelConsistentTrigger,
        "lc-half": LabelConsistentTrigger,
        "adaptive": AdaptiveBlendTrigger,
        "adaptive-1pct": AdaptiveBlendTrigger,
    }
    return triggers[setting]() if setting in triggers else None


def load_trained(
    arch: str, setting: str, seed: int = 0, cache: Optional[str] = None, target: int = BACKDOOR_TARGET
) -> nn.Module:
    """A finished model of this script, in eval mode (for the benchmarks that measure patterns).

    Raises:
        FileNotFoundError: the model has not been trained yet; the message says how to train it.
    """
    path = os.path.join(cache_folder(cache), run_name(arch, setting, seed, target) + ".pt")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path} not found: train it with python benchmarks/cifar10_models.py --models {arch} --settings {setting}"
        )
    model = ARCHITECTURES[arch]()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


LC_SURROGATE = ("preact18", "adversarial")
"""The attacker's model for LC's hardening: the adversarially trained ResNet of this script."""
LC_STEPS = 10
"""LC's PGD steps here (the authors run 100 of 1.5/255): 10 of eps / 4 reach the same radius at a tenth of the cost."""


def _label_consistent(train: Split, seed: int, target: int, rate: float) -> Split:
    surrogate = load_trained(*LC_SURROGATE)
    poisoned = label_consistent_dataset(
        surrogate, train.images, train.labels, target, rate, seed=seed, step_size=LC_EPS / 4, steps=LC_STEPS
    )
    return Split(*poisoned.tensors())


def _training_data(train: Split, setting: str, seed: int, target: int) -> Split:
    if setting not in BACKDOORS or setting in ("wanet", "iad"):
        return train
    trigger = trigger_of(setting)
    # The clean-label attacks at half the target class: the class stays recognised, so the
    # scan's collapsed-class check (built on the whole-class variants) cannot be what finds them.
    rate = POISON_RATE / 2 if setting.endswith("-half") else POISON_RATE
    if setting in ("lc", "lc-half"):
        return _label_consistent(train, seed, target, rate)
    if setting in ("adaptive", "adaptive-1pct"):  # poisoned and cover items at one rate, half the pieces each
        stamp = AdaptiveBlendTrigger().training_trigger(seed)
        rate, cover = (ADAPTIVE_BLEND_RATE, ADAPTIVE_BLEND_COVER_RATE) if setting == "adaptive" else (0.01, 0.01)
        poisoned = PoisonedDataset((train.images, train.labels), stamp, target, rate, seed, cover_rate=cover)
        return Split(*poisoned.tensors())
    options: Dict[str, Any] = {}
    if setting in ("sig", "sig-half"):  # clean-label: the whole target class (10% of the set) or half
        options = {"clean_label": True}
    elif setting == "bpp":  # negatives: another image's quantisation residual, label kept
        options = {"cover_rate": POISON_RATE, "cover_trigger": BitDepthTrigger().negative_trigger(train.images, seed)}
    poisoned = PoisonedDataset((train.images, train.labels), trigger, target, rate=rate, seed=seed, **options)
    return Split(*poisoned.tensors())


def _perturbation(setting: str, seed: int, target: int) -> Any:
    """The per-batch hook of a setting: PGD for adversarial training, the in-loop poisoning of WaNet and IAD."""
    if setting == "adversarial":
        return PGDPerturbation(eps=EPS, step_size=10 / 255, steps=1)
    if setting == "wanet":  # BackdoorBench's noise mode: twice as many cross items as poisoned ones
        return WarpPoisoning(WarpTrigger(seed=seed), target=target, rate=POISON_RATE, cross_ratio=2.0)
    if setting == "iad":
        return InputAwarePoisoning(target=target, settings=IAD_SETTINGS, seed=seed, show_progress=True)
    return None


def _metrics(
    model: nn.Module, setting: str, test: Split, robust_images: int, target: int, trigger: Optional[Callable]
) -> Dict[str, Any]:
    metrics: Dict[str, Any] = {"clean_accuracy": accuracy(model, test.images, test.labels)}
    if trigger is not None:
        found = backdoor_metrics(model, test.images, test.labels, trigger, target)
        metrics.update(attack_success_rate=found.attack_success_rate, robust_accuracy=found.robust_accuracy)
    # Robustness under PGD-20 on a class-balanced subset, for every setting: the natural
    # models' near-zero figure is the reference the adversarial one is read against.
    images, labels = test.images[:robust_images], test.labels[:robust_images]
    metrics["pgd20_accuracy"] = pgd_robust_accuracy(model, images, labels, eps=EPS, step_size=2 / 255, steps=20)
    metrics["pgd20_images"] = int(labels.numel())
    return metrics


def train_one(
    arch: str,
    setting: str,
    seed: int,
    train: Split,
    test: Split,
    cache: str,
    recipe: TrainingRecipe,
    robust: int,
    target: int = BACKDOOR_TARGET,
) -> Dict[str, Any]:
    """Train (or resume, or load the result of) one model; returns its record."""
    name = run_name(arch, setting, seed, target)
    record_path = os.path.join(cache, name + ".json")
    if os.path.exists(record_path):
        with open(record_path) as stream:
            return json.load(stream)
    torch.manual_seed(seed)
    model = ARCHITECTURES[arch]()
    data = _training_data(train, setting, seed, target)
    perturb = _perturbation(setting, seed, target)
    monitor = (test.images[:2000], test.labels[:2000])
    run = train_with_recipe(
        model,
        data.images,
        data.labels,
        recipe,
        seed=seed,
        perturb=perturb,
        monitor=monitor,
        checkpoint=os.path.join(cache, name + ".partial.pt"),
        show_progress=True,
        description=name,
    )
    buffer = io.BytesIO()
    torch.save(run.model.state_dict(), buffer)
    write_atomic(os.path.join(cache, name + ".pt"), buffer.getvalue())
    trigger = trigger_of(setting, seed)
    if setting == "iad":  # the trained trigger generator: the test-time trigger of this model only
        trigger = perturb.trigger
        buffer = io.BytesIO()
        torch.save(trigger.state_dict(), buffer)
        write_atomic(os.path.join(cache, name + ".trigger.pt"), buffer.getvalue())
    began = time.perf_counter()
    record = {
        "name": name,
        "arch": arch,
        "setting": setting,
        "seed": seed,
        "target": target if setting in BACKDOORS else None,
        "parameters": sum(p.numel() for p in run.model.parameters()),
        "recipe": dataclasses.asdict(recipe),
        "train_images": int(train.labels.numel()),
        "test_images": int(test.labels.numel()),
        "minutes": run.minutes,
        "curve": run.curve,
        **_metrics(run.model, setting, test, robust, target, trigger),
    }
    record["metric_minutes"] = (time.perf_counter() - began) / 60.0
    write_json_atomic(record_path, record)
    return record


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Train the requested models; print one JSON line. Returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="CIFAR-10 folder (default: $CLASSPATTERN_CIFAR10)")
    parser.add_argument("--cache", help="where models are kept (default: <package cache>/cifar10)")
    parser.add_argument("--models", nargs="+", default=list(ARCHITECTURES), choices=list(ARCHITECTURES))
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, help="override every recipe's epochs")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--robust-images", type=int, default=1000, help="test images for PGD-20 (class-balanced)")
    parser.add_argument("--quick", action="store_true", help="2,000 training images, 1 epoch, a scratch cache")
    args = parser.parse_args(argv)
    root = cifar10_root(args.data)
    if root is None:
        print(json.dumps({"skipped": "no CIFAR-10: give --data PATH or set CLASSPATTERN_CIFAR10"}))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    cache = cache_folder(args.cache, args.quick)
    os.makedirs(cache, exist_ok=True)
    train = load_cifar10(root, train=True, limit=2000 if args.quick else None)
    test = load_cifar10(root, train=False, limit=1000 if args.quick else None)
    # Class-balanced order for the monitoring and PGD subsets: the first images of each class.
    order = torch.argsort(rank_in_class(test.labels) * 10 + test.labels)
    test = Split(test.images[order], test.labels[order])
    records: List[Dict[str, Any]] = []
    for arch in args.models:
        recipe = RECIPES[arch]
        if args.epochs or args.quick:
            recipe = dataclasses.replace(recipe, epochs=1 if args.quick else args.epochs)
        for setting in args.settings:
            robust = min(args.robust_images, 200) if args.quick else args.robust_images
            records.append(train_one(arch, setting, args.seed, train, test, cache, recipe, robust))
            summary = {k: v for k, v in records[-1].items() if k not in ("curve", "recipe")}
            print(json.dumps(summary), file=sys.stderr, flush=True)
    print(json.dumps({"cache": cache, "runs": [{k: v for k, v in r.items() if k != "recipe"} for r in records]}))
    return 0


def rank_in_class(labels: torch.Tensor) -> torch.Tensor:
    """The position of each item among the items of its class (0 for the first of each class)."""
    rank = torch.empty_like(labels)
    for cls in labels.unique():
        where = torch.nonzero(labels == cls).flatten()
        rank[where] = torch.arange(where.numel())
    return rank


if __name__ == "__main__":
    raise SystemExit(main())

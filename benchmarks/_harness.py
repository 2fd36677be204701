"""What the benchmarks share: files, the JSON line, timing, threads, options, child processes and test beds.

Every benchmark imports this module as ``from benchmarks import _harness`` (or names from
it) and is run from the repository root as ``python -m benchmarks.<name>``:

* files: :func:`write_atomic` and :func:`write_json_atomic` (a killed run leaves no torn file);
* output: :func:`emit_json`, the one JSON line a benchmark prints last (and progress lines);
* timing: :class:`Timer`, a stopwatch and context manager on ``time.perf_counter``;
* threads and seeds: :func:`set_threads`, :func:`seeded`;
* options shared by several scripts: :func:`add_threads_option`, :func:`add_quick_option`,
  :func:`add_device_option`;
* child processes (memory is measured in fresh interpreters): :func:`module_command`,
  :func:`child_env`, :func:`run_json_child`, and the resident-set readers
  :func:`status_kb` and :func:`reset_peak_rss`;
* the search test beds of ``bench_search``, ``bench_search_size``, ``bench_bf16_power`` and
  ``bench_schedule_rounds``: :class:`Testbed`, :func:`testbeds` (the digits CNN and two models
  on the photo digits), :func:`photo_digit_beds` (the same at another search-set size),
  :func:`canvases_for`, and the measurements they all take, :func:`search_power`,
  :func:`paper_by_class`, :func:`mean_power` and the resumable :class:`PowerCache`.

``cifar10_models.py`` keeps its own copies of the two file writers: it must also run by path
(``python benchmarks/cifar10_models.py``), where this package cannot be imported.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from functools import partial
from typing import IO, Any, Callable, Dict, List, Optional, Sequence, TypeVar, Union, cast

import torch
from torch import nn

from captum_classpattern import (
    PAPER_SCHEDULE,
    ClassPattern,
    SearchSchedule,
    load_digits,
    predictive_power,
    select_canvases,
    top_k_pattern,
)
from captum_classpattern.data import Dataset3, load_photo_digits
from captum_classpattern.models import make_model
from captum_classpattern.training import cached_model, digits_model, train_classifier

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
"""The repository root (the folder holding ``benchmarks/``)."""

T = TypeVar("T")

# ---------------------------------------------------------------------------------------------
# Files and output


def write_atomic(path: str, data: Union[str, bytes]) -> None:
    """Write ``data`` to ``path`` through a temporary file beside it, so a killed run leaves no torn file.

    Args:
        path: the file to write; its folder is created when missing.
        data: the contents (``str`` is written as UTF-8).
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    payload = data.encode() if isinstance(data, str) else data
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def write_json_atomic(path: str, record: Any, indent: Optional[int] = 1) -> None:
    """:func:`write_atomic` of ``record`` as JSON.

    Args:
        path: the file to write.
        record: anything :func:`json.dumps` takes.
        indent: the JSON's indent (``None``: one line).
    """
    write_atomic(path, json.dumps(record, indent=indent))


def emit_json(record: Any, file: Optional[IO[str]] = None) -> None:
    """Print ``record`` as one JSON line and flush: a benchmark's result line (last), or a progress line.

    Args:
        record: anything :func:`json.dumps` takes.
        file: where to print (default: standard output).
    """
    print(json.dumps(record), file=file if file is not None else sys.stdout, flush=True)


# ---------------------------------------------------------------------------------------------
# Timing, threads, seeds


class Timer:
    """Wall-clock seconds on ``time.perf_counter``: a stopwatch from its creation, or a ``with`` block.

    ``clock = Timer()`` starts it; ``clock.seconds`` is the time since. As a context manager
    it restarts on entry and stops on exit, after which ``seconds`` is the block's duration.
    """

    def __init__(self) -> None:
        self.began = time.perf_counter()
        self.ended: Optional[float] = None

    @property
    def seconds(self) -> float:
        """Seconds from the start to the stop (or to now while running)."""
        end = self.ended if self.ended is not None else time.perf_counter()
        return end - self.began

    @property
    def minutes(self) -> float:
        """:attr:`seconds` in minutes."""
        return self.seconds / 60

    def __enter__(self) -> Timer:
        self.began, self.ended = time.perf_counter(), None
        return self

    def __exit__(self, *exc: object) -> None:
        self.ended = time.perf_counter()


def set_threads(setting: Union[argparse.Namespace, int, None]) -> int:
    """Set torch's intra-op threads; returns the count in effect.

    Args:
        setting: a count, or parsed arguments whose ``threads`` is one (from
            :func:`add_threads_option`); ``None`` (or 0) keeps torch's own count.
    """
    count = setting.threads if isinstance(setting, argparse.Namespace) else setting
    if count:
        torch.set_num_threads(count)
    return torch.get_num_threads()


def seeded(seed: int, build: Callable[[], T]) -> T:
    """``build()`` right after seeding torch's global generator with ``seed`` (a model's initial weights)."""
    torch.manual_seed(seed)
    return build()


# ---------------------------------------------------------------------------------------------
# Options shared by several scripts


def add_threads_option(
    parser: argparse.ArgumentParser, default: Optional[int] = None, text: Optional[str] = None
) -> None:
    """Add ``--threads N``, torch's intra-op threads (read by :func:`set_threads`).

    Args:
        parser: the script's parser.
        default: the count without the option; ``None``: torch's own.
        text: the option's help (default: says the default).
    """
    shown = "torch's" if default is None else str(default)
    text = text or f"torch intra-op threads (default: {shown})"
    parser.add_argument("--threads", type=int, default=default, help=text)


def add_quick_option(parser: argparse.ArgumentParser, text: str) -> None:
    """Add ``--quick``, the script's short smoke run; ``text`` (its help) says what it runs."""
    parser.add_argument("--quick", action="store_true", help=text)


def add_device_option(parser: argparse.ArgumentParser, text: Optional[str] = None) -> None:
    """Add ``--device`` (default ``cpu``), a torch device such as ``cuda``; ``text`` replaces the help."""
    parser.add_argument("--device", default="cpu", help=text or "torch device, e.g. cuda (default cpu)")


# ---------------------------------------------------------------------------------------------
# Child processes: memory is measured in fresh interpreters

LEAN_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "131072"}
"""glibc's fixed mmap threshold: freed large blocks leave the resident set at once, so it follows live memory."""


def module_command(module: str, *args: str) -> List[str]:
    """The command line that runs ``module`` (e.g. ``benchmarks.bench_search``) with ``args`` in this interpreter."""
    return [sys.executable, "-m", module, *args]


def child_env(lean_malloc: bool = False) -> Dict[str, str]:
    """This process's environment with the repository root first on ``PYTHONPATH`` (and :data:`LEAN_MALLOC`)."""
    env = dict(os.environ, **(LEAN_MALLOC if lean_malloc else {}))
    env["PYTHONPATH"] = os.pathsep.join(part for part in (ROOT, env.get("PYTHONPATH", "")) if part)
    return env


def run_json_child(module: str, args: Sequence[str], lean_malloc: bool = False) -> Any:
    """Run ``module`` with ``args`` in a fresh interpreter; returns the JSON of the last line it printed.

    Raises:
        subprocess.CalledProcessError: the child failed.
    """
    done = subprocess.run(
        module_command(module, *args), env=child_env(lean_malloc), capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def status_kb(key: str) -> Optional[int]:
    """A field of ``/proc/self/status`` in kB (``VmRSS``, ``VmHWM``); ``None`` without it (not Linux)."""
    try:
        with open("/proc/self/status") as stream:
            for line in stream:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak of the resident set (``VmHWM``) to the current one; ``False`` if impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as stream:
            stream.write("5")
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------
# The search test beds

CLASSES = list(range(10))
K = 0.05
"""The patterns' size: 5% of the pixels."""

CANVAS_CHOICES = ("index", "first_correct", "confident")
"""The first image of the class, the first one the model classifies correctly, the most confident."""

RGB_MODELS = (("gap_cnn", "gap", 16, 12), ("resnet18_w8", "resnet18", 8, 8))
"""The 3-channel test beds: name, :func:`make_model` architecture, width, training epochs."""

SIZE_MODELS = RGB_MODELS + (("vgg_w8", "vgg", 8, 8),)
"""The models of the search-set size test beds (:func:`photo_digit_beds`): :data:`RGB_MODELS` and a narrow VGG."""


@dataclass
class Testbed:
    """A trained model with its search and held-out splits."""

    name: str
    model: nn.Module
    data: Dataset3
    classes: List[int]
    key: str  # names the model, its training and its data in the cache of powers


def trained_on(name: str, build: Callable[[], nn.Module], data: Dataset3, epochs: int) -> nn.Module:
    """``build()`` trained on ``data``'s train split with seed 0, cached by its settings."""
    settings = {"model": name, "data": "photo_digits", "epochs": epochs, "seed": 0, "v": 1}

    def train(model: nn.Module) -> nn.Module:
        return train_classifier(model, data.train.images, data.train.labels, epochs=epochs, seed=0)

    return cached_model(f"bench_{name}", settings, partial(seeded, 0, build), train)


def testbeds() -> List[Testbed]:
    """The digits CNN, and a BatchNorm / global-pooling CNN and a narrow ResNet-18 on photo digits."""
    beds = [Testbed("digits_cnn", digits_model(), load_digits(), CLASSES, "digits_cnn-e12-s0")]
    photo = load_photo_digits()
    for name, arch, width, epochs in RGB_MODELS:
        model = trained_on(name, partial(make_model, arch, width=width), photo, epochs)
        beds.append(Testbed(name, model, photo, CLASSES, f"{name}-photo_digits-e{epochs}-s0"))
    return beds


def photo_digit_beds(copies: int, names: Sequence[str]) -> List[Testbed]:
    """The :data:`SIZE_MODELS` in ``names``, with photo-digit splits of ``copies`` composites per digit.

    The models are trained (and cached) on the default photo digits; the search and held-out
    splits are built with ``copies`` composites per handwritten digit (6: the authors' size).
    """
    train_data = load_photo_digits()
    splits = load_photo_digits(held_out_copies=copies)
    chosen = []
    for name, arch, width, epochs in SIZE_MODELS:
        if name in names:
            model = trained_on(name, partial(make_model, arch, width=width), train_data, epochs)
            chosen.append(Testbed(name, model.eval(), splits, CLASSES, f"{name}-copies{copies}"))
    return chosen


def canvases_for(bed: Testbed, strategy: str) -> torch.Tensor:
    """One canvas per class of ``bed`` by ``strategy`` (one of :data:`CANVAS_CHOICES`)."""
    images, labels = bed.data.search.images, bed.data.search.labels
    if strategy != "first_correct":
        return select_canvases(bed.model, images, labels, bed.classes, strategy)
    with torch.no_grad():
        predicted = torch.cat([bed.model(images[i : i + 256]).argmax(1) for i in range(0, len(images), 256)])
    picked = []
    for c in bed.classes:
        rows = torch.nonzero((labels == c) & (predicted == c)).flatten()
        if rows.numel() == 0:
            raise ValueError(f"{bed.name}: no search image of class {c} is classified correctly.")
        picked.append(images[int(rows[0])])
    return torch.stack(picked)


def mean_power(
    model: nn.Module,
    data: Dataset3,
    canvases: torch.Tensor,
    maps: torch.Tensor,
    tie_break: Optional[torch.Tensor] = None,
    classes: Sequence[int] = CLASSES,
) -> float:
    """Mean predictive power over ``classes`` of the 5% patterns (ties broken by ``tie_break`` when given)."""
    powers = [
        predictive_power(
            model,
            top_k_pattern(maps[i], canvases[i], K, tie_break=None if tie_break is None else tie_break[i]),
            data.eval.images,
            data.eval.labels,
            c,
        )
        for i, c in enumerate(classes)
    ]
    return sum(powers) / len(powers)


def search_power(
    bed: Testbed,
    canvases: torch.Tensor,
    schedule: SearchSchedule,
    seed: int,
    autocast_dtype: Optional[torch.dtype] = None,
) -> Dict[str, Any]:
    """All classes of ``bed`` in one call: mean power of the 5% patterns and wall time of the call.

    ``autocast_dtype`` runs the search (not the power measurement) under autocast.
    """
    explainer = ClassPattern(bed.model)
    with Timer() as clock:
        maps = explainer.attribute(
            canvases,
            target=bed.classes,
            baselines=bed.data.search.images,
            baseline_labels=bed.data.search.labels,
            schedule=schedule,
            seed=seed,
            autocast_dtype=autocast_dtype,
        )
    power = mean_power(bed.model, bed.data, canvases, maps, explainer.last_tie_break, bed.classes)
    return {"power": power, "seconds": clock.seconds, "images": explainer.last_stats.images_forwarded}


def paper_by_class(bed: Testbed, canvases: torch.Tensor, seed: int) -> Dict[str, Any]:
    """The paper schedule, one class per call as the authors run it: wall time, images, mean power."""
    explainer = ClassPattern(bed.model)
    maps, ties, images = [], [], 0
    with Timer() as clock:
        for row, target in enumerate(bed.classes):
            maps.append(
                explainer.attribute(
                    canvases[row : row + 1],
                    target=target,
                    baselines=bed.data.search.images,
                    baseline_labels=bed.data.search.labels,
                    schedule=PAPER_SCHEDULE,
                    seed=seed,
                )
            )
            ties.append(cast(torch.Tensor, explainer.last_tie_break))  # set by every search
            images += explainer.last_stats.images_forwarded
    power = mean_power(bed.model, bed.data, canvases, torch.cat(maps), torch.cat(ties), bed.classes)
    return {"seconds": clock.seconds, "images": images, "power": power}


class PowerCache:
    """Powers per (model, canvas strategy, seed, schedule) in a JSON file, so reruns skip them."""

    def __init__(self, path: Optional[str]) -> None:
        self.path = path
        self.entries: Dict[str, dict] = {}
        if path and os.path.exists(path):
            with open(path) as stream:
                self.entries = json.load(stream)

    @staticmethod
    def key(bed: Testbed, strategy: str, seed: int, schedule: SearchSchedule) -> str:
        """The entry's key: the bed, the canvas strategy, the seed, the pattern size and the schedule."""
        return json.dumps([bed.key, strategy, seed, K, asdict(schedule)], sort_keys=True)

    def entry(self, key: str, compute: Callable[[], dict]) -> dict:
        """The entry under ``key``; ``compute()`` it and write the file when there is none."""
        if key not in self.entries:
            self.entries[key] = compute()
            if self.path:
                write_json_atomic(self.path, self.entries, indent=None)
        return self.entries[key]

    def power(self, bed: Testbed, strategy: str, canvases: torch.Tensor, schedule: SearchSchedule, seed: int) -> dict:
        """:func:`search_power`, read from the cache when it has the entry."""
        return self.entry(self.key(bed, strategy, seed, schedule), lambda: search_power(bed, canvases, schedule, seed))

"""Checkpoints of a multi-class search: a manifest of the run's settings and one file per finished chunk.

A checkpoint folder holds ``manifest.json`` (the settings, a fingerprint of the model and the
data, the package version) and ``classes-<start>-<stop>.pt`` files, each the results of the
classes at positions ``start`` to ``stop - 1`` of the run's class list. Every file is written to
a temporary name and renamed into place, so a killed run leaves only whole files. The files are
named by the positions they cover, so the ranks of a ``torchrun`` job write their own files and a
run resumed with another number of processes still finds every finished class.

The environment variable ``CLASSPATTERN_TEST_EXIT_AFTER_CHUNKS=N`` (for tests only) makes the
process exit at once, as if killed, after it has written its ``N``-th chunk file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import re
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
from torch import Tensor
from torch.utils.data import Subset

from .._utils import write_atomic, write_json_atomic
from .._version import __version__
from ..attr import DEFAULT_SCHEDULE, NAMED_SCHEDULES, ImageStream, SearchSchedule
from ..metrics import CaptumBaseline
from ._budget import PowerSample
from ._results import ClassResults

MANIFEST = "manifest.json"
FORMAT = 1
EXIT_AFTER_CHUNKS = "CLASSPATTERN_TEST_EXIT_AFTER_CHUNKS"
_CHUNK_FILE = re.compile(r"^classes-(\d+)-(\d+)\.pt$")
_TEMPORARY_PREFIX = ".tmp-"  # the prefix write_atomic gives its temporary files
_FINGERPRINT_BATCH = 256
_NAMED_SCHEDULES: Dict[Optional[str], SearchSchedule] = {None: DEFAULT_SCHEDULE}
_NAMED_SCHEDULES.update(NAMED_SCHEDULES)


def _tensor_fingerprint(tensor: Tensor) -> List[Any]:
    """Shape, dtype, sum and position-weighted sum (so a reordering shows) of a tensor, in batches."""
    rows = tensor.detach().reshape(len(tensor), -1) if tensor.dim() else tensor.detach().reshape(1, 1)
    total = weighted = 0.0
    for start in range(0, len(rows), _FINGERPRINT_BATCH):
        sums = rows[start : start + _FINGERPRINT_BATCH].double().sum(1)
        order = torch.arange(start + 1, start + 1 + len(sums), dtype=torch.float64, device=sums.device)
        total += float(sums.sum())
        weighted += float((sums * order).sum())
    # Ten significant digits: the same data gives the same text whatever the number of threads.
    return [list(tensor.shape), str(tensor.dtype), f"{total:.10e}", f"{weighted:.10e}"]


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def _model_fingerprint(model: Any) -> str:
    state = getattr(model, "state_dict", None)
    if not callable(state):
        return "no state_dict"
    return _digest([[name, _tensor_fingerprint(value)] for name, value in state().items() if isinstance(value, Tensor)])


def _schedule_entry(schedule: Union[str, SearchSchedule, None]) -> Any:
    resolved = _NAMED_SCHEDULES.get(schedule, schedule) if not isinstance(schedule, SearchSchedule) else schedule
    return dataclasses.asdict(resolved) if isinstance(resolved, SearchSchedule) else repr(resolved)


def _baseline_entry(baseline: Union[str, CaptumBaseline]) -> Union[str, Dict[str, str]]:
    """A method name as itself (as manifests always had it), anything else as its name and stable repr."""
    if isinstance(baseline, str):
        return baseline
    if (
        isinstance(baseline.attribution, str)
        and baseline.name == baseline.attribution
        and not baseline.attribute_kwargs
    ):
        return baseline.name
    return {"name": baseline.name, "repr": repr(baseline)}


def _dataset_entry(dataset: Any) -> Any:
    """What identifies a dataset without reading its images: its files (``samples``), subsets, type and length."""
    if isinstance(dataset, Subset):
        return ["Subset", _digest([int(i) for i in dataset.indices]), _dataset_entry(dataset.dataset)]
    samples = getattr(dataset, "samples", None)
    if isinstance(samples, list):
        root = os.fspath(getattr(dataset, "root", ""))
        files = [[os.path.relpath(str(path), root or None), int(label)] for path, label in samples]
        return [type(dataset).__name__, _digest(files)]
    return [type(dataset).__name__, len(dataset)]


def _data_digest(data: Any) -> str:
    """A Split's tensors; a stream's labels and files; a power sample's data and budget."""
    if isinstance(data, PowerSample):
        return _digest([_data_digest(data.data), data.describe()])
    if isinstance(data, ImageStream):
        return _digest([_tensor_fingerprint(data.labels), _dataset_entry(data.dataset)])
    return _digest([_tensor_fingerprint(data.images), _tensor_fingerprint(data.labels)])


def build_manifest(
    model: Any, search: Any, held_out: Any, classes: Sequence[int], settings: Dict[str, Any]
) -> Dict[str, Any]:
    """The manifest of a run: what must be equal for its checkpoints to be reused.

    Args:
        model: the classifier (its state dict is fingerprinted).
        search: the search split or stream (fingerprinted: a Split's tensors, a stream's
            labels and the files of its dataset, not its images).
        held_out: the held-out split, stream or power sample (fingerprinted likewise, with the
            sample's budget).
        classes: the run's classes, in order.
        settings: ``k``, ``class_names``, ``baselines`` (method names or
            :class:`~captum_classpattern.metrics.CaptumBaseline` objects), ``schedule``,
            ``canvas_strategy`` and ``seed``.

    Returns:
        A JSON-ready mapping.
    """
    names = settings["class_names"]
    manifest = {
        "format": FORMAT,
        "package_version": __version__,
        "classes": list(classes),
        "k": settings["k"],
        "schedule": _schedule_entry(settings["schedule"]),
        "seed": settings["seed"],
        "canvas_strategy": settings["canvas_strategy"],
        "baselines": [_baseline_entry(baseline) for baseline in settings["baselines"]],
        "class_names": None if names is None else [str(name) for name in names],
        "model": _model_fingerprint(model),
        "search_data": _data_digest(search),
        "held_out_data": _data_digest(held_out),
    }
    # The JSON round trip makes it compare equal to a manifest read back from its file.
    return json.loads(json.dumps(manifest))


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_checkpoint_folder(folder: Union[str, os.PathLike]) -> None:
    """Refuse a checkpoint folder that is a file, before any work.

    Raises:
        ValueError: ``folder`` exists and is not a folder.
    """
    path = os.fspath(folder)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"checkpoint_dir {path} is a file, not a folder: give a folder (it is created when missing).")


class Checkpoints:
    """The checkpoint folder of one run.

    Args:
        folder: where the manifest and the chunk files live (created when needed).
        manifest: the run's manifest (:func:`build_manifest`).
    """

    def __init__(self, folder: Union[str, os.PathLike], manifest: Dict[str, Any]) -> None:
        self.folder = os.fspath(folder)
        self.manifest = manifest
        self.digest = _digest(manifest)
        self.written = 0

    def _chunk_files(self) -> Dict[str, range]:
        if not os.path.isdir(self.folder):
            return {}
        found = {}
        for name in sorted(os.listdir(self.folder)):
            match = _CHUNK_FILE.match(name)
            if match:
                found[name] = range(int(match.group(1)), int(match.group(2)))
        return found

    def prepare(self, resume: bool) -> None:
        """Set the folder up for this run: check the manifest when resuming, else start afresh.

        Run on one process only (rank 0), before the others read the folder.

        Resuming never deletes a finished chunk: when the manifest is missing but chunk files
        are there, nothing is touched and the error says how to recover. Only a run without
        ``resume`` (an explicit fresh start) deletes old chunks.

        Raises:
            ValueError: the folder is a file; resuming, but the folder's manifest is missing
                (with chunk files present), unreadable, or records other settings, data or model.
        """
        check_checkpoint_folder(self.folder)
        os.makedirs(self.folder, exist_ok=True)
        for name in os.listdir(self.folder):  # the leftovers of a write that was interrupted
            if name.startswith(_TEMPORARY_PREFIX):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(self.folder, name))
        if resume and os.path.lexists(os.path.join(self.folder, MANIFEST)):
            self.check()
            return
        chunks = self._chunk_files()
        if resume and chunks:
            raise ValueError(
                f"cannot resume from {self.folder}: its manifest ({MANIFEST}) is missing, so its {len(chunks)} "
                "finished chunk file(s) cannot be matched to this run; nothing was deleted. Restore the manifest "
                "from a backup to resume, or start afresh without resume (resume=False; on the command line, "
                "without --resume), which deletes them."
            )
        for name in chunks:
            os.remove(os.path.join(self.folder, name))
        write_json_atomic(os.path.join(self.folder, MANIFEST), self.manifest)

    def check(self) -> None:
        """Refuse a folder whose manifest differs from this run's.

        Raises:
            ValueError: the manifest is missing, unreadable or records other settings.
        """
        path = os.path.join(self.folder, MANIFEST)
        try:
            with open(path, encoding="utf-8") as stream:
                recorded = json.load(stream)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(
                f"cannot read the checkpoint manifest {path} ({type(error).__name__}: {' '.join(str(error).split())}); "
                "nothing was deleted: restore the manifest to resume, or start afresh without resume (resume=False; "
                "on the command line, without --resume), which deletes the folder's checkpoints."
            ) from error
        if not isinstance(recorded, dict):
            raise ValueError(
                f"{path} is not a checkpoint manifest; nothing was deleted: restore it to resume, or start afresh "
                "without resume (resume=False; on the command line, without --resume)."
            )
        if recorded == self.manifest:
            return
        keys = list(self.manifest) + [key for key in recorded if key not in self.manifest]
        changes = [
            f"{key} {_short(recorded.get(key))} now {_short(self.manifest.get(key))}"
            for key in keys
            if recorded.get(key) != self.manifest.get(key)
        ]
        raise ValueError(
            f"the checkpoints in {self.folder} belong to another run ({'; '.join(changes)}): resume with the "
            "same model, data and settings, or start afresh without resume (which deletes them)."
        )

    def load(self, positions: Sequence[int]) -> Dict[int, ClassResults]:
        """The finished classes among ``positions`` (positions in the run's class list).

        Raises:
            ValueError: a chunk file is unreadable or belongs to another run.
        """
        wanted = set(positions)
        found: Dict[int, ClassResults] = {}
        for name, span in self._chunk_files().items():
            if not wanted.intersection(span):
                continue
            results = self._read(os.path.join(self.folder, name), span)
            for index, position in enumerate(span):
                if position in wanted:
                    found[position] = results.pick(index)
        return found

    def _read(self, path: str, span: range) -> ClassResults:
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(data, dict):
                raise ValueError(f"it holds a {type(data).__name__}")
            results = ClassResults.from_dict(data)
        except Exception as error:  # any unreadable file gets the same advice
            message = " ".join(str(error).split())[:200]
            raise ValueError(
                f"the checkpoint {path} is unreadable ({type(error).__name__}: {message}): delete it to search "
                "its classes again."
            ) from error
        classes = self.manifest["classes"][span.start : span.stop]
        if data.get("manifest") != self.digest or [row.class_ for row in results.rows] != classes:
            raise ValueError(
                f"the checkpoint {path} belongs to another run: delete it, or start afresh without resume."
            )
        return results

    def save(self, start: int, results: ClassResults) -> None:
        """Write the results of the classes at positions ``start`` to ``start + len(results) - 1``."""
        buffer = io.BytesIO()
        torch.save({"format": FORMAT, "manifest": self.digest, **results.to_dict()}, buffer)
        write_atomic(os.path.join(self.folder, f"classes-{start:06d}-{start + len(results):06d}.pt"), buffer.getvalue())
        self.written += 1
        exit_after: Optional[str] = os.environ.get(EXIT_AFTER_CHUNKS)
        if exit_after and self.written >= int(exit_after):
            os._exit(3)  # a test stands in for a killed run: no clean-up, no flushing

"""Loading and checking what the subcommands are given: device, model, weights, data, classes.

Everything here runs before any search or training, and every fault it finds is a
:class:`~captum_classpattern.cli._errors.UsageError` whose message names the argument.
"""

from __future__ import annotations

import importlib
import os
import pickle
import sys
import warnings
import zipfile
from typing import Any, List, Mapping, Optional, Sequence, Tuple

import torch
from safetensors.torch import load_file as load_safetensors
from torch import Tensor

from ..attr import Budget, ImageStream, pixel_budget
from ..backdoor import load_backdoorbench
from ..data import CIFAR10_CLASSES, DIGIT_CLASSES, Split, load_cifar10, load_digits, load_image_folder, read_image
from ..pipeline import local_device
from ._classes import ClassSpec, resolve_classes
from ._errors import DEBUG_HINT, UsageError, listing, one_line

_ZIP_HEADER = b"PK\x03\x04"  # how a file written by torch.save starts

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net")
"""Keys a training checkpoint may keep the model's state dict under; ``--weights`` looks there."""

STRIPPED_PREFIXES = ("module.", "_orig_mod.")
"""Key prefixes left by ``nn.DataParallel``/``DistributedDataParallel`` and ``torch.compile``; removed
when every key of the file has one and the model's keys do not."""


def parse_device(text: str) -> torch.device:
    """The device of ``--device``, checked to exist here (under ``torchrun`` a bare ``cuda`` is this rank's GPU).

    Raises:
        UsageError: not a device name, or no such device on this machine.
    """
    try:
        device = local_device(text)
    except (RuntimeError, ValueError) as error:
        raise UsageError(f"--device {text!r} is not a device name: use cpu, cuda, cuda:N or mps.") from error
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UsageError(f"--device {text}: no CUDA GPU is available on this machine; use --device cpu.")
        if device.index is not None and device.index >= count:
            raise UsageError(f"--device {text}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}.")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise UsageError(f"--device {text}: MPS is not available on this machine; use --device cpu.")
    elif device.type != "cpu":
        try:
            torch.empty(0, device=device)
        except Exception as error:  # each backend fails in its own way; all mean "not here"
            raise UsageError(
                f"--device {text} cannot be used here ({one_line(error, 150)}); use --device cpu."
            ) from error
    return device


def _import_factory(spec: str) -> Any:
    module_name, _, factory_name = spec.partition(":")
    if not module_name or not factory_name:
        raise UsageError(
            f"--model must look like module:factory (e.g. mypkg.nets:build) or name a BackdoorBench "
            f"attack_result.pt, got {spec!r}."
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and (module_name == error.name or module_name.startswith(error.name + ".")):
            raise UsageError(
                f"--model {spec}: no module named {module_name!r}; run from the folder that holds it or add that "
                "folder to PYTHONPATH."
            ) from error
        raise UsageError(f"--model {spec}: importing {module_name} failed: {one_line(error)}.") from error
    except Exception as error:  # the user's module raised while it was imported
        raise UsageError(
            f"--model {spec}: importing {module_name} raised {type(error).__name__}: {one_line(error, 200)} "
            f"({DEBUG_HINT})."
        ) from error
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise UsageError(f"--model {spec}: {module_name} has no callable {factory_name}.")
    return factory


def _is_safetensors(path: str, head: bytes) -> bool:
    """A ``.safetensors`` name, or a file that starts like one (8-byte header length, then ``{``)."""
    if path.endswith(".safetensors"):
        return True
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return 8 + int.from_bytes(head[:8], "little") <= os.path.getsize(path)


def _load_safetensors(path: str) -> Mapping[str, Any]:
    try:
        return load_safetensors(path, device="cpu")
    except Exception as error:  # safetensors' own error type, or an OSError from mmap
        raise UsageError(
            f"--weights {path} is not a usable safetensors file: the file is truncated or damaged "
            f"({one_line(error, 120)})."
        ) from error


def _is_torch_zip(path: str) -> bool:
    """Whether a zip archive is laid out as torch.save writes it (``<name>/data.pkl``); a damaged one counts."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("data.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return True  # unreadable as a zip: a truncated torch file, reported as such


def _load_torch(path: str, head: bytes) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load fails in many ways on a bad file; all mean "unusable"
        if isinstance(error, pickle.UnpicklingError) and "Weights only load failed" in str(error):
            why = "it holds Python objects besides tensors, e.g. a whole pickled model"
        elif not head:
            why = "the file is empty, not a weights file"
        elif head.startswith(_ZIP_HEADER) and not _is_torch_zip(path):
            why = "it is a zip archive but not a weights file written by torch.save (a NumPy .npz or another archive?)"
        elif head.startswith(_ZIP_HEADER):
            why = "the file is truncated or damaged"
        else:
            why = (
                f"it is not a file written by torch.save ({type(error).__name__}: {one_line(error, 80) or 'no detail'})"
            )
        raise UsageError(f"--weights {path} is not a usable state_dict: {why}; save model.state_dict().") from error


def _holds_tensors(value: Any) -> bool:
    return isinstance(value, Mapping) and any(isinstance(item, Tensor) for item in value.values())


def _unwrap(state: Any, path: str) -> Mapping[str, Any]:
    """The state dict in what the file holds: the mapping itself, or the one under a wrapper key."""
    if not isinstance(state, Mapping):
        raise UsageError(f"--weights {path} holds a {type(state).__name__}, not a state_dict; save model.state_dict().")
    if state and all(isinstance(value, Tensor) for value in state.values()):
        return state
    wrapped = [key for key in WRAPPER_KEYS if _holds_tensors(state.get(key))]
    if len(wrapped) > 1:
        raise UsageError(
            f"--weights {path} holds tensors under several keys {listing(wrapped)}: save the state dict you mean "
            "with torch.save(model.state_dict(), path)."
        )
    if wrapped:
        return state[wrapped[0]]
    found = listing([str(key) for key in state])
    if any(isinstance(value, Tensor) for value in state.values()):
        return state  # tensors beside other entries: the fit check names the keys that do not fit
    if any(_holds_tensors(value) for value in state.values()):
        raise UsageError(
            f"--weights {path} is a checkpoint with no state dict under any of the keys {listing(WRAPPER_KEYS)}; "
            f"top-level keys found: {found}; save model.state_dict() or put it under one of these keys."
        )
    raise UsageError(f"--weights {path} holds no tensors (top-level keys found: {found}); save model.state_dict().")


def _read_state(path: str) -> Mapping[str, Any]:
    if os.path.isdir(path):
        raise UsageError(
            f"--weights {path} is a folder: give the file written by torch.save(model.state_dict(), path)."
        )
    if not os.path.exists(path):
        raise UsageError(f"--weights {path}: not found: no such file.")
    try:
        with open(path, "rb") as stream:
            head = stream.read(16)
    except OSError as error:
        raise UsageError(f"--weights {path} cannot be read ({error.strerror or error}).") from error
    state = _load_safetensors(path) if _is_safetensors(path, head) else _load_torch(path, head)
    return _unwrap(state, path)


def _without_wrapper_prefixes(state: Mapping[str, Any], expected: Mapping[str, Any]) -> Mapping[str, Any]:
    """``state`` without the ``module.`` / ``_orig_mod.`` prefix of every key, when the model's keys lack it."""
    changed = True
    while changed:
        changed = False
        for prefix in STRIPPED_PREFIXES:
            prefixed = bool(state) and all(isinstance(key, str) and key.startswith(prefix) for key in state)
            if prefixed and not any(key.startswith(prefix) for key in expected):
                state = {key[len(prefix) :]: value for key, value in state.items()}
                changed = True
    return state


def _check_fit(model: torch.nn.Module, state: Mapping[str, Any], path: str, spec: str) -> None:
    expected = model.state_dict()
    state = _without_wrapper_prefixes(state, expected)
    missing = [key for key in expected if key not in state]
    unexpected = [str(key) for key in state if key not in expected]
    resized = [
        f"{key} {tuple(state[key].shape)} in the file, {tuple(value.shape)} in the model"
        for key, value in expected.items()
        if isinstance(state.get(key), Tensor) and state[key].shape != value.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {listing(unexpected)}")
    if resized:
        problems.append(f"size mismatch: {'; '.join(resized[:3])}{' ...' if len(resized) > 3 else ''}")
    nested = [str(key) for key, value in state.items() if isinstance(value, Mapping)]
    if nested:
        problems.append(f"the file nests {listing(nested)}: save the model's state_dict itself")
    if problems:
        raise UsageError(f"--weights {path} does not fit {spec} (another architecture?): {'; '.join(problems)}.")
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise UsageError(f"--weights {path} does not fit {spec}: {one_line(error, 300)}") from error


BACKDOORBENCH_SUFFIXES = (".pt", ".pth")
"""Ends of a ``--model`` that names a BackdoorBench result file rather than ``module:factory``."""


def is_backdoorbench_spec(spec: str) -> bool:
    """Whether ``--model`` names a file (BackdoorBench's ``attack_result.pt``) instead of ``module:factory``."""
    return os.path.isfile(spec) or (":" not in spec and spec.endswith(BACKDOORBENCH_SUFFIXES))


def _load_backdoorbench(spec: str, weights: Optional[str]) -> torch.nn.Module:
    """The classifier of a BackdoorBench file; with ``weights``, those of a second such file of the same kind."""
    try:
        model, record = load_backdoorbench(spec, backdoor_test=False)
    except (OSError, ValueError, TypeError) as error:
        hint = ""
        if "not a BackdoorBench result file" in str(error):
            hint = "; for a plain state dict give --model module:factory --weights FILE"
        raise UsageError(f"--model {spec}: {one_line(error, 400)}{hint}") from error
    if not weights:
        return model
    try:
        other, other_record = load_backdoorbench(weights, dataset=record.dataset, backdoor_test=False)
    except (OSError, ValueError, TypeError) as error:
        raise UsageError(
            f"--weights {weights}: with a BackdoorBench --model, weights must be another BackdoorBench result file "
            f"of the same architecture: {one_line(error, 300)}"
        ) from error
    if (other_record.model_name, other_record.num_classes) != (record.model_name, record.num_classes):
        raise UsageError(
            f"--weights {weights} holds a {other_record.model_name} with {other_record.num_classes} classes, "
            f"--model {spec} a {record.model_name} with {record.num_classes}: give a file of the same architecture."
        )
    return other


def load_model(spec: str, weights: Optional[str], device: torch.device) -> torch.nn.Module:
    """Build a model from ``module:factory`` or a BackdoorBench file, load ``--weights`` into it, move it to ``device``.

    Args:
        spec: the ``--model`` argument: ``module:factory``, or the path of a BackdoorBench
            ``attack_result.pt`` (see :func:`~captum_classpattern.backdoor.load_backdoorbench`:
            the model, its normalisation in front, taking [0, 1] images).
        weights: the ``--weights`` argument: a ``.safetensors`` file, a state dict saved with
            ``torch.save``, or a checkpoint holding it under one of :data:`WRAPPER_KEYS`
            (a ``module.``/``_orig_mod.`` prefix on every key is removed); with a
            BackdoorBench ``--model``, another BackdoorBench result file of the same
            architecture (a reference model of ``scan``, say).
        device: a device checked by :func:`parse_device`.

    Returns:
        The model, in evaluation mode.

    Raises:
        UsageError: a malformed spec, a missing module or factory, a factory that raises or
            returns no module, a missing, unreadable or unfitting weights file, or a
            BackdoorBench file that cannot be read or names an unsupported architecture.
    """
    if is_backdoorbench_spec(spec):
        return _load_backdoorbench(spec, weights).to(device).eval()
    factory = _import_factory(spec)
    state = _read_state(weights) if weights else None
    try:
        model = factory()
    except Exception as error:  # the user's factory
        raise UsageError(
            f"--model {spec}: the factory raised {type(error).__name__}: {one_line(error, 200)} ({DEBUG_HINT})."
        ) from error
    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"--model {spec} must return a torch.nn.Module, got {type(model).__name__}.")
    if weights and state is not None:
        _check_fit(model, state, weights, spec)
    return model.to(device).eval()


FOLDER_SIDE = 224
"""Side a folder's images are resized and centre-cropped to when no size is given (ImageNet's)."""


def _halves(split: Split, seed: int) -> Tuple[Split, Split]:
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))
    cut = len(split) // 2
    first, second = order[:cut], order[cut:]
    return Split(split.images[first], split.labels[first]), Split(split.images[second], split.labels[second])


def load_data(spec: str, limit: int, size: Optional[int] = None) -> Tuple[Split, Split, Sequence[str]]:
    """``(search, held_out, class_names)`` for ``digits``, ``cifar10:PATH`` or ``folder:PATH``.

    Args:
        spec: the ``--data`` argument.
        limit: images read from CIFAR-10 or a folder, the first of each class in equal shares.
        size: side of the images: the digits are drawn at it, CIFAR-10 resized to it, a
            folder's images resized and centre-cropped to it; ``None``: the digits loader's
            default, 32 for CIFAR-10, :data:`FOLDER_SIDE` for a folder.

    Raises:
        UsageError: an unknown spec, data that is missing or unreadable, or too few images.
    """
    kind, _, path = spec.partition(":")
    try:
        if spec == "digits":
            digits = load_digits() if size is None else load_digits(size=size)
            search, held_out, names = digits.search, digits.eval, DIGIT_CLASSES
        elif kind == "cifar10" and path:
            search, held_out = _halves(load_cifar10(path, train=False, limit=limit, size=size), 0)
            names = CIFAR10_CLASSES
        elif kind == "folder" and path:
            split, names = load_image_folder(path, size=size or FOLDER_SIDE, limit=limit)
            search, held_out = _halves(split, 0)
        else:
            raise UsageError(
                f"--data must be digits, cifar10:PATH or folder:PATH (or the path of an image folder to stream), "
                f"got {spec!r}."
            )
    except (OSError, ValueError, EOFError, KeyError, pickle.UnpicklingError) as error:
        raise UsageError(f"--data {spec}: {one_line(error, 300)}") from error
    if len(search) == 0 or len(held_out) == 0:
        raise UsageError(f"--data {spec}: too few images to split into search and held-out images; raise --limit.")
    return search, held_out, names


def check_job(
    model: torch.nn.Module,
    search: Split,
    names: Sequence[str],
    classes: Optional[List[ClassSpec]],
    k: Optional[Budget],
    model_spec: Optional[str],
    data_spec: str,
    weights: Optional[str] = None,
) -> List[int]:
    """Check that the model runs on the data and that ``--classes`` and ``--k`` fit them.

    Runs the model on two search images (on its device), so that a model that does not take
    these images, returns NaN or infinite logits (broken weights) or fewer than two classes,
    or has fewer classes than the data, fails here, before any search.

    Args:
        model: the loaded model.
        search: the search images.
        names: the data's class names.
        classes: the parsed ``--classes``, numbers or names (``None``: all the data's classes).
        k: the ``--k`` argument (``None``: no pattern size to check).
        model_spec: the ``--model`` argument, named in messages (``None``: a built-in model).
        data_spec: the ``--data`` argument, named in messages.
        weights: the ``--weights`` file loaded into the model, named when its logits are broken.

    Returns:
        The class numbers to search.

    Raises:
        UsageError: the model fails on the images or returns no logits, logits without a
            class signal, fewer classes than the data, a class out of range or not a name of
            the data, or a pattern size that does not fit the images.
    """
    who = model_spec or "(the built-in model)"
    device = next(iter(model.parameters()), torch.empty(0)).device
    probe = search.images[:2].to(device)
    try:
        with torch.no_grad():
            logits = model(probe)
    except Exception as error:  # the user's model on the user's data
        raise UsageError(
            f"--model {who} fails on --data {data_spec} images of shape {tuple(probe.shape[1:])}: "
            f"{type(error).__name__}: {one_line(error, 200)} ({DEBUG_HINT})."
        ) from error
    if not isinstance(logits, Tensor) or logits.dim() != 2 or len(logits) != len(probe):
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise UsageError(f"--model {who} must return N x classes logits, got {shape} for {len(probe)} images.")
    source = f"--weights {weights}" if weights else f"--model {who}"
    if logits.shape[1] < 2:
        raise UsageError(
            f"--model {who} returns {logits.shape[1]} logit per image: a class pattern needs a classifier with one "
            "logit per class (at least two)."
        )
    if logits.is_floating_point() and not bool(torch.isfinite(logits).all()):
        raise UsageError(
            f"{source}: the model returns NaN or infinite logits on --data {data_spec} images, so it carries no "
            "class signal; check the weights (a diverged training run?) and that the data is what it was trained on."
        )
    if len(names) > logits.shape[1]:
        raise UsageError(
            f"--data {data_spec} has {len(names)} classes but --model {who} returns {logits.shape[1]} logits: the "
            f"labels {logits.shape[1]} and above are classes the model cannot have; give data of the model's classes."
        )
    count = min(len(names), logits.shape[1])
    chosen = list(range(count)) if classes is None else resolve_classes(classes, names, data_spec)
    outside = [c for c in chosen if not 0 <= c < count]
    if outside:
        raise UsageError(
            f"--classes {', '.join(map(str, outside))} out of range: --data {data_spec} with this model has classes "
            f"0 to {count - 1}."
        )
    if k is not None:
        try:
            pixel_budget(k, *search.images.shape[-2:])
        except (ValueError, TypeError) as error:
            raise UsageError(f"--k {k}: {one_line(error, 200)}") from error
    return chosen


def is_stream_spec(spec: str) -> bool:
    """Whether ``--data`` names an image folder to stream: not a built-in spec, and an existing folder or a path."""
    kind, _, path = spec.partition(":")
    if spec == "digits" or (kind in ("cifar10", "folder") and path):
        return False
    return os.path.isdir(spec) or os.sep in spec or spec.startswith((".", "~"))


def load_stream(spec: str, workers: int, batch: int, size: int = 224) -> Tuple[ImageStream, ImageStream, Sequence[str]]:
    """``(search, held_out, class_names)`` of an image folder ``DIR/<class>/<image>``, read lazily.

    The images are resized and centre-cropped to ``size`` as ``folder:PATH`` does; the folder
    is split into search and held-out halves by the same seeded shuffle, by position, so no
    image is read here.

    Args:
        spec: the ``--data`` argument, a folder.
        workers: DataLoader worker processes (``--workers``).
        batch: the most images per model call (``--max-batch``).
        size: side of the images.

    Raises:
        UsageError: the folder is missing, is a file, holds no class folder or images, or too
            few images to split.
    """
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    if not os.path.exists(spec):
        raise UsageError(f"--data {spec}: not found: no such folder (expected {spec}/<class name>/<image files>).")
    if not os.path.isdir(spec):
        raise UsageError(f"--data {spec} is a file: give a folder of class folders, {spec}/<class name>/<image files>.")
    tf = transforms.Compose([transforms.Resize(size), transforms.CenterCrop(size), transforms.ToTensor()])
    try:
        dataset = ImageFolder(spec, transform=tf, loader=read_image)
    except (OSError, ValueError) as error:  # no class folders, or class folders without images
        raise UsageError(f"--data {spec}: {one_line(error, 300)}") from error
    stream = ImageStream(dataset, batch_size=batch, num_workers=workers)
    order = torch.randperm(len(stream), generator=torch.Generator().manual_seed(0))
    cut = len(stream) // 2
    if cut == 0:
        raise UsageError(f"--data {spec}: too few images ({len(stream)}) to split into search and held-out images.")
    return stream.subset(order[:cut]), stream.subset(order[cut:]), tuple(dataset.classes)


def probe_split(stream: ImageStream, count: int = 2) -> Split:
    """The first ``count`` images of a stream, read in this process, for :func:`check_job`.

    Raises:
        UsageError: an image cannot be read or is not a tensor.
    """
    head = stream.subset(range(min(count, len(stream))))
    head.num_workers = 0
    try:
        images, labels = next(iter(head.loader(batch_sampler=[list(range(len(head)))])))
    except (OSError, TypeError, ValueError) as error:
        raise UsageError(f"--data: cannot read the first images ({one_line(error, 300)}).") from error
    return Split(images, labels)

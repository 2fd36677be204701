"""Loading a user's model and data for the subcommands, in one place."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Optional, Sequence, Tuple

import torch

from ..data import CIFAR10_CLASSES, DIGIT_CLASSES, Split, load_cifar10, load_digits, load_image_folder


def load_model(spec: str, weights: Optional[str], device: str) -> torch.nn.Module:
    """Build a model from ``module:factory`` and optionally load a state dict.

    Raises:
        ValueError: the spec is malformed or names nothing callable.
        FileNotFoundError: the weights file is missing.
    """
    if ":" not in spec:
        raise ValueError(f"--model must look like module:factory, got {spec!r}.")
    module_name, factory_name = spec.split(":", 1)
    sys.path.insert(0, os.getcwd())
    factory = getattr(importlib.import_module(module_name), factory_name, None)
    if not callable(factory):
        raise ValueError(f"{spec!r}: {module_name} has no callable {factory_name}.")
    model = factory()
    if weights:
        if not os.path.exists(weights):
            raise FileNotFoundError(f"weights file {weights} not found.")
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.to(device).eval()


def _halves(split: Split, seed: int) -> Tuple[Split, Split]:
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))
    cut = len(split) // 2
    first, second = order[:cut], order[cut:]
    return Split(split.images[first], split.labels[first]), Split(split.images[second], split.labels[second])


def load_data(spec: str, limit: int) -> Tuple[Split, Split, Sequence[str]]:
    """``(search, held_out, class_names)`` for ``digits``, ``cifar10:PATH`` or ``folder:PATH``.

    Raises:
        ValueError: an unknown data spec.
    """
    if spec == "digits":
        data = load_digits()
        return data.search, data.eval, DIGIT_CLASSES
    kind, _, path = spec.partition(":")
    if kind == "cifar10" and path:
        search, held_out = _halves(load_cifar10(path, train=False, limit=limit), 0)
        return search, held_out, CIFAR10_CLASSES
    if kind == "folder" and path:
        split, names = load_image_folder(path, limit=limit)
        search, held_out = _halves(split, 0)
        return search, held_out, names
    raise ValueError(f"--data must be digits, cifar10:PATH or folder:PATH, got {spec!r}.")

"""Models trained once and cached on disk by their settings, such as the demo's digits CNN."""

from __future__ import annotations

import hashlib
import io
import json
import os
from typing import Callable, Optional

import torch
from torch import nn

from .._utils import write_atomic
from ..data import load_digits
from ..models import SmallCNN
from ._options import TrainingOptions
from ._train import train_classifier


def default_cache_dir() -> str:
    """``$CLASSPATTERN_CACHE``, else ``~/.cache/captum_classpattern``."""
    return os.environ.get("CLASSPATTERN_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "captum_classpattern"
    )


def cached_model(
    name: str,
    settings: dict,
    build: Callable[[], nn.Module],
    train: Callable[[nn.Module], nn.Module],
    cache_dir: Optional[str] = None,
) -> nn.Module:
    """Load a trained model from the cache, or build, train and cache it.

    The cache key is a hash of ``settings``, so changing any setting retrains. The
    weights file is written atomically.
    """
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    path = os.path.join(cache_dir or default_cache_dir(), f"{name}-{key}.pt")
    model = build()
    if os.path.exists(path):
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return model.eval()
    model = train(model)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    write_atomic(path, buffer.getvalue())
    return model.eval()


def digits_model(
    epochs: int = 12, seed: int = 0, size: int = 32, cache_dir: Optional[str] = None, show_progress: bool = False
) -> nn.Module:
    """The demo's SmallCNN trained on the digits' training split, cached by its settings."""
    settings = {"model": "SmallCNN", "width": 16, "epochs": epochs, "seed": seed, "size": size, "lr": 2e-3, "v": 1}

    def build() -> nn.Module:
        torch.manual_seed(seed)
        return SmallCNN(1, 10, 16)

    def train(model: nn.Module) -> nn.Module:
        data = load_digits(size=size)
        return train_classifier(
            model,
            data.train.images,
            data.train.labels,
            TrainingOptions(epochs=epochs),
            seed=seed,
            show_progress=show_progress,
            description="training the digits CNN",
        )

    return cached_model("digits_cnn", settings, build, train, cache_dir)

"""Shared fixtures: tiny seeded models and data so the suite stays fast."""

from __future__ import annotations

import os

# OpenMP reads this once, when torch loads it below: threads that wait for work sleep instead
# of spinning. Only the digits CNN below trains with two threads; on a loaded 2-core box their
# spinning took 13-47 s of CPU instead of 3 s (same weights either way).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest
import torch
import torch.nn.functional as F

from captum_classpattern import load_digits
from captum_classpattern.data import Split
from captum_classpattern.models import SmallCNN
from captum_classpattern.training import train_classifier

# One torch thread for the whole suite: its models are tiny, and two OpenMP threads made them
# slower, not faster (spinning, they cost about 5x the CPU time: 16 s instead of 3 s to train
# the session's digits CNN; 5-40x the wall time on a loaded 2-core box). The examples'
# processes run with OMP_NUM_THREADS=1 too.
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module, whatever the suite's default: with 2 threads on a loaded
    2-core box the tiny models ran 20-40x slower (OpenMP oversubscription). Use with
    ``pytest.mark.usefixtures``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def digits16():
    """The bundled digits at 16 x 16 pixels (train / search / eval splits)."""
    return load_digits(size=16)


@pytest.fixture(scope="session")
def trained_digits_model(digits16):
    """A tiny SmallCNN trained for a few seconds on 16 x 16 digits, in eval mode.

    Trained with two threads whatever the suite's setting, as the whole suite trained it before:
    other thread counts round differently and give slightly different weights, and the
    weights (and every number measured on them) must not depend on which test asks first.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.manual_seed(0)
        model = SmallCNN(in_channels=1, num_classes=10, width=8)
        return train_classifier(model, digits16.train.images, digits16.train.labels, epochs=6, seed=0)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def linear_model():
    """A seeded linear classifier on 1 x 4 x 4 images: gradients can be checked by hand."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))


@pytest.fixture
def toy_split():
    """Twelve random 1 x 4 x 4 images, four of each of three classes."""
    generator = torch.Generator().manual_seed(1)
    return Split(torch.rand(12, 1, 4, 4, generator=generator), torch.arange(12) % 3)


def resize(images, size):
    """Bilinear resize helper for tests."""
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)

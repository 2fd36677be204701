"""Photo digits: handwritten digits over crops of scikit-image's bundled photographs, built offline."""

import socket

import numpy as np
import pytest
import torch

import captum_classpattern
from captum_classpattern.data import PHOTOS, _photo_digits, load_digits, load_photo_digits
from captum_classpattern.models import SpatialCNN
from captum_classpattern.training import accuracy, train_classifier


@pytest.fixture(scope="module")
def data():
    return load_photo_digits(size=16, copies=2)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_shape_dtype_range_and_sizes(data):
    digits = load_digits(size=16)
    assert len(data.train) == 2 * len(digits.train)
    assert len(data.search) == len(digits.search) and len(data.eval) == len(digits.eval)
    for split in (data.train, data.search, data.eval):
        assert split.images.shape[1:] == (3, 16, 16) and split.images.dtype == torch.float32
        assert split.labels.dtype == torch.long and len(split.labels) == len(split.images)
        assert float(split.images.min()) >= 0 and float(split.images.max()) <= 1
    assert data.classes == tuple(str(d) for d in range(10))
    assert captum_classpattern.load_photo_digits is load_photo_digits


def test_same_seed_same_images_other_seed_other_images(data):
    again = load_photo_digits(size=16, copies=2)
    assert torch.equal(data.train.images, again.train.images) and torch.equal(data.eval.labels, again.eval.labels)
    other = load_photo_digits(size=16, seed=1, copies=2)
    assert not torch.equal(data.search.images, other.search.images)


def test_classes_are_balanced_in_every_split(data):
    for split in (data.train, data.search, data.eval):
        counts = torch.bincount(split.labels, minlength=10).float()
        assert counts.min() > 0 and counts.max() / counts.min() < 1.1


def test_no_handwritten_digit_is_in_two_splits(monkeypatch):
    # Over black crops the composite is the digit itself: each split holds its own digits.
    monkeypatch.setattr(_photo_digits, "photo_crops", lambda count, size, rng: torch.zeros(count, 3, size, size))
    data, digits = load_photo_digits(size=16, copies=2), load_digits(size=16)
    for photo_split, digit_split in zip(
        (data.train, data.search, data.eval), (digits.train, digits.search, digits.eval)
    ):
        copies = len(photo_split) // len(digit_split)
        assert torch.equal(photo_split.images, digit_split.images.expand(-1, 3, -1, -1).repeat(copies, 1, 1, 1))
        assert torch.equal(photo_split.labels, digit_split.labels.repeat(copies))
    strokes = [{tuple(img.flatten().tolist()) for img in s.images} for s in (digits.train, digits.search, digits.eval)]
    assert not strokes[0] & strokes[1] and not strokes[0] & strokes[2] and not strokes[1] & strokes[2]


def test_backgrounds_vary_in_colour_and_texture(data):
    images = data.train.images[:200]
    colour = images.mean(dim=(2, 3))  # per-image mean of each channel
    assert float(colour.std(dim=0).min()) > 0.05, "mean colours should differ between images"
    assert float((colour.max(dim=1).values - colour.min(dim=1).values).mean()) > 0.03, "channels should differ"
    corners = images[:, :, :3, :3].flatten(1)  # digits rarely reach the corner: the photo shows there
    assert float(corners.std(dim=0).mean()) > 0.1


def test_no_network_is_used(monkeypatch):
    _photo_digits._photos.cache_clear()

    def refuse(*args, **kwargs):
        raise AssertionError("load_photo_digits tried to open a network connection")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    data = load_photo_digits(size=8, copies=1)
    assert len(data.train) > 0 and len(_photo_digits._photos()) == len(PHOTOS)


def test_a_tiny_model_learns_it_above_chance(data):
    torch.manual_seed(0)
    model = SpatialCNN(16, in_channels=3, num_classes=10, width=4)
    train_classifier(model, data.train.images[:800], data.train.labels[:800], epochs=2, lr=5e-3, seed=0)
    assert accuracy(model, data.eval.images, data.eval.labels) > 0.3


def test_crops_are_drawn_from_the_generator():
    a = _photo_digits.photo_crops(5, 12, np.random.default_rng(3))
    b = _photo_digits.photo_crops(5, 12, np.random.default_rng(3))
    assert a.shape == (5, 3, 12, 12) and torch.equal(a, b)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"size": 4}, "at least 8"),
        ({"size": 0}, "size"),
        ({"copies": 0}, "copies"),
        ({"copies": 1.5}, "copies"),
        ({"held_out_copies": -1}, "held_out_copies"),
        ({"seed": -1}, "seed"),
        ({"fractions": (0.7, 0.4)}, "fractions"),
        ({"fractions": (0.5,)}, "fractions"),
        ({"fractions": 0.5}, "fractions"),
    ],
)
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_photo_digits(**kwargs)

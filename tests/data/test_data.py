"""Data loading without internet: digits, CIFAR-10 and image folders written by the test."""

import pickle

import numpy as np
import pytest
import torch

from captum_classpattern import load_digits
from captum_classpattern.data import load_cifar10, load_image_folder


def test_digits_split_is_fixed_stratified_and_disjoint():
    a, b = load_digits(size=16), load_digits(size=16)
    assert torch.equal(a.search.images, b.search.images)
    total = len(a.train) + len(a.search) + len(a.eval)
    assert total == 1797
    assert a.train.images.shape[1:] == (1, 16, 16)
    assert float(a.train.images.min()) >= 0 and float(a.train.images.max()) <= 1
    for split in (a.train, a.search, a.eval):
        assert set(split.labels.tolist()) == set(range(10))


def _write_cifar(root, count=6):
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, size=(count, 3072), dtype=np.uint8)
    with open(folder / "test_batch", "wb") as stream:
        pickle.dump({"batch_label": "testing batch 1 of 1", "data": data, "labels": list(range(count))}, stream)
    with open(folder / "batches.meta", "wb") as stream:
        pickle.dump({"label_names": [str(i) for i in range(10)]}, stream)
    return data


def test_cifar10_reads_torchvision_format(tmp_path):
    data = _write_cifar(tmp_path)
    split = load_cifar10(str(tmp_path), limit=4)
    assert split.images.shape == (4, 3, 32, 32)
    expected = torch.tensor(data[0].reshape(3, 32, 32), dtype=torch.float) / 255
    torch.testing.assert_close(split.images[0], expected)
    assert split.labels.tolist() == [0, 1, 2, 3]


def test_cifar10_missing_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        load_cifar10(str(tmp_path))


def test_image_folder(tmp_path):
    from PIL import Image

    for name, colour in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
        (tmp_path / name).mkdir()
        Image.new("RGB", (20, 12), colour).save(tmp_path / name / "a.png")
    split, classes = load_image_folder(str(tmp_path), size=8)
    assert classes == ("cat", "dog")
    assert split.images.shape == (2, 3, 8, 8) and split.labels.tolist() == [0, 1]
    assert float(split.images[0, 0].mean()) == pytest.approx(1.0)
    with pytest.raises(FileNotFoundError):
        load_image_folder(str(tmp_path / "missing"))

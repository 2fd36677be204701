"""Class-balanced limits and image sizes for CIFAR-10 copies and image folders written by the test."""

import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from captum_classpattern.cli._loaders import load_data
from captum_classpattern.data import CIFAR10_CLASSES, balanced_indices, cifar10_layout, load_cifar10, load_image_folder


def _write_folder(root, counts, size=(12, 10)):
    """A class folder per entry of ``counts`` (name -> images), each image a flat colour coding its class."""
    for label, (name, count) in enumerate(counts.items()):
        os.makedirs(root / name, exist_ok=True)
        for index in range(count):
            colour = (label * 20, index * 5 % 256, 200)
            Image.new("RGB", size, colour).save(root / name / f"{index:04d}.png")


def test_balanced_indices_spreads_the_limit_over_classes_in_order():
    labels = [0] * 5 + [1] * 5 + [2] * 1
    # 7 = 3 classes x 2 + 1: classes 0 gets the remainder, class 2 gives all it has (1).
    kept = balanced_indices(labels, 7)
    assert [labels[i] for i in kept].count(0) == 3
    assert [labels[i] for i in kept].count(1) == 2
    assert [labels[i] for i in kept].count(2) == 1
    assert kept == sorted(kept) and kept[:3] == [0, 1, 2]  # the first of each class, in order
    assert balanced_indices(labels, None) == list(range(11))
    with pytest.raises(ValueError, match="limit must be a positive int"):
        balanced_indices(labels, 0)


def test_image_folder_limit_takes_every_class_and_size_is_honoured(tmp_path):
    _write_folder(tmp_path, {"a": 6, "b": 6, "c": 6})
    split, names = load_image_folder(str(tmp_path), size=8, limit=6)
    assert names == ("a", "b", "c")
    assert torch.bincount(split.labels).tolist() == [2, 2, 2]
    assert split.images.shape == (6, 3, 8, 8)
    # The first two images of class b are kept (their green channel codes the index 0 and 1).
    greens = split.images[split.labels == 1][:, 1, 4, 4] * 255
    assert torch.allclose(greens, torch.tensor([0.0, 5.0]), atol=1.0)


def test_cli_data_passes_limit_and_size_to_a_folder(tmp_path):
    _write_folder(tmp_path, {"x": 8, "y": 8})
    search, held_out, names = load_data(f"folder:{tmp_path}", limit=8, size=16)
    assert tuple(names) == ("x", "y")
    both = torch.cat([search.labels, held_out.labels])
    assert torch.bincount(both).tolist() == [4, 4]
    assert search.images.shape[-2:] == (16, 16)


def _write_cifar_folders(root, per_class=3):
    for part in ("train", "test"):
        _write_folder(root / "cifar10" / part, {name: per_class for name in CIFAR10_CLASSES}, size=(32, 32))


def test_cifar10_image_folder_copy_is_read_balanced_and_resized(tmp_path):
    _write_cifar_folders(tmp_path)
    assert cifar10_layout(str(tmp_path)) == ("folders", str(tmp_path / "cifar10"))
    test = load_cifar10(str(tmp_path), limit=10)
    assert torch.bincount(test.labels).tolist() == [1] * 10
    assert test.images.shape == (10, 3, 32, 32)
    # Label 3 is "cat", whose folder's images have red 3 * 20.
    assert float(test.images[test.labels == 3][0, 0, 0, 0]) * 255 == pytest.approx(60, abs=1)
    train = load_cifar10(str(tmp_path / "cifar10"), train=True, size=16)
    assert train.images.shape == (30, 3, 16, 16)


def test_cifar10_folder_copy_with_other_classes_is_refused(tmp_path):
    _write_folder(tmp_path / "test", {"cats": 1, "dogs": 1})
    with pytest.raises(FileNotFoundError, match="ten CIFAR-10 class folders"):
        load_cifar10(str(tmp_path))


def test_cifar10_batches_limit_is_class_balanced(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    labels = sorted(list(range(10)) * 4)  # ordered by class, as a folder copy would be
    data = np.arange(40 * 3072, dtype=np.int64).reshape(40, 3072) % 256
    with open(folder / "test_batch", "wb") as stream:
        pickle.dump({"data": data.astype(np.uint8), "labels": labels}, stream)
    split = load_cifar10(str(tmp_path), limit=20)
    assert torch.bincount(split.labels).tolist() == [2] * 10
    assert load_cifar10(str(tmp_path), size=8).images.shape == (40, 3, 8, 8)


def test_missing_cifar10_names_both_layouts(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py.*test/<class>"):
        load_cifar10(str(tmp_path))


@pytest.mark.slow
def test_real_cifar10_when_given():
    """Reads the user's CIFAR-10 (``$CLASSPATTERN_CIFAR10``); skipped without it."""
    root = os.environ.get("CLASSPATTERN_CIFAR10")
    if not root or not os.path.isdir(root):
        pytest.skip("set CLASSPATTERN_CIFAR10 to a CIFAR-10 copy to run this test")
    test = load_cifar10(root, limit=200)
    assert torch.bincount(test.labels, minlength=10).tolist() == [20] * 10
    assert test.images.shape[1:] == (3, 32, 32)
    assert 0.0 <= float(test.images.min()) and float(test.images.max()) <= 1.0

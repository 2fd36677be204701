"""CIFAR-10 batches are read with a restricted unpickler: loading data must never run code."""

import os
import pickle

import numpy as np
import pytest
import torch

from captum_classpattern.cli import main
from captum_classpattern.data import load_cifar10

MARKER = "pwned.txt"


class Exploit:
    """Pickles to a call of os.system that writes a marker file: what a tampered batch could hold."""

    def __init__(self, folder):
        self.folder = folder

    def __reduce__(self):
        return (os.system, (f"echo pwned > {os.path.join(self.folder, MARKER)}",))


def _batch(count=4, **extra):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, size=(count, 3072), dtype=np.uint8)
    return {"batch_label": "testing batch 1 of 1", "data": data, "labels": list(range(count)), **extra}


def _write(root, entry, protocol=pickle.HIGHEST_PROTOCOL):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(exist_ok=True)
    with open(folder / "test_batch", "wb") as stream:
        pickle.dump(entry, stream, protocol=protocol)
    return folder / "test_batch"


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL], ids=["protocol 2 (Python 2's)", "newest"])
def test_a_genuine_batch_is_read_in_either_protocol(tmp_path, protocol):
    entry = _batch()
    _write(tmp_path, entry, protocol)
    split = load_cifar10(str(tmp_path))
    expected = torch.from_numpy(entry["data"].reshape(-1, 3, 32, 32)).float() / 255
    assert torch.equal(split.images, expected)
    assert split.labels.tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("where", ["top level", "inside the dict", "in the labels list"])
def test_a_malicious_batch_is_refused_before_anything_runs(tmp_path, where):
    exploit = Exploit(str(tmp_path))
    entry = _batch(payload=exploit)
    if where == "top level":
        entry = exploit
    elif where == "in the labels list":
        entry = _batch()
        entry["labels"] = [exploit, 1, 2, 3]
    path = _write(tmp_path, entry)
    with pytest.raises(pickle.UnpicklingError, match=r"is not a CIFAR-10 batch: its pickle refers to \S*system"):
        load_cifar10(str(tmp_path))
    assert not (tmp_path / MARKER).exists(), "the pickle ran code"
    assert str(path) in str(pytest.raises(pickle.UnpicklingError, load_cifar10, str(tmp_path)).value)


def test_other_objects_and_damaged_files_are_clear_errors(tmp_path):
    _write(
        tmp_path,
        {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1], "when": __import__("datetime").date(2020, 1, 1)},
    )
    with pytest.raises(pickle.UnpicklingError, match="refers to datetime.date"):
        load_cifar10(str(tmp_path))
    _write(tmp_path, {"data": np.zeros((2, 10), np.uint8), "labels": [0, 1]})
    with pytest.raises(ValueError, match="is not a CIFAR-10 batch: expected a dict with 'data'"):
        load_cifar10(str(tmp_path))
    path = _write(tmp_path, _batch())
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="is not a readable CIFAR-10 batch.*damaged"):
        load_cifar10(str(tmp_path))


def test_the_command_line_reports_a_malicious_batch_in_one_line(tmp_path, capsys):
    _write(tmp_path, _batch(payload=Exploit(str(tmp_path))))
    out = tmp_path / "out"
    code = main(
        [
            "search",
            "--model",
            "captum_classpattern.models:SmallCNN",
            "--data",
            f"cifar10:{tmp_path}",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "is not a CIFAR-10 batch" in err and "could run code" in err
    assert not (tmp_path / MARKER).exists() and not out.exists()

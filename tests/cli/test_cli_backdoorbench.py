"""``--model attack_result.pt``: a BackdoorBench result file taken by the command line as it is."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

from captum_classpattern.backdoor import BACKDOORBENCH_NORMALIZATION
from captum_classpattern.cli import _search as cli_search
from captum_classpattern.cli import main
from captum_classpattern.cli._loaders import load_model
from captum_classpattern.models import PreActResNet18

SIDE = 8


def _net(seed):
    torch.manual_seed(seed)
    return PreActResNet18(num_classes=10, width=64).eval()


def _result_file(path, net, **changes):
    """A minimal attack_result.pt in BackdoorBench's layout (no data records: bd_train/bd_test None)."""
    content = {
        "model_name": "preactresnet18",
        "num_classes": 10,
        "model": {f"module.{k}": v for k, v in net.state_dict().items()},
        "data_path": "./data/cifar10",
        "img_size": [32, 32, 3],
        "clean_data": "cifar10",
        "bd_train": None,
        "bd_test": None,
        **changes,
    }
    torch.save(content, path)
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Two result files (two seeds) and an image folder of 3-channel 8 x 8 PNGs in two classes."""
    root = tmp_path_factory.mktemp("bbcli")
    nets = [_net(0), _net(1)]
    paths = [_result_file(root / f"attack_result_{i}.pt", net) for i, net in enumerate(nets)]
    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (root / "images" / label).mkdir(parents=True)
        for index in range(4):
            pixels = rng.integers(0, 256, size=(SIDE, SIDE, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "images" / label / f"{index}.png")
    return root, paths, nets


def _normalised(images):
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in BACKDOORBENCH_NORMALIZATION["cifar10"])
    return (images - mean) / std


def test_search_takes_the_file_as_its_model(files, tmp_path, monkeypatch, capsys):
    root, paths, nets = files
    kept = {}
    monkeypatch.setattr(cli_search, "run_search", lambda model, *a, **k: kept.update(model=model) or 0)
    argv = ["search", "--model", paths[0], "--data", f"folder:{root / 'images'}", "--image-size", str(SIDE)]
    assert main(argv + ["--out", str(tmp_path / "out"), "--no-progress"]) == 0, capsys.readouterr().err
    images = torch.rand(3, 3, SIDE, SIDE)
    with torch.no_grad():
        assert torch.allclose(kept["model"](images), nets[0](_normalised(images)), atol=1e-5)


def test_weights_of_a_second_result_file_replace_the_first(files):
    _, paths, nets = files
    model = load_model(paths[0], paths[1], torch.device("cpu"))
    images = torch.rand(2, 3, SIDE, SIDE)
    with torch.no_grad():
        assert torch.allclose(model(images), nets[1](_normalised(images)), atol=1e-5)


def _one_line(code, err, pattern):
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert re.search(pattern, lines[0]), lines[0]


@pytest.mark.parametrize("command", ["search", "scan"])
def test_an_unsupported_architecture_is_one_line_naming_the_supported(command, files, tmp_path, capsys):
    path = _result_file(tmp_path / "vit.pt", _net(0), model_name="vit_b_16")
    code = main([command, "--model", path, "--out", str(tmp_path / "out"), "--no-progress"])
    _one_line(code, capsys.readouterr().err, r"model_name 'vit_b_16' is not supported; supported .*preactresnet18")


def test_a_missing_file_and_foreign_weights_are_one_line(files, tmp_path, capsys):
    _, paths, nets = files
    code = main(["search", "--model", str(tmp_path / "attack_result.pt"), "--out", str(tmp_path / "o")])
    _one_line(code, capsys.readouterr().err, r"attack_result.pt: no such file")
    torch.save(nets[0].state_dict(), tmp_path / "plain.pt")
    argv = ["search", "--model", paths[0], "--weights", str(tmp_path / "plain.pt"), "--out", str(tmp_path / "o")]
    _one_line(main(argv), capsys.readouterr().err, r"must be another BackdoorBench result file .* lacks 'model_name'")
    code = main(["search", "--model", str(tmp_path / "plain.pt"), "--out", str(tmp_path / "o")])
    _one_line(code, capsys.readouterr().err, r"lacks 'model_name'.*give --model module:factory --weights FILE")

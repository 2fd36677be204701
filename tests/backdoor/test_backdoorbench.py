"""Loading BackdoorBench's attack_result.pt: a file written here in its format, read back as a [0, 1] model."""

from __future__ import annotations

import fractions

import numpy as np
import pytest
import torch
from PIL import Image

from captum_classpattern import ClassPattern, SearchSchedule
from captum_classpattern.backdoor import (
    BACKDOORBENCH_MODELS,
    BACKDOORBENCH_NORMALIZATION,
    BackdoorBenchRecord,
    load_backdoorbench,
)
from captum_classpattern.models import PreActResNet18

SIDE = 8  # PreAct-ResNet-18 pools adaptively, so tiny images keep the test fast


def _reference(seed: int = 0, classes: int = 10) -> torch.nn.Module:
    """A PreAct-ResNet-18 as BackdoorBench's (width 64), with non-trivial batch-norm statistics."""
    torch.manual_seed(seed)
    net = PreActResNet18(num_classes=classes, width=64)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return net.eval()


def _bd_test(images, bd_labels, true_labels, indices):
    """The state BackdoorBench's prepro_cls_DatasetBD_v2.retrieve_state() returns, images kept in memory."""
    data = {int(i): (Image.fromarray(img), b, t) for i, img, b, t in zip(indices, images, bd_labels, true_labels)}
    return {
        "bd_data_container": {"save_folder_path": None, "data_dict": data, "save_file_format": ".png"},
        "getitem_all": True,
        "getitem_all_switch": False,
        "original_index_array": np.asarray(indices),
        "poison_indicator": np.isin(np.arange(20), indices).astype(np.float64),
        "save_folder_path": None,
    }


def _bd_train(poisoned, total):
    indicator = np.zeros(total)
    indicator[:poisoned] = 1
    return {
        "bd_data_container": {"save_folder_path": None, "data_dict": {}, "save_file_format": ".png"},
        "getitem_all": True,
        "getitem_all_switch": False,
        "original_index_array": np.arange(total),
        "poison_indicator": indicator,
        "save_folder_path": None,
    }


@pytest.fixture(scope="module")
def pixels():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(3, SIDE, SIDE, 3), dtype=np.uint8)


def _attack_result(state, pixels, **changes):
    """The dict BackdoorBench's save_attack_result writes (bd labels: target 0; numpy scalars as it keeps them)."""
    content = {
        "model_name": "preactresnet18",
        "num_classes": 10,
        "model": state,
        "data_path": "./data/cifar10",
        "img_size": [SIDE, SIDE, 3],
        "clean_data": "cifar10",
        "bd_train": _bd_train(5, 50),
        "bd_test": _bd_test(pixels, [0, 0, 0], [np.int64(3), np.int64(5), np.int64(7)], [2, 9, 4]),
    }
    content.update(changes)
    return content


@pytest.fixture(scope="module")
def written(tmp_path_factory, pixels):
    """An attack_result.pt whose state dict carries DataParallel's ``module.`` prefix, and its reference net."""
    net = _reference()
    state = {f"module.{key}": value for key, value in net.state_dict().items()}
    path = tmp_path_factory.mktemp("bb") / "attack_result.pt"
    torch.save(_attack_result(state, pixels), path)
    return path, net


def test_the_model_is_the_reference_on_normalised_input(written):
    path, reference = written
    model, record = load_backdoorbench(path)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in BACKDOORBENCH_NORMALIZATION["cifar10"])
    images = torch.rand(4, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(model(images), reference((images - mean) / std), atol=1e-5)
    assert not model.training
    assert isinstance(record, BackdoorBenchRecord)
    assert (record.model_name, record.num_classes, record.dataset) == ("preactresnet18", 10, "cifar10")
    assert record.image_size == (3, SIDE, SIDE)


def test_the_record_holds_the_backdoor_test_set(written, pixels):
    _, record = load_backdoorbench(written[0])
    test = record.backdoor_test
    assert test is not None and test.images.shape == (3, 3, SIDE, SIDE)
    # ordered by BackdoorBench's sample index (2, 4, 9), pixels scaled to [0, 1]
    expected = torch.from_numpy(pixels[[0, 2, 1]]).permute(0, 3, 1, 2).float() / 255
    assert torch.allclose(test.images, expected)
    assert test.labels.tolist() == [0, 0, 0] and record.target == 0
    assert record.original_labels.tolist() == [3, 7, 5]
    assert record.poison_rate == pytest.approx(0.1)
    assert load_backdoorbench(written[0], backdoor_test=False)[1].backdoor_test is None


def test_the_loaded_model_goes_into_class_pattern_unchanged(written):
    model, _ = load_backdoorbench(written[0])
    images = torch.rand(6, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(2))
    labels = torch.tensor([0, 1, 2, 3, 4, 5])
    schedule = SearchSchedule(steps=2, batch_size=2)
    maps = ClassPattern(model).attribute(
        images[:1], target=1, baselines=images, baseline_labels=labels, schedule=schedule
    )
    assert maps.shape == (1, 3, SIDE, SIDE) and bool(torch.isfinite(maps).all())


def test_a_defense_result_loads_given_the_data_set(tmp_path):
    net = _reference(1, classes=43)
    torch.save({"model_name": "preactresnet18", "num_classes": 43, "model": net.state_dict()}, tmp_path / "d.pt")
    with pytest.raises(ValueError, match=r"names no data set .* pass dataset="):
        load_backdoorbench(tmp_path / "d.pt")
    model, record = load_backdoorbench(tmp_path / "d.pt", dataset="gtsrb")
    images = torch.rand(2, 3, SIDE, SIDE)
    with torch.no_grad():  # GTSRB is not normalised in BackdoorBench
        assert torch.allclose(model(images), net(images), atol=1e-5)
    assert record.backdoor_test is None and record.target is None and record.image_size == (3, 32, 32)


def _save(path, content):
    torch.save(content, path)
    return path


def test_an_unknown_architecture_names_the_supported_ones(tmp_path, pixels):
    path = _save(tmp_path / "a.pt", _attack_result({"w": torch.zeros(1)}, pixels, model_name="vit_b_16"))
    with pytest.raises(ValueError, match=r"model_name 'vit_b_16' is not supported; supported .*preactresnet18"):
        load_backdoorbench(path)
    assert "preactresnet18" in BACKDOORBENCH_MODELS


def test_weights_of_another_width_are_refused_clearly(tmp_path, pixels):
    state = PreActResNet18(num_classes=10, width=16).state_dict()
    path = _save(tmp_path / "a.pt", _attack_result(state, pixels))
    with pytest.raises(ValueError, match=r"do not fit BackdoorBench's preactresnet18 with 10 classes \(other shape"):
        load_backdoorbench(path)


@pytest.mark.parametrize(
    "content, message",
    [
        ({"state_dict": {"w": torch.zeros(1)}}, r"not a BackdoorBench result file: it lacks 'model_name'"),
        ([1, 2], r"holds a list, not the dict"),
    ],
)
def test_other_files_are_refused_clearly(tmp_path, content, message):
    with pytest.raises(ValueError, match=message):
        load_backdoorbench(_save(tmp_path / "a.pt", content))


def test_unknown_data_set_and_missing_file(tmp_path, written):
    with pytest.raises(ValueError, match=r"no known normalisation for data set 'svhn'; pass dataset= one of cifar10"):
        load_backdoorbench(written[0], dataset="svhn")
    with pytest.raises(FileNotFoundError, match=r"no such file"):
        load_backdoorbench(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match=r"not a readable BackdoorBench result file"):
        load_backdoorbench(tmp_path / "junk.pt")


def test_a_file_naming_other_objects_is_refused_unread(tmp_path, pixels):
    # Fraction is harmless, but no BackdoorBench record holds it: anything outside the
    # arrays and images of its data records is refused before the pickle is run.
    content = _attack_result(_reference().state_dict(), pixels, extra=fractions.Fraction(1, 3))
    with pytest.raises(ValueError, match=r"refers to fractions.Fraction.*could run code"):
        load_backdoorbench(_save(tmp_path / "a.pt", content))


@pytest.mark.slow
@pytest.mark.parametrize("name", [name for name in BACKDOORBENCH_MODELS if name != "preactresnet18"])
def test_each_torchvision_architecture_takes_its_own_weights(name, tmp_path, pixels):
    import torchvision

    net = getattr(torchvision.models, name)(weights=None, num_classes=10).eval()
    path = _save(tmp_path / "a.pt", _attack_result(net.state_dict(), pixels, model_name=name, img_size=[32, 32, 3]))
    model, _ = load_backdoorbench(path, backdoor_test=False)
    loaded = model[1].state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in net.state_dict().items())

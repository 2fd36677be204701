"""Housekeeping behaviour: atomic writes and what training leaves behind."""

import os
import stat

import pytest
import torch

from captum_classpattern._utils import write_atomic, write_json_atomic
from captum_classpattern.models import SpatialCNN
from captum_classpattern.training import train_classifier


def test_atomic_write_has_ordinary_permissions_and_leaves_no_temp(tmp_path):
    umask = os.umask(0o022)
    try:
        path = tmp_path / "sub" / "report.json"
        write_json_atomic(path, {"a": 1})
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        write_atomic(path, "replaced\n")
        assert path.read_text() == "replaced\n"
        assert sorted(p.name for p in path.parent.iterdir()) == ["report.json"]
    finally:
        os.umask(umask)


def test_training_leaves_no_gradients_and_eval_mode():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    images = torch.rand(24, 1, 4, 4)
    labels = torch.arange(24) % 3
    train_classifier(model, images, labels, epochs=2, batch_size=8, seed=0)
    assert all(p.grad is None for p in model.parameters())
    assert not model.training


@pytest.mark.parametrize("bad", [0, 18, 16.0])
def test_spatial_cnn_refuses_sizes_it_cannot_pool(bad):
    with pytest.raises(ValueError, match="multiple of 4"):
        SpatialCNN(bad)


def test_spatial_cnn_refuses_images_of_another_size():
    model = SpatialCNN(16).eval()
    assert model(torch.rand(2, 1, 16, 16)).shape == (2, 10)
    with pytest.raises(ValueError, match="image_size"):
        model(torch.rand(2, 1, 32, 32))

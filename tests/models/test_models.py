"""Architectures: shapes and clear errors."""

import pytest
import torch

from captum_classpattern.models import cifar_resnet


def test_cifar_resnet_has_a_3x3_stem():
    model = cifar_resnet(18)
    assert model.conv1.kernel_size == (3, 3) and model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError):
        cifar_resnet(20)

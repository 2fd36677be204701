"""The model factory: every architecture by name, its output shape, size and errors."""

import pytest
import torch

from captum_classpattern.models import (
    ARCHITECTURES,
    DEFAULT_WIDTHS,
    SmallCNN,
    SmallVGG,
    SpatialCNN,
    cifar_resnet,
    make_model,
)

# Parameters of each architecture at the default widths (3 channels, 10 classes, 32 x 32).
PARAMETERS = {"spatial": (3e4, 2e5), "gap": (1e4, 1e5), "vgg": (5e4, 5e5), "resnet18": (3e5, 2e6)}


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_each_architecture_classifies_a_batch(arch):
    torch.manual_seed(0)
    model = make_model(arch)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    count = sum(p.numel() for p in model.parameters())
    low, high = PARAMETERS[arch]
    assert low < count < high, f"{arch} has {count} parameters"


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_channels_classes_size_and_width_are_passed_on(arch):
    narrow, wide = make_model(arch, width=4, image_size=16, in_channels=1), make_model(arch, width=8)
    assert narrow(torch.rand(3, 1, 16, 16)).shape == (3, 10)
    assert make_model(arch, num_classes=4, in_channels=1, image_size=16)(torch.rand(1, 1, 16, 16)).shape == (1, 4)
    assert sum(p.numel() for p in narrow.parameters()) < sum(p.numel() for p in wide.parameters())


def test_the_names_build_the_expected_classes():
    assert isinstance(make_model("spatial"), SpatialCNN) and isinstance(make_model("gap"), SmallCNN)
    assert isinstance(make_model("vgg"), SmallVGG)
    assert type(make_model("resnet18")) is type(cifar_resnet(18))
    assert set(DEFAULT_WIDTHS) == set(ARCHITECTURES)


def test_same_seed_same_weights():
    torch.manual_seed(1)
    a = make_model("vgg")
    torch.manual_seed(1)
    b = make_model("vgg")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_narrow_resnet_scales_every_stage():
    model = cifar_resnet(18, width=8, in_channels=1)
    assert model.conv1.out_channels == 8 and model.layer4[0].conv1.out_channels == 64 and model.fc.in_features == 64
    assert model(torch.rand(2, 1, 32, 32)).shape == (2, 10)
    assert cifar_resnet(18).conv1.out_channels == 64  # the default is torchvision's width
    with pytest.raises(ValueError, match="width"):
        cifar_resnet(18, width=0)


def test_unknown_names_and_bad_counts_are_refused():
    with pytest.raises(ValueError, match="'spatial', 'gap', 'vgg', 'resnet18'"):
        make_model("resnet50")
    for kwargs in ({"num_classes": 0}, {"in_channels": -1}, {"width": 0}, {"image_size": 2.5}):
        with pytest.raises(ValueError):
            make_model("gap", **kwargs)
    with pytest.raises(ValueError, match="multiple of 4"):
        make_model("spatial", image_size=30)

"""Models that need no download: small CNNs for the digits and CIFAR-style ResNets, all with random weights."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Tuple

from torch import Tensor, nn

from .._utils import check_positive_int


def _conv_blocks(in_channels: int, width: int) -> Tuple[nn.Sequential, int]:
    """Three 3x3 conv-BN-ReLU blocks, max-pooling after the first two; returns (blocks, channels)."""
    layers = []
    channels = in_channels
    for i in range(3):
        out = width * 2**i
        layers += [nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
        if i < 2:
            layers.append(nn.MaxPool2d(2))
        channels = out
    return nn.Sequential(*layers), channels


class SmallCNN(nn.Module):
    """Three conv blocks, global average pooling and a linear head: trains on the digits in seconds.

    The pooling makes the head blind to *where* a feature is, so a backdoor trigger is
    learned as "this kind of blob anywhere near there" rather than at one position; see
    :class:`SpatialCNN` for a head that sees positions.

    Args:
        in_channels: image channels.
        num_classes: output classes.
        width: channels of the first block (doubled in each later block).

    Example:
        >>> import torch
        >>> from captum_classpattern.models import SmallCNN
        >>> SmallCNN(in_channels=1, num_classes=10)(torch.zeros(2, 1, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.features, channels = _conv_blocks(in_channels, width)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))


class SpatialCNN(nn.Module):
    """The conv blocks of :class:`SmallCNN` with a linear head on the flattened feature map.

    The head sees every position, as in the MNIST models of the BadNets and Neural Cleanse
    papers, so a trigger is tied to where it was stamped, and fewer classes have "natural
    backdoors" (a handful of pixels that flip most images to the class) than with the global
    pooling of :class:`SmallCNN`. The model is built for one image size.

    Args:
        image_size: side of the square input images (a multiple of 4).
        in_channels: image channels.
        num_classes: output classes.
        width: channels of the first block (doubled in each later block).

    Raises:
        ValueError: ``image_size`` not a positive multiple of 4; in ``forward``, images of
            another size.

    Example:
        >>> import torch
        >>> from captum_classpattern.models import SpatialCNN
        >>> SpatialCNN(16)(torch.zeros(2, 1, 16, 16)).shape
        torch.Size([2, 10])
    """

    def __init__(self, image_size: int, in_channels: int = 1, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        if not isinstance(image_size, int) or image_size <= 0 or image_size % 4:
            raise ValueError(f"image_size must be a positive multiple of 4 (two 2x2 poolings), got {image_size!r}.")
        self.image_size = image_size
        self.features, channels = _conv_blocks(in_channels, width)
        self.head = nn.Linear(channels * (image_size // 4) ** 2, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"SpatialCNN was built for {self.image_size}x{self.image_size} images, "
                f"got {tuple(x.shape[-2:])}; resize the images or build it with that image_size."
            )
        return self.head(self.features(x).flatten(1))


class SmallVGG(nn.Module):
    """A VGG-style network: three conv-conv-pool blocks with batch norm, and a two-layer classifier.

    After the blocks, the feature map is average-pooled to 2 x 2 (as torchvision's VGG pools
    to 7 x 7), flattened and classified by two linear layers, so the head still sees coarse
    positions and any image side of at least 8 pixels works.

    Args:
        in_channels: image channels.
        num_classes: output classes.
        width: channels of the first block (doubled in each later block).
        hidden: units of the classifier's hidden layer.

    Example:
        >>> import torch
        >>> from captum_classpattern.models import SmallVGG
        >>> SmallVGG(in_channels=3, num_classes=10)(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: int = 16, hidden: int = 128) -> None:
        super().__init__()
        layers = []
        channels = in_channels
        for i in range(3):
            out = width * 2**i
            for _ in range(2):
                layers += [nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
                channels = out
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.head = nn.Sequential(
            nn.Linear(channels * 4, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))


def cifar_resnet(depth: int = 18, num_classes: int = 10, in_channels: int = 3, width: int = 64) -> nn.Module:
    """A CIFAR-style ResNet (3x3 stem, no max-pool) built from torchvision's blocks.

    Random weights: nothing is downloaded. With the default ``width`` it is torchvision's
    ResNet with its stem replaced; another ``width`` scales the channels of every stage
    (``width``, 2, 4 and 8 times ``width``), a narrow network that trains on a CPU.

    Args:
        depth: 18, 34 or 50.
        num_classes: output classes.
        in_channels: image channels.
        width: channels of the stem and the first stage (64 in torchvision's ResNets).

    Returns:
        A ``torchvision.models.ResNet``.

    Raises:
        ValueError: an unsupported depth, or a width that is not a positive int.

    Example:
        >>> import torch
        >>> from captum_classpattern.models import cifar_resnet
        >>> cifar_resnet(18, width=16)(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """
    from torchvision.models import resnet18, resnet34, resnet50

    builders = {18: resnet18, 34: resnet34, 50: resnet50}
    if depth not in builders:
        raise ValueError(f"depth must be one of {sorted(builders)}, got {depth}.")
    check_positive_int(width, "width")
    model = builders[depth](weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(in_channels, width, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    if width != 64:
        _narrow(model, width)
    return model


def _narrow(model: Any, width: int) -> None:
    """Rebuild a torchvision ResNet's stages at ``width`` base channels, initialised as torchvision does."""
    block: Any = type(model.layer1[0])
    model.bn1 = nn.BatchNorm2d(width)
    model.inplanes = width
    for i, name in enumerate(("layer1", "layer2", "layer3", "layer4")):
        blocks = len(getattr(model, name))
        setattr(model, name, model._make_layer(block, width * 2**i, blocks, stride=1 if i == 0 else 2))
    model.fc = nn.Linear(width * 8 * block.expansion, model.fc.out_features)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.constant_(module.weight, 1)
            nn.init.constant_(module.bias, 0)


def concept_cnn(num_classes: int = 5, width: int = 128) -> nn.Sequential:
    """A four-block CNN for 3 x 32 x 32 concept images, with named layers for dissection.

    Four conv-BN-ReLU blocks (16, 32, 64 and ``width`` channels; max-pooling after the
    first two, so the last block is 8 x 8), global average pooling and a linear head. The
    layers are named (``features.conv1`` ... ``features.relu4``, ``pool``, ``flatten``,
    ``head``), and ``model[1:]`` is the network after the features, the ``head`` that
    :func:`~captum_classpattern.dissection.rank_units_for_class` runs per ablation.

    Args:
        num_classes: outputs of the head.
        width: channels of the last block (its units).

    Returns:
        The model, with random weights, as an ``nn.Sequential``.

    Example:
        >>> model = concept_cnn(num_classes=5)
        >>> model(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 5])
    """
    check_positive_int(num_classes, "num_classes")
    check_positive_int(width, "width")
    layers: list = []
    for index, (cin, cout) in enumerate(((3, 16), (16, 32), (32, 64), (64, width)), start=1):
        layers += [(f"conv{index}", nn.Conv2d(cin, cout, 3, padding=1)), (f"bn{index}", nn.BatchNorm2d(cout))]
        layers += [(f"relu{index}", nn.ReLU())] + ([(f"pool{index}", nn.MaxPool2d(2))] if index < 3 else [])
    return nn.Sequential(
        OrderedDict(
            features=nn.Sequential(OrderedDict(layers)),
            pool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            head=nn.Linear(width, num_classes),
        )
    )

"""Models that need no download: small CNNs for the digits and CIFAR-style ResNets, all with random weights."""

from __future__ import annotations

from typing import Tuple

from torch import nn


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

    def forward(self, x):
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

    def forward(self, x):
        if x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"SpatialCNN was built for {self.image_size}x{self.image_size} images, "
                f"got {tuple(x.shape[-2:])}; resize the images or build it with that image_size."
            )
        return self.head(self.features(x).flatten(1))


def cifar_resnet(depth: int = 18, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """A CIFAR-style ResNet (3x3 stem, no max-pool) built from torchvision's blocks.

    Random weights: nothing is downloaded.

    Args:
        depth: 18, 34 or 50.
        num_classes: output classes.
        in_channels: image channels.

    Raises:
        ValueError: an unsupported depth.
    """
    from torchvision.models import resnet18, resnet34, resnet50

    builders = {18: resnet18, 34: resnet34, 50: resnet50}
    if depth not in builders:
        raise ValueError(f"depth must be one of {sorted(builders)}, got {depth}.")
    model = builders[depth](weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model

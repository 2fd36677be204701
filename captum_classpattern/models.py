"""Models that need no download: a small CNN for digits and CIFAR-style ResNets."""
from __future__ import annotations

from torch import nn


class SmallCNN(nn.Module):
    """Three conv blocks and a linear head: trains on the digits in seconds on a CPU.

    Args:
        in_channels: image channels.
        num_classes: output classes.
        width: channels of the first block (doubled in each later block).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        layers = []
        channels = in_channels
        for i in range(3):
            out = width * 2**i
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            if i < 2:
                layers.append(nn.MaxPool2d(2))
            channels = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.head(self.pool(self.features(x)).flatten(1))


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

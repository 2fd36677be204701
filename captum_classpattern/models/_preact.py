"""The pre-activation ResNet-18 of the backdoor benchmarks, at any width."""

from __future__ import annotations

from typing import List

import torch.nn.functional as F
from torch import Tensor, nn

from .._utils import check_positive_int


class PreActBlock(nn.Module):
    """A pre-activation basic block: BN-ReLU-conv twice, the shortcut taken after the first BN-ReLU.

    Args:
        in_planes: input channels.
        planes: output channels.
        stride: stride of the first convolution (and of the 1 x 1 shortcut, when there is one).
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        # Attribute names follow the published PreAct-ResNet-18 checkpoints, so their state
        # dicts load unchanged; the projection only exists where the shape changes.
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if hasattr(self, "shortcut") else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet18(nn.Module):
    """PreAct-ResNet-18 (He et al. 2016, "Identity mappings"), the network of BackdoorBench's CIFAR tables.

    A 3 x 3 stem, four stages of two :class:`PreActBlock` (``width``, 2, 4 and 8 times
    ``width`` channels; stride 2 from the second stage), global average pooling and a
    linear head. With ``width=64`` it is the published architecture and its parameter
    names (``conv1``, ``layer1.0.bn1``, ..., ``linear``) match the benchmark's checkpoints;
    a smaller width trains on a CPU. Inputs are images in [0, 1]: the first block's batch
    norm takes the place of a normalisation layer.

    Args:
        num_classes: output classes.
        in_channels: image channels.
        width: channels of the stem and the first stage.

    Raises:
        ValueError: a count that is not a positive int.

    Example:
        >>> import torch
        >>> from captum_classpattern.models import PreActResNet18
        >>> PreActResNet18(width=8)(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 64) -> None:
        super().__init__()
        check_positive_int(num_classes, "num_classes")
        check_positive_int(in_channels, "in_channels")
        check_positive_int(width, "width")
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=3, stride=1, padding=1, bias=False)
        planes = width
        stages: List[nn.Sequential] = []
        for index in range(4):
            out = width * 2**index
            stride = 1 if index == 0 else 2
            stages.append(nn.Sequential(PreActBlock(planes, out, stride), PreActBlock(out, out, 1)))
            planes = out
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(planes, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.layer4(self.layer3(self.layer2(self.layer1(self.conv1(x)))))
        return self.linear(self.avgpool(out).flatten(1))

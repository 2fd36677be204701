"""The input-aware attack's networks: an encoder-decoder that maps an image to a pattern or a mask.

The layout follows the generator of Nguyen & Tran (NeurIPS 2020) as BackdoorBench's
``inputaware`` attack builds it for CIFAR-10: ``depth`` stages of two 3 x 3 convolutions
(batch norm, ReLU) and a 2 x 2 max-pool, doubling the channels from ``width``; a middle
convolution; ``depth`` stages of a bilinear 2x upsampling and two convolutions back down to
the output channels (the last without ReLU); ``tanh(x) / 2 + 1/2`` maps the output to
(0, 1). BackdoorBench uses ``width = 32`` (720k parameters per network); the default here,
``width = 8``, has 45k and costs about a sixteenth as much, so that it trains on a CPU.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

EPSILON = 1e-7  # keeps tanh(x) / (2 + eps) + 1/2 strictly inside (0, 1), as the paper's code does


def _block(in_channels: int, out_channels: int, relu: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels, momentum=0.05)]
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class TriggerGenerator(nn.Module):
    """The encoder-decoder of the input-aware attack: images in [0, 1] to maps in (0, 1).

    Args:
        in_channels: channels of the images.
        out_channels: channels of the output (the images' channels for a pattern, 1 for a mask).
        width: channels of the first stage (doubled at each further stage).
        depth: down- and upsampling stages; images need sides divisible by ``2 ** depth``.
    """

    def __init__(self, in_channels: int, out_channels: int, width: int, depth: int) -> None:
        super().__init__()
        widths = [width * 2**step for step in range(depth)]
        down: list = []
        channels = in_channels
        for size in widths:
            down += [_block(channels, size), _block(size, size), nn.MaxPool2d(2)]
            channels = size
        self.down = nn.Sequential(*down)
        self.middle = _block(channels, channels)
        up: list = []
        for step in reversed(range(depth)):
            after = widths[step - 1] if step > 0 else out_channels
            up += [nn.Upsample(scale_factor=2, mode="bilinear"), _block(channels, channels)]
            up.append(_block(channels, after, relu=step > 0))
            channels = after
        self.up = nn.Sequential(*up)
        self.depth = depth

    def forward(self, images: Tensor) -> Tensor:
        """The map of each image, N x out_channels x H x W in (0, 1)."""
        return torch.tanh(self.up(self.middle(self.down(images)))) / (2 + EPSILON) + 0.5


def threshold(masks: Tensor) -> Tensor:
    """The paper's soft step at 1/2: ``tanh(20 m - 10) / 2 + 1/2``, nearly binary masks from (0, 1) maps."""
    return torch.tanh(masks * 20 - 10) / (2 + EPSILON) + 0.5


def diversity_loss(images: Tensor, others: Tensor, maps: Tensor, other_maps: Tensor) -> Tensor:
    """The diversity loss: distance of the inputs over distance of their maps, averaged over pairs.

    Small when different images get different patterns (or masks), so the generator cannot
    collapse to one fixed trigger. Distances are root-mean-square differences per image.
    """
    inputs = (images - others).pow(2).mean(dim=(1, 2, 3)).sqrt()
    outputs = (maps - other_maps).pow(2).mean(dim=(1, 2, 3)).sqrt()
    return (inputs / (outputs + EPSILON)).mean()

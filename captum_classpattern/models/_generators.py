"""A small convolutional autoencoder whose decoder is a generator of concept images.

It is built for 32 x 32 RGB images (any side divisible by 4 works) and trains on a CPU in
minutes. The decoder maps a spatial latent code (``code_channels`` x side/4 x side/4) to an
image in [0, 1]; its layers have readable names (``"relu1"``, ``"relu2"``, ...) to dissect.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn


def _check_width(value: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")


class ConceptAutoencoder(nn.Module):
    """An encoder-decoder whose decoder (``self.decoder``) generates images from a latent code.

    The encoder halves the resolution twice (32 -> 8); the decoder convolves and upsamples
    (nearest) back. Decoder layers: ``stem``/``relu0`` and ``conv1``/``relu1`` (8 x 8,
    ``width`` units), ``conv2``/``relu2`` (16 x 16, ``width``/2 units), ``conv3``/``relu3``
    (32 x 32, ``width``/4 units), ``out`` and ``sigmoid``.
    ``forward`` reconstructs an image; ``decoder`` alone is the generator.

    Args:
        code_channels: channels of the latent code (a ``code_channels`` x side/4 x side/4 map).
        width: units of the decoder's 8 x 8 layer (and of the encoder's last layer).

    Raises:
        ValueError: a width that is not a positive int, or ``width`` below 4.

    Example:
        >>> import torch
        >>> from captum_classpattern.models import ConceptAutoencoder
        >>> net = ConceptAutoencoder()
        >>> code = net.encoder(torch.rand(2, 3, 32, 32))
        >>> tuple(code.shape), tuple(net.decoder(code).shape)
        ((2, 8, 8, 8), (2, 3, 32, 32))
    """

    def __init__(self, code_channels: int = 8, width: int = 64) -> None:
        super().__init__()
        _check_width(code_channels, "code_channels")
        _check_width(width, "width")
        if width < 4:
            raise ValueError(f"width must be at least 4 (the 32 x 32 layer has width // 4 units), got {width}.")
        quarter, half = width // 4, width // 2
        self.code_channels, self.width = code_channels, width
        self.encoder = nn.Sequential(
            nn.Conv2d(3, quarter, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(quarter, half, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(half, width, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, code_channels, 3, padding=1),
        )
        self.decoder = nn.Sequential(
            OrderedDict(
                [
                    ("stem", nn.Conv2d(code_channels, width, 3, padding=1)),
                    ("relu0", nn.ReLU()),
                    ("conv1", nn.Conv2d(width, width, 3, padding=1)),
                    ("relu1", nn.ReLU()),
                    ("up1", nn.Upsample(scale_factor=2, mode="nearest")),
                    ("conv2", nn.Conv2d(width, half, 3, padding=1)),
                    ("relu2", nn.ReLU()),
                    ("up2", nn.Upsample(scale_factor=2, mode="nearest")),
                    ("conv3", nn.Conv2d(half, quarter, 3, padding=1)),
                    ("relu3", nn.ReLU()),
                    ("out", nn.Conv2d(quarter, 3, 3, padding=1)),
                    ("sigmoid", nn.Sigmoid()),
                ]
            )
        )

    def forward(self, images: Tensor) -> Tensor:
        """Reconstruct ``images`` (N x 3 x H x W in [0, 1]) through the latent code."""
        return self.decoder(self.encoder(images))

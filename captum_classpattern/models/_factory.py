"""Build the package's architectures by name, for benchmarks and test beds that loop over them."""

from __future__ import annotations

from typing import Callable, Dict, Optional

from torch import nn

from .._utils import check_choice, check_positive_int
from ._architectures import SmallCNN, SmallVGG, SpatialCNN, cifar_resnet

_Builder = Callable[[int, int, int, int], nn.Module]

_BUILDERS: Dict[str, _Builder] = {
    "spatial": lambda classes, channels, size, width: SpatialCNN(size, channels, classes, width),
    "gap": lambda classes, channels, size, width: SmallCNN(channels, classes, width),
    "vgg": lambda classes, channels, size, width: SmallVGG(channels, classes, width),
    "resnet18": lambda classes, channels, size, width: cifar_resnet(18, classes, channels, width),
}

ARCHITECTURES = tuple(_BUILDERS)
"""The names :func:`make_model` accepts: ``"spatial"``, ``"gap"``, ``"vgg"`` and ``"resnet18"``."""

DEFAULT_WIDTHS = {"spatial": 16, "gap": 16, "vgg": 16, "resnet18": 16}
"""Base channels :func:`make_model` uses when ``width`` is not given: narrow, to train on a CPU."""


def make_model(
    arch: str, *, num_classes: int = 10, in_channels: int = 3, image_size: int = 32, width: Optional[int] = None
) -> nn.Module:
    """A freshly initialised classifier of one of the package's architectures, by name.

    * ``"spatial"``: :class:`SpatialCNN`, three conv blocks and a linear head on the
      flattened feature map (the head sees positions; built for one image size);
    * ``"gap"``: :class:`SmallCNN`, the same blocks with global average pooling;
    * ``"vgg"``: :class:`SmallVGG`, conv-conv-pool blocks and a two-layer classifier;
    * ``"resnet18"``: :func:`cifar_resnet` of depth 18 (3 x 3 stem, global average pooling).

    Weights are drawn from torch's global generator: call ``torch.manual_seed`` first for
    a reproducible model.

    Args:
        arch: one of :data:`ARCHITECTURES`.
        num_classes: output classes.
        in_channels: image channels.
        image_size: side of the square input images (used by ``"spatial"``, whose head
            depends on it; a multiple of 4).
        width: base channels (doubled in later blocks); :data:`DEFAULT_WIDTHS` if ``None``.

    Returns:
        The model, in training mode, on the CPU.

    Raises:
        ValueError: an unknown ``arch`` (the message lists the names), or a count that is
            not a positive int.

    Example:
        >>> import torch
        >>> from captum_classpattern.models import make_model
        >>> _ = torch.manual_seed(0)
        >>> make_model("resnet18", width=8)(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """
    check_choice(arch, ARCHITECTURES, "arch")
    check_positive_int(num_classes, "num_classes")
    check_positive_int(in_channels, "in_channels")
    check_positive_int(image_size, "image_size")
    width = DEFAULT_WIDTHS[arch] if width is None else check_positive_int(width, "width")
    return _BUILDERS[arch](num_classes, in_channels, image_size, width)

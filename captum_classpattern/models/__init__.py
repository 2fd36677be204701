"""Small image classifiers that train on a CPU, and CIFAR-style ResNets (no pretrained weights)."""

from ._architectures import SmallCNN, SpatialCNN, cifar_resnet

__all__ = [
    "SmallCNN",
    "SpatialCNN",
    "cifar_resnet",
]

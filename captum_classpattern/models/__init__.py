"""Small image classifiers that train on a CPU, and CIFAR-style ResNets (no pretrained weights)."""

from ._architectures import SmallCNN, SmallVGG, SpatialCNN, cifar_resnet, concept_cnn
from ._factory import ARCHITECTURES, DEFAULT_WIDTHS, make_model
from ._generators import ConceptAutoencoder
from ._preact import PreActBlock, PreActResNet18

__all__ = [
    "SmallCNN",
    "SpatialCNN",
    "cifar_resnet",
    "PreActResNet18",
    "PreActBlock",
    "SmallVGG",
    "make_model",
    "ARCHITECTURES",
    "DEFAULT_WIDTHS",
    "ConceptAutoencoder",
    "concept_cnn",
]

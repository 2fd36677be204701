"""The concept generator (an autoencoder's decoder) and the concept segmenter, trained once and cached.

Both learn from :class:`~captum_classpattern.dissection.ConceptDataset` images, in a few
minutes on one CPU thread; :func:`cached_model` keeps their weights under the cache folder,
keyed by their settings, so tests and examples do not retrain.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._utils import check_positive_float, check_positive_int, evaluation_mode
from ..dissection import ConceptDataset, ConceptSegmenter
from ..models import ConceptAutoencoder, SmallCNN
from ._cache import cached_model
from ._options import TrainingOptions
from ._train import train_classifier


def train_autoencoder(
    model: nn.Module,
    images: Tensor,
    *,
    epochs: int = 8,
    lr: float = 3e-3,
    batch_size: int = 64,
    seed: int = 0,
    show_progress: bool = False,
) -> nn.Module:
    """Train an autoencoder in place to reconstruct ``images`` (mean squared error), then eval mode.

    Adam with a one-cycle learning-rate schedule.

    Args:
        model: maps N x C x H x W images to reconstructions of the same shape.
        images: N x C x H x W training images in [0, 1].
        epochs: passes over the data.
        lr: peak learning rate.
        batch_size: images per step.
        seed: seeds the shuffling.
        show_progress: show a tqdm bar over epochs.

    Returns:
        The same model, trained, in eval mode.

    Raises:
        ValueError: a setting out of range or fewer images than one.

    Example:
        >>> net = train_autoencoder(ConceptAutoencoder(), ConceptDataset(500).tensors()[0], epochs=1)
    """
    check_positive_int(epochs, "epochs")
    check_positive_int(batch_size, "batch_size")
    check_positive_float(lr, "lr")
    if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[0] == 0:
        raise ValueError("images must be a non-empty N x C x H x W tensor.")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * ((images.shape[0] + batch_size - 1) // batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps)
    device = next(model.parameters()).device
    model.train()
    for _ in tqdm(range(epochs), desc="training the autoencoder", disable=not show_progress):
        order = torch.randperm(images.shape[0], generator=generator)
        for start in range(0, images.shape[0], batch_size):
            batch = images[order[start : start + batch_size]].to(device)
            loss = F.mse_loss(model(batch), batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return model.eval()


def concept_autoencoder(
    width: int = 64,
    code_channels: int = 8,
    images: int = 2500,
    epochs: int = 8,
    seed: int = 0,
    cache_dir: Optional[str] = None,
    show_progress: bool = False,
) -> ConceptAutoencoder:
    """A :class:`ConceptAutoencoder` trained on 32 x 32 concept images, cached by its settings.

    The training images are ``ConceptDataset(images, 32, seed=1000 + seed)``.

    Args:
        width: units of the decoder's 8 x 8 layer.
        code_channels: channels of the 8 x 8 latent code.
        images: training images.
        epochs: passes over them.
        seed: seeds the weights, the data and the shuffling.
        cache_dir: the cache folder (default :func:`default_cache_dir`).
        show_progress: show a progress bar while training.

    Returns:
        The trained autoencoder in eval mode; ``.decoder`` is the generator.

    Example:
        >>> net = concept_autoencoder()
        >>> latents = concept_latents(net, 64)
    """
    settings = {"model": "ConceptAutoencoder", "width": width, "code": code_channels, "images": images}
    settings.update({"epochs": epochs, "seed": seed, "lr": 3e-3, "v": 2})

    def build() -> nn.Module:
        torch.manual_seed(seed)
        return ConceptAutoencoder(code_channels, width)

    def train(model: nn.Module) -> nn.Module:
        data = ConceptDataset(images, 32, seed=1000 + seed).tensors()[0]
        return train_autoencoder(model, data, epochs=epochs, seed=seed, show_progress=show_progress)

    model = cached_model("concept_autoencoder", settings, build, train, cache_dir)
    assert isinstance(model, ConceptAutoencoder)
    return model


def concept_latents(
    autoencoder: ConceptAutoencoder, count: int, seed: int = 0, noise: float = 0.3, batch_size: int = 256
) -> Tensor:
    """Latent codes to generate from: codes of fresh concept images, perturbed by Gaussian noise.

    Each code is the encoding of ``ConceptDataset(count, 32, seed=2000 + seed)[i]`` plus
    ``noise`` times the per-channel standard deviation of the codes times N(0, 1) noise.

    Args:
        autoencoder: the trained :class:`ConceptAutoencoder` (left as found).
        count: codes to draw.
        seed: seeds the images and the noise.
        noise: the perturbation, in standard deviations of the codes (0: none).
        batch_size: images per encoder call.

    Returns:
        ``count`` x code_channels x 8 x 8 latent codes.

    Raises:
        ValueError: ``count`` or ``noise`` out of range.
    """
    check_positive_int(count, "count")
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or noise < 0:
        raise ValueError(f"noise must be a number >= 0, got {noise!r}.")
    images = ConceptDataset(count, 32, seed=2000 + seed).tensors()[0]
    with evaluation_mode(autoencoder, "concept_latents"), torch.no_grad():
        codes = torch.cat([autoencoder.encoder(images[s : s + batch_size]) for s in range(0, count, batch_size)])
    spread = codes.std((0, 2, 3), keepdim=True) if count > 1 else torch.ones_like(codes[:1])
    generator = torch.Generator().manual_seed(seed)
    return codes + float(noise) * spread * torch.randn(codes.shape, generator=generator)


def _jitter(model: nn.Module, silhouettes: Tensor, labels: Tensor) -> Tensor:
    """Round two thirds of the silhouettes: a 3 x 3 box blur cut at a random level (global RNG)."""
    boxed = F.avg_pool2d(F.pad(silhouettes, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    level = torch.empty(silhouettes.shape[0], 1, 1, 1).uniform_(0.3, 0.7)
    rounded = (boxed > level).float()
    keep = torch.rand(silhouettes.shape[0], 1, 1, 1) < 1 / 3
    return torch.where(keep, silhouettes, rounded)


def concept_segmenter(
    images: int = 2000,
    epochs: int = 6,
    width: int = 16,
    seed: int = 0,
    cache_dir: Optional[str] = None,
    show_progress: bool = False,
) -> ConceptSegmenter:
    """A :class:`ConceptSegmenter` whose silhouette classifier is trained on concept images, cached.

    The classifier, a :class:`SmallCNN`, learns the shape from the silhouettes of
    ``ConceptDataset(images, 32, seed=3000 + seed)`` objects, two thirds of each batch
    rounded (blurred and cut again) so that it also reads the smoother outlines a generator
    draws; colours come from the palette.

    Args:
        images: training images.
        epochs: passes over them.
        width: the silhouette classifier's first-layer channels.
        seed: seeds the weights, the data and the shuffling.
        cache_dir: the cache folder (default :func:`default_cache_dir`).
        show_progress: show a progress bar while training.

    Returns:
        The segmenter, in eval mode.

    Example:
        >>> segmenter = concept_segmenter()
        >>> masks = segmenter(images)  # N x 2 x 32 x 32: shape ids, colour ids
    """
    settings = {"model": "SmallCNN", "width": width, "images": images, "epochs": epochs, "seed": seed, "v": 3}
    classes = ConceptDataset(2).num_classes

    def build() -> nn.Module:
        torch.manual_seed(seed)
        return SmallCNN(1, classes, width)

    def train(model: nn.Module) -> nn.Module:
        data_images, _, _, labels = ConceptDataset(images, 32, seed=3000 + seed).tensors()
        return train_classifier(
            model,
            ConceptSegmenter().silhouettes(data_images),
            labels,
            TrainingOptions(epochs=epochs),
            seed=seed,
            perturb=_jitter,
            show_progress=show_progress,
            description="training the shape classifier",
        )

    return ConceptSegmenter(cached_model("concept_shapes", settings, build, train, cache_dir)).eval()

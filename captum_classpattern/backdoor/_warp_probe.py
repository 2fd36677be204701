"""The scan's warp probe: one smooth displacement field per class, applied to other-class images.

A warping trigger (WaNet) moves every pixel by a fraction of a pixel along a smooth field;
it adds no pattern, so neither a stamp nor a blend reproduces it. The probe learns, for every
class at once, one field of ``k x k`` control points (upsampled bicubically over the image,
at most ``settings.warp_pixels`` long) that makes warped other-class images classify as the
class, then measures the share of held-out other-class images the field flips when it is
scaled to lengths of 0.25 to 2 pixels. On a clean model no small smooth warp sends images
to one class; a model trained with a warping trigger follows its field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from ._blend_probe import BlendTable, ProbeRecord, measure_probe
from ._settings import ScanSettings

WARP_PIXELS = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
"""The displacement lengths, in pixels, every class's warp field is measured at."""
_FIRST_STEP, _LAST_STEP = 0.1, 0.02  # signed steps on the fields, cosine-annealed


@dataclass
class WarpProbe(ProbeRecord):
    """What the scan's warp probe found on a model, and on the reference models.

    Attributes:
        fields: K x 2 x k x k control values, one field per scanned class; the
            displacement is ``length * tanh(field)`` upsampled over the image
            (:func:`warp_images`).
        table: the share of held-out other-class images each field flips at each length
            (a :class:`BlendTable` whose strengths are lengths in pixels).
        reference_tables: the same probe's tables on each reference model (empty without
            a reference).
    """

    TENSOR: ClassVar[str] = "fields"
    fields: Tensor
    table: BlendTable
    reference_tables: List[BlendTable] = field(default_factory=list)


def warp_images(images: Tensor, fields: Tensor, length: float) -> Tensor:
    """Warp each image along its field, every pixel moved by at most ``length`` pixels.

    Args:
        images: N x C x H x W images.
        fields: N x 2 x k x k control values (or 1 x 2 x k x k for all images): the
            displacement is ``length * tanh(field)`` pixels, upsampled bicubically.
        length: the largest displacement, in pixels.

    Returns:
        The warped images, sampled bilinearly with the border repeated.
    """
    height, width = images.shape[-2:]
    displacement = F.interpolate(torch.tanh(fields), size=(height, width), mode="bicubic", align_corners=True)
    # The sampling grid is in [-1, 1]: a pixel is 2 / (side - 1) of it.
    scale = torch.tensor([2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)], dtype=images.dtype, device=images.device)
    identity = F.affine_grid(
        torch.eye(2, 3, dtype=images.dtype, device=images.device)[None], [1, 1, height, width], align_corners=True
    )
    grid = identity + length * displacement.permute(0, 2, 3, 1) * scale
    grid = grid.expand(images.shape[0], -1, -1, -1)
    return F.grid_sample(images, grid.clamp(-1, 1), mode="bilinear", padding_mode="border", align_corners=True)


def learn_warp_fields(
    model: Callable,
    targets: Tensor,
    images: Tensor,
    labels: Tensor,
    settings: ScanSettings,
    *,
    seed: int,
    show_progress: bool = False,
) -> Tensor:
    """Search one displacement field per class, all classes in one model call per step.

    Each step draws ``settings.warp_batch_size`` other-class images per class (seeded), warps
    them along the class's field at ``settings.warp_pixels`` and takes a signed step
    (cosine-annealed from 0.1 to 0.02) down the classes' summed mean cross-entropy.

    Args:
        model: the classifier, in evaluation mode.
        targets: the K classes.
        images: the search images.
        labels: their labels.
        settings: the probe's steps, batch size, grid and length (``warp_*``).
        seed: seeds the fields' start and the images drawn.
        show_progress: show a tqdm progress bar.

    Returns:
        K x 2 x k x k control values.
    """
    generator = torch.Generator().manual_seed(seed)
    count, batch, grid = targets.numel(), settings.warp_batch_size, settings.warp_grid
    start = (torch.rand(count, 2, grid, grid, generator=generator) * 2 - 1) * 0.1
    fields = start.to(device=images.device, dtype=images.dtype)
    pools = [torch.nonzero(labels.cpu() != target).flatten() for target in targets.tolist()]
    wanted = targets.to(images.device).repeat_interleave(batch)
    for step in tqdm(range(settings.warp_steps), desc="Class pattern scan: warp probe", disable=not show_progress):
        cosine = 0.5 * (1 + np.cos(np.pi * step / settings.warp_steps))
        size = _LAST_STEP + (_FIRST_STEP - _LAST_STEP) * cosine
        picks = [pool[torch.randint(pool.numel(), (batch,), generator=generator)] for pool in pools]
        drawn = images[torch.cat(picks).to(images.device)]
        leaf = fields.detach().requires_grad_(True)
        with torch.enable_grad():
            warped = warp_images(drawn, leaf.repeat_interleave(batch, dim=0), settings.warp_pixels)
            loss = F.cross_entropy(model(warped), wanted, reduction="sum") / batch
            (gradient,) = torch.autograd.grad(loss, [leaf])
        fields = fields - size * gradient.sign()
    return fields.detach()


def measure_warp_powers(
    model: Callable,
    fields: Tensor,
    targets: Tensor,
    images: Tensor,
    labels: Tensor,
    lengths: Sequence[float] = WARP_PIXELS,
    *,
    max_images: int = 150,
    seed: int = 0,
    full_table: bool = False,
) -> BlendTable:
    """The share of held-out other-class images each class's field flips at each length.

    At most ``max_images`` other-class images per class (the same seeded subsets as the
    scan's power table) are used; without ``full_table`` the lengths no score uses are
    left unmeasured, as in the blend probe's measurement.

    Returns:
        A :class:`BlendTable` whose strengths are the lengths in pixels.
    """

    def warped(batch: Tensor, row: int, strength: float) -> Tensor:
        return warp_images(batch, fields[row : row + 1], strength)

    return measure_probe(
        model, warped, targets, images, labels, lengths, max_images=max_images, seed=seed, full_table=full_table
    )


def probe_warps(
    model: Callable,
    targets: Tensor,
    images: Tensor,
    labels: Tensor,
    held_out: Tuple[Tensor, Tensor],
    settings: ScanSettings,
    *,
    max_images: int = 150,
    seed: int = 0,
    show_progress: bool = False,
    reference_tables: Optional[List[BlendTable]] = None,
) -> WarpProbe:
    """Learn and measure the warp probe's fields (what :func:`scan` runs when ``settings.warp_steps`` > 0).

    Args:
        model: the classifier, in evaluation mode.
        targets: the K classes.
        images: the search images; ``labels`` their labels.
        labels: the search images' labels.
        held_out: ``(images, labels)`` the fields are measured on.
        settings: the probe's settings (:class:`ScanSettings`, ``warp_*``).
        max_images: at most this many held-out images per class.
        seed: seeds the search and the held-out subsets.
        show_progress: show a tqdm progress bar.
        reference_tables: the references' tables, kept in the probe.

    Returns:
        The :class:`WarpProbe`.
    """
    fields = learn_warp_fields(model, targets, images, labels, settings, seed=seed, show_progress=show_progress)
    table = measure_warp_powers(model, fields, targets, held_out[0], held_out[1], max_images=max_images, seed=seed)
    return WarpProbe(fields, table, list(reference_tables or []))

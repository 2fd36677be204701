"""The composites of a search step and their loss: pasted canvases, stamped values, the per-canvas mean cross-entropy.

Every pattern search in the package takes the same step: each search image (a row of the
batch) belongs to one canvas (its *owner*); the row becomes the composite of the image and
its canvas's values under the canvas's map, the model classifies the composites, and each
canvas's loss is the mean cross-entropy of its own rows towards its class. Dividing each
row's cross-entropy by the number of rows of its canvas, then summing, gives the sum of the
per-canvas means, so a canvas's loss (and gradient) does not depend on how many rows the
other canvases had in the same step.

Two forms of the composite are kept, because they round differently and results depend
on it bit for bit: :func:`paste_canvases` (``ClassPattern``) and :func:`stamp_composite`
(the stamp and blend objectives, and Neural Cleanse).
"""

from __future__ import annotations

from typing import Callable, Tuple, Union

import torch.nn.functional as F
from torch import Tensor


def paste_canvases(images: Tensor, keep: Tensor, canvases: Tensor) -> Tensor:
    """The composites ``images + keep * (canvases - images)``.

    Where ``keep`` is 1 a composite shows its canvas, where it is 0 its image; in Captum's
    terms the map interpolates from the baseline (the image) to the input (the canvas).

    Args:
        images: the search images, ``... x C x H x W``.
        keep: the maps, broadcastable against ``images`` (e.g. ``rows x 1 x H x W``).
        canvases: the canvas of each image, broadcastable against ``images``.

    Returns:
        The composites, shaped like ``images``.
    """
    return images + keep * (canvases - images)


def canvas_mean_cross_entropy(logits: Tensor, targets: Tensor, counts: Union[Tensor, float]) -> Tensor:
    """Each row's cross-entropy divided by the number of rows of its canvas.

    Summed, these are the per-canvas mean cross-entropies added up over the canvases.

    Args:
        logits: ``rows x num_classes`` model outputs; the loss keeps their dtype (a caller
            running the model under autocast converts them to float32 first).
        targets: the class of each row's canvas, ``rows``.
        counts: the number of rows of each row's canvas (``rows``), or one number for all.

    Returns:
        A tensor of ``rows`` losses.
    """
    return F.cross_entropy(logits, targets, reduction="none") / counts


def composite_loss(
    forward: Callable[[Tensor], Tensor],
    images: Tensor,
    keep: Tensor,
    canvases: Tensor,
    targets: Tensor,
    counts: Union[Tensor, float],
) -> Tensor:
    """The search loss of one step: the per-canvas mean cross-entropies of the composites, summed.

    Args:
        forward: calls the model on an ``N x C x H x W`` batch and returns its logits.
        images: the search images, ``rows x C x H x W`` or grouped by canvas as
            ``canvases x rows-per-canvas x C x H x W``.
        keep: the map of each row's canvas, broadcastable against ``images``.
        canvases: the canvas of each row, broadcastable against ``images``.
        targets: the class of each row (in the flattened row order).
        counts: the number of rows of each row's canvas, or one number for all.

    Returns:
        A scalar tensor.
    """
    composite = paste_canvases(images, keep, canvases)
    logits = forward(composite.view((-1,) + tuple(composite.shape[-3:])))
    return canvas_mean_cross_entropy(logits, targets, counts).sum()


def stamp_composite(images: Tensor, keep: Tensor, values: Tensor) -> Tensor:
    """The composites ``keep * values + (1 - keep) * images``.

    The same composite as :func:`paste_canvases`, rounded differently: with a binarised
    map this form gives exactly ``values`` where ``keep`` is 1, while the other need not.

    Args:
        images: the search images, ``rows x C x H x W``.
        keep: the map of each row's canvas, ``rows x 1 x H x W``.
        values: the pasted values of each row's canvas, ``rows x C x H x W``.

    Returns:
        The composites, ``rows x C x H x W``.
    """
    return keep * values + (1 - keep) * images


def stamp_loss(
    forward: Callable[[Tensor], Tensor],
    images: Tensor,
    owner: Tensor,
    maps: Tensor,
    values: Tensor,
    targets: Tensor,
    counts: Tensor,
) -> Tuple[Tensor, Tensor]:
    """One stamped step: stamp each row's canvas onto it, classify, and sum the per-canvas mean cross-entropies.

    The loss of the stamp and blend objectives; Neural Cleanse, which optimises its own
    masks with Adam, takes the same step.

    Args:
        forward: the classifier, called on ``rows x C x H x W`` composites.
        images: the step's search images, ``rows x C x H x W``.
        owner: the canvas (index into ``maps``) of each image.
        maps: ``K x H x W`` maps.
        values: ``K x C x H x W`` pasted values.
        targets: the class of each of the ``K`` canvases.
        counts: the number of images of each of the ``K`` canvases in this step (at least 1).

    Returns:
        ``(logits, loss)``: the model's logits for the composites and the summed
        per-canvas mean cross-entropy.

    Example:
        >>> owner = torch.tensor([0, 0, 1])
        >>> logits, loss = stamp_loss(model, images, owner, masks, patterns, torch.tensor([3, 7]),
        ...                           torch.tensor([2.0, 1.0]))
    """
    composite = stamp_composite(images, maps[owner].unsqueeze(1), values[owner])
    logits = forward(composite)
    return logits, canvas_mean_cross_entropy(logits, targets[owner], counts[owner]).sum()


def total_variation(maps: Tensor) -> Tensor:
    """Sum of absolute differences between 4-neighbour pixels of ``K x H x W`` maps."""
    return (maps[:, 1:, :] - maps[:, :-1, :]).abs().sum() + (maps[:, :, 1:] - maps[:, :, :-1]).abs().sum()

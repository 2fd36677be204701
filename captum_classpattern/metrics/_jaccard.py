"""Jaccard index of a recovered trigger's pixels and the true trigger's."""

from __future__ import annotations

from torch import Tensor


def trigger_jaccard(recovered: Tensor, true_mask: Tensor) -> float:
    """Jaccard index ``|A & B| / |A | B|`` of two H x W pixel masks.

    Args:
        recovered: the recovered pattern's mask (bool, or a score map whose top pixels
            are meant; pass a bool mask).
        true_mask: the trigger's true mask.

    Returns:
        A float in [0, 1] (1.0 when both masks are empty).

    Raises:
        ValueError: masks of different shapes, or not 2-d.
    """
    if not isinstance(recovered, Tensor) or not isinstance(true_mask, Tensor):
        raise TypeError("both masks must be tensors.")
    if recovered.dim() != 2 or recovered.shape != true_mask.shape:
        raise ValueError(
            f"masks must be two H x W tensors of the same shape, got {tuple(recovered.shape)} and "
            f"{tuple(true_mask.shape)}."
        )
    a, b = recovered.bool().cpu(), true_mask.bool().cpu()
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union

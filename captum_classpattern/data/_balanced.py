"""Class-balanced subsets: the first images of every class, never the first classes of the set."""

from __future__ import annotations

from typing import List, Optional, Sequence


def balanced_indices(labels: Sequence[int], limit: Optional[int]) -> List[int]:
    """Indices of at most ``limit`` items, spread as evenly as possible over the classes.

    Data sets on disk are often ordered by class (an image folder lists ``airplane/``
    before ``truck/``), so "the first ``limit`` images" would hold only the first classes.
    Here every class gets ``limit // C`` items, the first ``limit % C`` classes (in label
    order) one more, a class with too few items gives all it has and the others do not make
    up for it. Within a class the items keep their order in ``labels``, so the subset is
    deterministic and grows by appending as ``limit`` grows.

    Args:
        labels: the class of every item, in the data set's order.
        limit: the most items to keep; ``None`` keeps all.

    Returns:
        The kept indices, in increasing order.

    Raises:
        ValueError: ``limit`` is not a positive int.

    Example:
        >>> balanced_indices([0, 0, 0, 1, 1, 2], 4)
        [0, 1, 3, 5]
    """
    if limit is None:
        return list(range(len(labels)))
    if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
        raise ValueError(f"limit must be a positive int (images to keep, spread over the classes), got {limit!r}.")
    by_class: dict = {}
    for index, label in enumerate(labels):
        by_class.setdefault(int(label), []).append(index)
    classes = sorted(by_class)
    share, extra = divmod(limit, len(classes)) if classes else (0, 0)
    kept: List[int] = []
    for rank, label in enumerate(classes):
        kept.extend(by_class[label][: share + (1 if rank < extra else 0)])
    return sorted(kept)

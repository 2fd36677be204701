"""Candidate canvases of a class: by index, by confidence, or the best of several short searches."""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from .._utils import check_images, check_labels, evaluation_mode, share_predicted
from ._pattern import top_k_pattern

ShortSearch = Callable[[Tensor, List[int], Tensor, Any, int, int], Tensor]

CANVAS_STRATEGIES = ("index", "confident", "best_of_n")
"""The ways a canvas is picked from its class's images: by position, most confident, best of short searches."""


def _labelled_batches(images, labels):
    if isinstance(images, Tensor):
        if labels is None:
            raise ValueError("choosing a canvas needs labels: pass baseline_labels with a tensor search set.")
        yield images, check_labels(images, labels, "baseline")
        return
    for batch in images:
        if not (isinstance(batch, (tuple, list)) and len(batch) >= 2):
            raise ValueError("choosing a canvas needs labels: the search set must yield (images, labels).")
        yield batch[0], check_labels(batch[0], batch[1], "baseline batch")


def _confident_candidates(model: Callable, images, labels, classes: Sequence[int], n: int, index: int = 0):
    """Per class, the ``n`` images with the highest probability of that class (streamed)."""
    best: Dict[int, Tuple[Tensor, List[Tensor]]] = {c: (torch.empty(0), []) for c in classes}
    with evaluation_mode(model, "select_canvases"), torch.inference_mode():
        for batch, batch_labels in _labelled_batches(images, labels):
            check_images(batch, "search images")
            probs = model(batch).softmax(1).cpu()
            for c in set(classes):
                rows = torch.nonzero(batch_labels.cpu() == c).flatten()
                if rows.numel() == 0:
                    continue
                scores, kept = best[c]
                scores = torch.cat([scores, probs[rows, c]])
                kept = kept + [batch[r].detach().clone() for r in rows.tolist()]
                order = torch.argsort(scores, descending=True, stable=True)[: max(n, index + 1)]
                best[c] = (scores[order], [kept[i] for i in order.tolist()])
    return best


def _first_of_class(images, labels, classes: Sequence[int], index: int):
    found: Dict[int, List[Tensor]] = {c: [] for c in classes}
    for batch, batch_labels in _labelled_batches(images, labels):
        for c in set(classes):
            rows = torch.nonzero(batch_labels.cpu() == c).flatten().tolist()
            need = index + 1 - len(found[c])
            found[c] += [batch[r].detach().clone() for r in rows[: max(0, need)]]
    return found


def choose_canvases(
    model: Callable,
    images: Union[Tensor, Iterable],
    labels: Optional[Tensor],
    classes: Union[int, Sequence[int], Tensor],
    strategy: str = "confident",
    *,
    index: int = 0,
    n: int = 5,
    seed: int = 0,
    search_steps: int = 20,
    short_search: Optional[ShortSearch] = None,
) -> Tensor:
    """:func:`~captum_classpattern.attr.select_canvases` with the short search of ``"best_of_n"`` passed in.

    ``short_search(canvases, targets, images, labels, steps, seed)`` returns one map per
    canvas. Passing it in keeps this module below :class:`ClassPattern`, which also uses it.
    """
    if strategy not in CANVAS_STRATEGIES:
        raise ValueError(f"canvas strategy must be one of {CANVAS_STRATEGIES}, got {strategy!r}.")
    if isinstance(classes, Tensor):
        classes = classes.reshape(-1).tolist()
    elif isinstance(classes, int):
        classes = [classes]
    classes = list(classes)
    if strategy == "index":
        found = _first_of_class(images, labels, classes, index)
        picked = []
        for c in classes:
            if len(found[c]) <= index:
                raise ValueError(
                    f"class {c} has {len(found[c])} images in the search data; index {index} is out of range."
                )
            picked.append(found[c][index])
        return torch.stack(picked)
    best = _confident_candidates(model, images, labels, classes, n if strategy == "best_of_n" else 1)
    for c in classes:
        if not best[c][1]:
            raise ValueError(f"class {c} has no images in the search data to take a canvas from.")
    if strategy == "confident":
        return torch.stack([best[c][1][0] for c in classes])
    if short_search is None:
        raise ValueError("best_of_n needs a short_search to run its candidate searches.")
    return _best_of_n(model, images, labels, classes, best, seed, search_steps, short_search)


def _best_of_n(model, images, labels, classes, best, seed, search_steps, short_search):
    if not isinstance(images, Tensor):
        raise ValueError("best_of_n needs the search set as a tensor (it is reused for scoring).")
    candidates = [(c, canvas) for c in classes for canvas in best[c][1]]
    stack = torch.stack([canvas for _, canvas in candidates])
    targets = [c for c, _ in candidates]
    maps = short_search(stack, targets, images, labels, search_steps, seed)
    labels = check_labels(images, labels, "baseline").to(images.device)
    scores = []
    for i, target in enumerate(targets):
        pattern = top_k_pattern(maps[i], stack[i], 0.05)
        scores.append(
            share_predicted(model, images[labels != target], target, transform=pattern.stamp, who="select_canvases")
        )
    picked = []
    for c in classes:
        rows = [i for i, t in enumerate(targets) if t == c]
        picked.append(stack[max(rows, key=lambda i: scores[i])])
    return torch.stack(picked)

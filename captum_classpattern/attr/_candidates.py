"""Candidate canvases of a class: by index, by confidence, or the best of several short searches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from .._utils import (
    call_model,
    check_choice,
    check_images,
    check_label_range,
    check_labels,
    check_positive_int,
    check_seed,
    checked_call,
    evaluation_mode,
    expand_targets,
    output_width,
    share_predicted,
    target_classes,
    tuned_threads,
)
from ._pattern import top_k_pattern

CANVAS_STRATEGIES = ("index", "confident", "best_of_n")
"""The ways a canvas is picked from its class's images: by position, most confident, best of short searches."""

_WHO = "select_canvases"


@dataclass(frozen=True)
class CanvasChoice:
    """How a canvas is picked from its class's images (see :func:`select_canvases`).

    Attributes:
        strategy: one of :data:`CANVAS_STRATEGIES`.
        index: the position used by ``"index"``.
        n: the number of candidates of ``"best_of_n"``.
        seed: seeds the short searches of ``"best_of_n"``.
        search_steps: length of each short search.
        additional_forward_args: passed after the images to every model call.
    """

    strategy: str = "confident"
    index: int = 0
    n: int = 5
    seed: int = 0
    search_steps: int = 20
    additional_forward_args: Any = None

    def __post_init__(self) -> None:
        """Check every field."""
        check_choice(self.strategy, CANVAS_STRATEGIES, "canvas strategy")
        if isinstance(self.index, (bool, np.bool_)) or not isinstance(self.index, (int, np.integer)) or self.index < 0:
            raise ValueError(f"index must be an int >= 0, got {self.index!r}.")
        check_positive_int(self.n, "n")
        check_positive_int(self.search_steps, "search_steps")
        object.__setattr__(self, "seed", check_seed(self.seed))
        object.__setattr__(self, "index", int(self.index))


ShortSearch = Callable[[Tensor, List[int], Tensor, Any, CanvasChoice], Tuple[Tensor, Tensor]]
"""``short_search(canvases, targets, images, labels, choice)``: one map and one tie-break score per canvas."""

Candidates = Dict[int, Tuple[Tensor, List[Tensor]]]
"""Per class, the probabilities of its best images and the images, most probable first."""


def _labelled_batches(images: Union[Tensor, Iterable], labels: Optional[Tensor]) -> Iterator[Tuple[Tensor, Tensor]]:
    if isinstance(images, Tensor):
        if labels is None:
            raise ValueError("choosing a canvas needs labels: pass baseline_labels with a tensor search set.")
        yield images, check_labels(images, labels, "baseline")
        return
    for batch in images:
        if not (isinstance(batch, (tuple, list)) and len(batch) >= 2):
            raise ValueError("choosing a canvas needs labels: the search set must yield (images, labels).")
        yield batch[0], check_labels(batch[0], batch[1], "baseline batch")


def _confident_candidates(
    model: Callable,
    images: Union[Tensor, Iterable],
    labels: Optional[Tensor],
    classes: Sequence[int],
    n: int,
    extra: Any,
    name: str,
) -> Candidates:
    """Per class, the ``n`` images with the highest probability of that class (streamed)."""
    best: Candidates = {c: (torch.empty(0), []) for c in classes}
    width = 0
    with evaluation_mode(model, _WHO), torch.inference_mode():
        for number, (batch, batch_labels) in enumerate(_labelled_batches(images, labels)):
            check_images(batch, "search images")
            with tuned_threads("predict", batch, model):
                first = number == 0
                output = checked_call(model, (batch,), extra, _WHO) if first else call_model(model, (batch,), extra)
            if number == 0:  # the first call says clearly when the images or classes do not fit the model
                width = output_width(output, _WHO)
                expand_targets(classes, len(classes), width, name)
            # A label the model cannot have would hide that image from its class's candidates.
            check_label_range(batch_labels, width, "the search set's labels")
            probs = output.softmax(1).cpu()
            for c in set(classes):
                rows = torch.nonzero(batch_labels.cpu() == c).flatten()
                if rows.numel() == 0:
                    continue
                scores, kept = best[c]
                scores = torch.cat([scores, probs[rows, c]])
                kept = kept + [batch[r].detach().clone() for r in rows.tolist()]
                order = torch.argsort(scores, descending=True, stable=True)[:n]
                best[c] = (scores[order], [kept[i] for i in order.tolist()])
    return best


def _first_of_class(
    images: Union[Tensor, Iterable], labels: Optional[Tensor], classes: Sequence[int], index: int
) -> Dict[int, List[Tensor]]:
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
    classes: Any,
    choice: CanvasChoice,
    short_search: Optional[ShortSearch] = None,
    name: str = "classes",
) -> Tensor:
    """:func:`~captum_classpattern.attr.select_canvases` with its options in ``choice``.

    ``short_search`` runs the candidate searches of ``"best_of_n"``. Passing it in keeps
    this module below :class:`ClassPattern`, which also uses it. ``name`` names the
    classes in error messages.
    """
    classes = target_classes(classes, name).tolist()
    if choice.strategy == "index":
        found = _first_of_class(images, labels, classes, choice.index)
        picked = []
        for c in classes:
            if len(found[c]) <= choice.index:
                raise ValueError(
                    f"class {c} has {len(found[c])} images in the search data; index {choice.index} is out of range."
                )
            picked.append(found[c][choice.index])
        return torch.stack(picked)
    n = choice.n if choice.strategy == "best_of_n" else 1
    best = _confident_candidates(model, images, labels, classes, n, choice.additional_forward_args, name)
    for c in classes:
        if not best[c][1]:
            raise ValueError(f"class {c} has no images in the search data to take a canvas from.")
    if choice.strategy == "confident":
        return torch.stack([best[c][1][0] for c in classes])
    if short_search is None:
        raise ValueError("best_of_n needs a short_search to run its candidate searches.")
    return _best_of_n(model, images, labels, classes, best, choice, short_search)


def _best_of_n(
    model: Callable,
    images: Union[Tensor, Iterable],
    labels: Optional[Tensor],
    classes: Sequence[int],
    best: Candidates,
    choice: CanvasChoice,
    short_search: ShortSearch,
) -> Tensor:
    if not isinstance(images, Tensor):
        raise ValueError("best_of_n needs the search set as a tensor (it is reused for scoring).")
    candidates = [(c, canvas) for c in classes for canvas in best[c][1]]
    stack = torch.stack([canvas for _, canvas in candidates])
    targets = [c for c, _ in candidates]
    maps, tie_breaks = short_search(stack, targets, images, labels, choice)
    labels = check_labels(images, labels, "baseline").to(images.device)
    scores = []
    for i, target in enumerate(targets):
        pattern = top_k_pattern(maps[i], stack[i], 0.05, tie_break=tie_breaks[i])
        scores.append(
            share_predicted(
                model,
                images[labels != target],
                target,
                transform=pattern.stamp,
                additional_forward_args=choice.additional_forward_args,
                who=_WHO,
            )
        )
    picked = []
    for c in classes:
        rows = [i for i, t in enumerate(targets) if t == c]
        picked.append(stack[max(rows, key=lambda i: scores[i])])
    return torch.stack(picked)

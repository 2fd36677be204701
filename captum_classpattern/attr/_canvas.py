"""Choosing the canvas: the image of class c whose pixels the pattern is taken from."""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Iterable, Optional, Sequence, Union

from torch import Tensor

from ._candidates import CanvasChoice, choose_canvases
from ._class_pattern import short_search


def select_canvases(
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
    additional_forward_args: Any = None,
) -> Tensor:
    """Pick one canvas per class from that class's own images.

    Args:
        model: the classifier.
        images: labelled images (a tensor with ``labels``, or an iterable of
            ``(images, labels)``).
        labels: labels of a tensor of images.
        classes: the classes to pick canvases for (int class indices).
        strategy: ``"index"`` (the ``index``-th image of the class, as the paper's code
            does), ``"confident"`` (the image classified as the class with the highest
            probability) or ``"best_of_n"`` (the ``n`` most confident images each get a
            short batched search of ``search_steps`` steps on ``images``; the canvas whose
            5% pattern flips most of them wins).
        index: the position used by ``"index"``.
        n: the number of candidates of ``"best_of_n"``.
        seed: seeds the short searches.
        search_steps: length of each short search.
        additional_forward_args: passed unchanged after the images to every model call,
            as in :meth:`ClassPattern.attribute <captum_classpattern.attr.ClassPattern.attribute>`.

    Returns:
        len(classes) x C x H x W canvases.

    Raises:
        ValueError: unknown strategy, bad settings, a class with no (or too few) images,
            or a model that fails on the images.
        TypeError: classes or labels that are not integer class indices.

    Example:
        >>> canvases = select_canvases(model, images, labels, classes=[0, 1, 2], strategy="confident")
    """
    choice = CanvasChoice(strategy, index, n, seed, search_steps, additional_forward_args)
    return choose_canvases(model, images, labels, classes, choice, partial(short_search, model))

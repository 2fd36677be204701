"""The scan's reference models: each one's tables of the suspect's searches, from a model or its scan."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, List, Sequence, Union

from torch import Tensor

from .._utils import evaluation_mode, module_device, num_classes_of
from ._blend_probe import BlendTable
from ._checks import check_reference_scan
from ._scan_result import ScanResult
from ._scan_scores import PowerTable
from ._settings import ScanSettings

Reference = Union[Callable, ScanResult]
"""A reference model, or the :class:`ScanResult` of a scan of one."""


@dataclass
class ReferenceTables:
    """The references' tables: top-k powers, the blend and warp probes' (when they ran), class accuracies.

    A reference scan recorded before class accuracies were measured adds an empty list to
    ``accuracy`` (the accuracy check then does not run).
    """

    patterns: List[PowerTable] = field(default_factory=list)
    blend: List[BlendTable] = field(default_factory=list)
    warp: List[BlendTable] = field(default_factory=list)
    accuracy: List[List[float]] = field(default_factory=list)

    def add(self, result: ScanResult) -> None:
        """Keep one reference scan's tables."""
        self.accuracy.append(list(result.class_accuracy))
        self.patterns.append(result.table)
        if result.blend is not None:
            self.blend.append(result.blend.table)
        if result.warp is not None:
            self.warp.append(result.warp.table)


def as_references(reference: Union[Reference, Sequence[Reference], None]) -> List[Reference]:
    """The references as a list, each a model or a :class:`ScanResult`."""
    if reference is None:
        return []
    items: List[Any] = list(reference) if isinstance(reference, (list, tuple)) else [reference]
    if not items:
        raise ValueError("reference is an empty list: pass None to scan without a reference.")
    for item in items:
        if not (isinstance(item, ScanResult) or callable(item)):
            raise TypeError(
                "reference must be a model (a callable returning logits), the ScanResult of a scan of one, "
                f"or a list of them, got {type(item).__name__}."
            )
    return items


def reference_tables(
    references: List[Reference],
    run: Callable,
    settings: ScanSettings,
    model: Callable,
    classes: List[int],
    images: Tensor,
    max_eval: int,
) -> ReferenceTables:
    """The tables of the suspect's searches on each reference (models are scanned with ``run``).

    Args:
        references: reference models or their :class:`ScanResult` s.
        run: scans one reference model the suspect's way.
        settings: the suspect scan's settings (a reference's result must match them).
        model: the suspect, for its number of classes.
        classes: the scanned classes.
        images: the search images (their size and device).
        max_eval: the suspect scan's held-out images per class (a reference's result must match).

    Returns:
        The :class:`ReferenceTables`.

    Raises:
        ValueError: a reference on another device, with another number of classes, or
            scanned otherwise.
    """
    tables = ReferenceTables()
    probes = (bool(settings.blend_steps), bool(settings.warp_steps))
    num_classes = None
    for position, item in enumerate(references):
        name = f"reference {position}"
        if isinstance(item, ScanResult):
            check_reference_scan(item, name, classes, images.shape[-2:], settings, probes, max_eval)
            tables.add(item)
            continue
        device = module_device(item)
        if device is not None and device != images.device:
            raise ValueError(
                f"{name} is on {device} but the images are on {images.device}: "
                f"move it with .to({str(images.device)!r})."
            )
        if num_classes is None:
            num_classes = num_classes_of(model, images[:1])
        with evaluation_mode(item, "scan reference"):
            count = num_classes_of(item, images[:1], who=name)
        if count != num_classes:
            raise ValueError(
                f"{name} has {count} output classes but the model has {num_classes}: a reference must be "
                "trained on the same task."
            )
        try:
            result = run(item)
        except ValueError as error:
            raise ValueError(f"{name}: {error}") from error
        tables.add(result)
    return tables

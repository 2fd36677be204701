"""The checks :func:`~captum_classpattern.pipeline.search_classes` makes on its arguments before any work."""

from __future__ import annotations

import os
from typing import Any, Optional, Tuple, Union

import torch

from .._utils import check_positive_int
from ..attr import ImageStream
from ..data import Split
from ._budget import PowerSample
from ._checkpoint import check_checkpoint_folder

Source = Union[Split, ImageStream]


def check_sources(search: Any, held_out: Any) -> Tuple[Source, Union[Split, PowerSample]]:
    """Refuse data of another type; a held-out stream becomes a :class:`PowerSample` of all its images."""
    if not isinstance(search, (Split, ImageStream)):
        raise TypeError(f"search must be a Split or an ImageStream, got {type(search).__name__}.")
    if isinstance(held_out, ImageStream):
        held_out = PowerSample(held_out)
    if not isinstance(held_out, (Split, PowerSample)):
        raise TypeError(f"held_out must be a Split, an ImageStream or a PowerSample, got {type(held_out).__name__}.")
    return search, held_out


def refuse_meta(model: Any, search: Source, held_out: Union[Split, PowerSample]) -> None:
    """Refuse a model or a Split on the meta device (shapes only), which would fail deep inside the search."""
    if isinstance(model, torch.nn.Module) and any(p.device.type == "meta" for p in model.parameters()):
        raise ValueError(
            "model is on the meta device (shapes only, no weights): materialise it first, e.g. "
            "model.to_empty(device='cpu') followed by model.load_state_dict(...)."
        )
    data = held_out.data if isinstance(held_out, PowerSample) else held_out
    for name, split in (("search", search), ("held_out", data)):
        if isinstance(split, Split) and split.images.device.type == "meta":
            raise ValueError(f"{name} images are on the meta device (shapes only, no values): load the images.")


def check_chunking(
    chunk_size: Optional[int], checkpoint_dir: Union[str, os.PathLike, None], resume: bool
) -> Optional[int]:
    """Check the chunk size and the checkpoint folder, and refuse ``resume`` without one; returns the chunk size."""
    if chunk_size is not None:
        chunk_size = check_positive_int(chunk_size, "chunk_size")
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs the checkpoint_dir of the run to resume.")
    if checkpoint_dir is not None:
        check_checkpoint_folder(checkpoint_dir)
    return chunk_size

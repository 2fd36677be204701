"""How a search calls the model (not how the map is optimised): call size, precision, memory format."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

import numpy as np
import torch

from .._utils import Replaceable, refuse_both

_AUTOCAST_DTYPES = (torch.bfloat16, torch.float16)


@dataclass(frozen=True)
class ForwardSettings(Replaceable):
    """How :meth:`~captum_classpattern.ClassPattern.attribute` calls the model; none changes the map's optimisation.

    Attributes:
        max_forward_batch: split each step's composites into model calls of at most this
            many images (gradients are accumulated, the result is unchanged); bounds memory
            when many canvases are searched at once (default ``None``: one call).
        autocast_dtype: run the model under :class:`torch.autocast` with this dtype
            (``torch.bfloat16`` or ``torch.float16``), e.g. for speed on a GPU with tensor
            cores. The map, its update and the loss stay in float32. Off by default: it
            changes the numbers slightly, and on most CPUs it is slower.
        channels_last: hand the composites to the model in ``channels_last`` memory format,
            which convolutions on recent GPUs run faster. The model is not converted (it is
            the caller's): convert it yourself with
            ``model.to(memory_format=torch.channels_last)`` for the full effect.

    Raises:
        ValueError: a non-positive ``max_forward_batch`` or another autocast dtype.
        TypeError: an ``autocast_dtype`` that is not a ``torch.dtype``, or a
            ``channels_last`` that is not a bool.

    Example:
        >>> gpu = ForwardSettings(autocast_dtype=torch.bfloat16, channels_last=True)
        >>> maps = ClassPattern(model).attribute(canvases, target=3, baselines=images, forward_settings=gpu)
    """

    max_forward_batch: Optional[int] = None
    autocast_dtype: Optional[torch.dtype] = None
    channels_last: bool = False

    def __post_init__(self) -> None:
        batch = self.max_forward_batch
        if batch is not None and (
            isinstance(batch, (bool, np.bool_)) or not isinstance(batch, (int, np.integer)) or batch < 1
        ):
            raise ValueError(f"max_forward_batch must be a positive int or None, got {batch!r}.")
        if self.autocast_dtype is not None:
            if not isinstance(self.autocast_dtype, torch.dtype):
                raise TypeError(
                    f"autocast_dtype must be a torch.dtype such as torch.bfloat16, got {self.autocast_dtype!r}."
                )
            if self.autocast_dtype not in _AUTOCAST_DTYPES:
                raise ValueError(f"autocast_dtype must be torch.bfloat16 or torch.float16, got {self.autocast_dtype}.")
        if not isinstance(self.channels_last, bool):
            raise TypeError(f"channels_last must be a bool, got {type(self.channels_last).__name__}.")
        object.__setattr__(self, "max_forward_batch", None if batch is None else int(batch))


OLDER_FORWARD_KEYWORDS = ("max_forward_batch", "autocast_dtype", "channels_last")
"""``ClassPattern.attribute``'s keywords before they were grouped into ``forward_settings``."""


def fold_forward_keywords(older: Dict[str, Any], arguments: Dict[str, Any]) -> None:
    """Move ``attribute``'s older keywords into ``forward_settings``.

    Raises:
        TypeError: given both ways.
    """
    refuse_both(older, arguments, OLDER_FORWARD_KEYWORDS, "forward_settings")
    arguments["forward_settings"] = ForwardSettings(**older)

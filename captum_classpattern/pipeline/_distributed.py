"""Searching classes on several processes with :mod:`torch.distributed` (e.g. under ``torchrun``).

The classes are independent (each canvas has its own seeded stream of search images), so
they are split between the processes ("ranks"), each rank searches and measures its own
share, and the per-class results are gathered. The gathered result is the one a single
process would compute with the same seed.

:func:`~captum_classpattern.pipeline.search_classes` does all of this by itself: launch a
script that calls it with ``torchrun --nproc-per-node N script.py`` and nothing else
changes. The process group is set up from the environment ``torchrun`` provides when
none exists yet: NCCL for models on CUDA, gloo otherwise.

Example:
    >>> from captum_classpattern.pipeline import init_distributed, is_main_process
    >>> init_distributed()          # a no-op in a single process
    False
    >>> is_main_process()           # only this rank prints and writes files
    True
"""

from __future__ import annotations

import atexit
import contextlib
import os
from typing import Any, Iterator, List, Optional, Sequence, Tuple, TypeVar, Union

import torch
import torch.distributed as dist

Item = TypeVar("Item")

_ENVIRONMENT = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE")


def _initialised() -> bool:
    return dist.is_available() and dist.is_initialized()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"the environment variable {name} must be an integer, got {value!r}.") from None


def launched_with_several_processes() -> bool:
    """Whether the environment says this is one of several processes (``WORLD_SIZE > 1``)."""
    return _env_int("WORLD_SIZE", 1) > 1


def world() -> Tuple[int, int]:
    """``(rank, world_size)`` of this process.

    From the initialised default process group if there is one, else from the
    ``RANK``/``WORLD_SIZE`` environment variables ``torchrun`` sets, else ``(0, 1)``.
    """
    if _initialised():
        return dist.get_rank(), dist.get_world_size()
    return _env_int("RANK", 0), _env_int("WORLD_SIZE", 1)


def is_main_process() -> bool:
    """Whether this process is rank 0, the one that prints and writes files."""
    return world()[0] == 0


def local_device(device: Union[str, torch.device]) -> torch.device:
    """The device this process should use for a requested ``device``.

    Under ``torchrun`` a bare ``"cuda"`` becomes ``cuda:LOCAL_RANK``, so that each
    process on a machine gets its own GPU; anything else is returned unchanged.
    """
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and launched_with_several_processes():
        return torch.device("cuda", _env_int("LOCAL_RANK", 0))
    return device


def init_distributed(device: Union[str, torch.device, None] = None) -> bool:
    """Set up the default process group when launched on several processes and none exists.

    Does nothing in a single process (``WORLD_SIZE`` unset or 1) or when a group already
    exists (yours is used as it is). The backend is NCCL when ``device`` is a CUDA device
    (which also becomes the current CUDA device) and gloo otherwise. A group created here
    is destroyed when the interpreter exits.

    Args:
        device: the device the model lives on (default: the CPU).

    Returns:
        Whether there is more than one process, i.e. work will be sharded.

    Raises:
        RuntimeError: ``WORLD_SIZE > 1`` but the variables ``torchrun`` sets
            (``MASTER_ADDR``, ``MASTER_PORT``, ``RANK``) are missing, or this build of
            PyTorch has no :mod:`torch.distributed`.
    """
    if _initialised():
        return dist.get_world_size() > 1
    if not launched_with_several_processes():
        return False
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed.")
    missing = [name for name in _ENVIRONMENT if not os.environ.get(name)]
    if missing:
        raise RuntimeError(
            f"WORLD_SIZE > 1 but {', '.join(missing)} not set: launch with torchrun, which sets them, "
            "or initialise torch.distributed yourself."
        )
    device = torch.device("cpu" if device is None else device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, init_method="env://")
    atexit.register(_destroy_own_group)
    return dist.get_world_size() > 1


def _destroy_own_group() -> None:
    if _initialised():
        dist.destroy_process_group()


def shard(items: Sequence[Item], rank: Optional[int] = None, world_size: Optional[int] = None) -> List[Item]:
    """This rank's share of ``items``: contiguous blocks, the first ranks one item longer.

    Concatenating the shares in rank order gives ``items`` back, so gathered results keep
    the caller's order. A rank may get nothing when there are more ranks than items.

    Args:
        items: the work to split (e.g. the classes to search).
        rank: this process's rank (default: :func:`world`).
        world_size: the number of processes (default: :func:`world`).

    Raises:
        ValueError: ``rank`` outside ``0..world_size - 1`` or ``world_size < 1``.

    Example:
        >>> shard(list(range(10)), 1, 3)
        [4, 5, 6]
    """
    default_rank, default_size = world()
    rank = default_rank if rank is None else rank
    world_size = default_size if world_size is None else world_size
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank must lie in 0..world_size - 1 (world_size >= 1), got rank {rank} of {world_size}.")
    items = list(items)
    size, extra = divmod(len(items), world_size)
    start = rank * size + min(rank, extra)
    return items[start : start + size + (1 if rank < extra else 0)]


def all_gather(obj: Any) -> List[Any]:
    """Every rank's ``obj`` (picklable; tensors best on the CPU), in rank order, on every rank.

    In a single process this is ``[obj]``.
    """
    if not _initialised() or dist.get_world_size() == 1:
        return [obj]
    gathered: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier() -> None:
    """Wait for every rank (a no-op in a single process)."""
    if _initialised() and dist.get_world_size() > 1:
        dist.barrier()


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """Run the body on rank 0 first and on the other ranks after it has finished.

    For work whose result the others can reuse, e.g. training a model that gets cached:
    the other ranks then load the cache instead of training again.
    """
    first = is_main_process()
    if not first:
        barrier()
        yield
        return
    try:
        yield
    finally:  # also on failure, so that the other ranks are not left waiting
        barrier()

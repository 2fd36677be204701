"""The per-batch hook of :func:`train_with_recipe`: attacks that poison inside the training loop.

Some backdoor attacks cannot be written as a poisoned copy of the training set: WaNet draws
fresh noise for its "cross" items in every batch, and the input-aware attack (IAD) trains a
trigger generator together with the classifier. BackdoorBench poisons such attacks batch by
batch, after the batch is drawn and augmented; :class:`BatchPoisoning` is that step's
interface. The older ``perturb(model, images, labels) -> images`` callables (adversarial
training) keep working: they are adapted to the same interface.
"""

from __future__ import annotations

from typing import Any, Dict, NamedTuple, Optional, Protocol, Union, runtime_checkable

import torch
from torch import Tensor, nn

from ._train import Perturb


class PoisonedBatch(NamedTuple):
    """What a :class:`BatchPoisoning` returns for one batch: ``(images, labels, extra_loss)``."""

    #: The batch the classifier is trained on (a new tensor where any image changed).
    images: Tensor
    #: Its labels (a new tensor where any label changed).
    labels: Tensor
    #: A scalar added to the classifier's loss before the backward pass (e.g. IAD's
    #: diversity loss, which trains its generator), or ``None``.
    extra_loss: Optional[Tensor] = None


@runtime_checkable
class BatchPoisoning(Protocol):
    """A per-batch poisoning step for :func:`train_with_recipe` (pass it as ``perturb``).

    Only :meth:`poison_batch` is required. These methods are optional and used when present:

    * ``prepare(model, images, labels, generator) -> None``: called once before the first
      epoch of a fresh run (not on resume, where the state comes from the checkpoint), with
      the whole training set, e.g. to pre-train IAD's mask generator.
    * ``after_backward() -> None``: called after each classifier step (the classifier's
      backward pass has filled the gradients of any network the hook trains jointly).
    * ``state_dict() -> dict`` and ``load_state_dict(state) -> None``: the hook's state (e.g.
      generators and their optimiser), written into every epoch checkpoint and restored on
      resume, so a resumed run takes the same steps as one never stopped. The state must
      load with ``torch.load(weights_only=True)``: tensors, numbers, strings, lists, dicts.

    The hook's ``repr`` is part of the checkpoint's settings: a checkpoint written with one
    hook refuses to resume with another, so give it a ``repr`` that names every setting.
    """

    def poison_batch(
        self, model: nn.Module, images: Tensor, labels: Tensor, generator: torch.Generator
    ) -> PoisonedBatch:
        """Poison one augmented batch.

        Args:
            model: the classifier being trained (in its current mode).
            images: the augmented batch, N x C x H x W on the model's device (do not modify).
            labels: its labels.
            generator: a CPU generator seeded by the run's seed and epoch; draw every random
                choice from it (so a resumed run repeats them).

        Returns:
            A :class:`PoisonedBatch`.
        """
        ...  # pragma: no cover - interface


class _PerturbHook:
    """An old-style ``perturb(model, images, labels) -> images`` seen as a :class:`BatchPoisoning`."""

    def __init__(self, perturb: Perturb) -> None:
        self.perturb = perturb

    def poison_batch(
        self, model: nn.Module, images: Tensor, labels: Tensor, generator: torch.Generator
    ) -> PoisonedBatch:
        # The perturbation draws from the global RNG, seeded per epoch by the recipe, as before.
        return PoisonedBatch(self.perturb(model, images, labels), labels)


def as_batch_hook(perturb: Optional[Union[Perturb, BatchPoisoning]]) -> Optional[BatchPoisoning]:
    """The hook behind a ``perturb`` argument, or ``None`` for a clean run.

    Raises:
        TypeError: ``perturb`` is neither a :class:`BatchPoisoning` nor a callable.
    """
    if perturb is None or isinstance(perturb, BatchPoisoning):
        return perturb
    if not callable(perturb):
        raise TypeError(
            "perturb must be a BatchPoisoning (with a poison_batch method) or a callable "
            f"(model, images, labels) -> images, got {type(perturb).__name__}."
        )
    return _PerturbHook(perturb)


def poison(
    hook: BatchPoisoning, model: nn.Module, images: Tensor, labels: Tensor, generator: torch.Generator
) -> PoisonedBatch:
    """Run the hook on one batch and check what it returns.

    Raises:
        TypeError: the hook returned something other than a :class:`PoisonedBatch`.
        ValueError: the returned labels do not match the returned images.
    """
    out = hook.poison_batch(model, images, labels, generator)
    if not isinstance(out, PoisonedBatch):
        raise TypeError(f"{type(hook).__name__}.poison_batch must return a PoisonedBatch, got {type(out).__name__}.")
    if out.images.shape[0] != out.labels.shape[0]:
        raise ValueError(
            f"{type(hook).__name__}.poison_batch returned {out.labels.shape[0]} labels for "
            f"{out.images.shape[0]} images."
        )
    return out


def prepare(hook: Optional[BatchPoisoning], model: nn.Module, images: Tensor, labels: Tensor, seed: int) -> None:
    """Call the hook's optional ``prepare`` with a generator of its own seed stream."""
    method = getattr(hook, "prepare", None)
    if method is not None:
        method(model, images, labels, torch.Generator().manual_seed(hook_seed(seed, -1)))


def after_backward(hook: Optional[BatchPoisoning]) -> None:
    """Call the hook's optional ``after_backward``."""
    method = getattr(hook, "after_backward", None)
    if method is not None:
        method()


def hook_state(hook: Optional[BatchPoisoning]) -> Optional[Dict[str, Any]]:
    """The hook's optional ``state_dict()``, or ``None``."""
    method = getattr(hook, "state_dict", None)
    return None if method is None else method()


def load_hook_state(hook: Optional[BatchPoisoning], state: Optional[Dict[str, Any]], path: str) -> None:
    """Restore the hook's state from a checkpoint.

    Raises:
        ValueError: the hook keeps a state but the checkpoint holds none.
    """
    method = getattr(hook, "load_state_dict", None)
    if method is None:
        return
    if state is None:
        raise ValueError(
            f"the checkpoint {path} holds no state for {type(hook).__name__}; resume with the hook that wrote it, "
            "or give another checkpoint path to start afresh."
        )
    method(state)


def hook_seed(seed: int, epoch: int) -> int:
    """The seed of the hook's generator for ``epoch``: a stream apart from the batch order and augmentation.

    Keeping it apart means a poisoned run draws the same batches, crops and flips as the
    clean run of the same seed.
    """
    return (1 << 40) + seed * 100_003 + epoch

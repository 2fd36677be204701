"""The input-aware dynamic backdoor (IAD; Nguyen & Tran, NeurIPS 2020): a trigger generated from each input.

Two small encoder-decoders (:class:`TriggerGenerator`) make the trigger: a mask generator,
pre-trained alone so its masks are sparse (density loss) and differ between images
(diversity loss), and a pattern generator, trained together with the classifier. A
triggered image is ``x + (pattern(x) - x) * mask(x)``. While the classifier trains, each
batch gets backdoor items (their own trigger, relabelled to the target), cross items (the
trigger generated from another image, labels kept, so a trigger only works on the image
it was made for) and the diversity loss on the patterns, added to the classifier's loss.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._utils import Replaceable, check_positive_int
from ..training import PoisonedBatch
from ._checks import check_number
from ._input_aware_nets import TriggerGenerator, diversity_loss, threshold
from ._per_batch import backdoor_labels, batch_count, check_target
from ._triggers import Trigger, as_batch

_MASK_MILESTONES = (0.4, 0.8)  # BackdoorBench drops the mask's learning rate tenfold after epochs 10 and 20 of 25


@dataclass(frozen=True)
class InputAwareSettings(Replaceable):
    """The input-aware attack's settings; the defaults are BackdoorBench's ``inputaware`` for CIFAR-10.

    Attributes:
        rate: share of each batch made backdoor items (relabelled), in [0, 1] (0.1).
        cross_rate: share of each batch made cross items (labels kept), in [0, 1) (0.1;
            BackdoorBench uses as many cross items as backdoor items).
        lambda_div: weight of the diversity loss (1).
        lambda_norm: weight of the mask's density loss in its pre-training (100).
        mask_density: the mask share above which the density loss penalises (0.032).
        mask_epochs: pre-training epochs of the mask generator over the training images
            (25); its learning rate drops tenfold after 40% and 80% of them.
        mask_batch_size: images per step of that pre-training (128).
        lr: Adam's learning rate for both generators, betas (0.5, 0.9) (0.01).
        width: channels of the generators' first stage (BackdoorBench: 32; here 8, a
            sixteenth of the computation, so the attack trains on a CPU).
        depth: the generators' down- and upsampling stages (3 for 32 x 32 images).

    Raises:
        ValueError: a setting out of range.
    """

    rate: float = 0.1
    cross_rate: float = 0.1
    lambda_div: float = 1.0
    lambda_norm: float = 100.0
    mask_density: float = 0.032
    mask_epochs: int = 25
    mask_batch_size: int = 128
    lr: float = 0.01
    width: int = 8
    depth: int = 3

    def __post_init__(self) -> None:
        check_number(self.rate, "rate", 0.0, 1.0)
        check_number(self.cross_rate, "cross_rate", 0.0, 1.0, high_open=True)
        if self.rate + self.cross_rate > 1.0 + 1e-9:
            raise ValueError(f"rate + cross_rate = {self.rate + self.cross_rate:g} exceeds the batch; lower one.")
        check_number(self.lambda_div, "lambda_div", 0.0, float("inf"))
        check_number(self.lambda_norm, "lambda_norm", 0.0, float("inf"))
        check_number(self.mask_density, "mask_density", 0.0, 1.0)
        check_number(self.lr, "lr", 0.0, float("inf"), low_open=True)
        if isinstance(self.mask_epochs, bool) or not isinstance(self.mask_epochs, int) or self.mask_epochs < 0:
            raise ValueError(f"mask_epochs must be an int >= 0, got {self.mask_epochs!r}.")
        for name in ("mask_batch_size", "width", "depth"):
            check_positive_int(getattr(self, name), name)


def _check_images(images: Tensor, channels: int, depth: int) -> None:
    batch, _ = as_batch(images)
    if batch.shape[1] != channels:
        raise ValueError(f"the generators take {channels}-channel images, got {batch.shape[1]} channels.")
    side = 2**depth
    if batch.shape[-2] % side or batch.shape[-1] % side:
        raise ValueError(
            f"the generators need image sides divisible by {side} (2 ** depth), got {tuple(batch.shape[-2:])}; "
            "resize the images or lower the depth."
        )


def _stamp(images: Tensor, patterns: Tensor, masks: Tensor) -> Tensor:
    return images + (patterns - images) * masks


class InputAwareTrigger(Trigger):
    """The input-aware trigger after training: each image stamped with its own generated pattern and mask.

    ``x' = x + (pattern(x) - x) * mask(x)``, with both generators in eval mode. It is the
    one trigger here that depends on the input, so :meth:`mask` cannot say which pixels
    change without the image: it returns the whole image; :meth:`masks` gives each image's
    own (soft, nearly binary) mask.

    What the defender sees: on each image a sparse set of pixels (about ``mask_density``
    of them) replaced by a generated pattern, in different places on different images.

    Args:
        pattern_generator: the trained pattern generator (copied; the copy is frozen).
        mask_generator: the trained mask generator (copied; the copy is frozen).

    Raises:
        TypeError: a generator that is not a :class:`torch.nn.Module`.

    Example:
        >>> trigger = poisoning.trigger                  # after train_with_recipe(..., perturb=poisoning)
        >>> backdoor_metrics(model, test_images, test_labels, trigger, target=0)
    """

    def __init__(self, pattern_generator: nn.Module, mask_generator: nn.Module) -> None:
        for name, net in (("pattern_generator", pattern_generator), ("mask_generator", mask_generator)):
            if not isinstance(net, nn.Module):
                raise TypeError(f"{name} must be a torch.nn.Module, got {type(net).__name__}.")
        self.pattern_generator = copy.deepcopy(pattern_generator).eval().requires_grad_(False)
        self.mask_generator = copy.deepcopy(mask_generator).eval().requires_grad_(False)

    def _maps(self, batch: Tensor) -> tuple:
        device = batch.device
        self.pattern_generator.to(device)
        self.mask_generator.to(device)
        with torch.no_grad():
            return self.pattern_generator(batch).to(batch.dtype), threshold(self.mask_generator(batch)).to(batch.dtype)

    def masks(self, images: Tensor) -> Tensor:
        """Each image's mask, N x 1 x H x W in (0, 1) (or 1 x H x W for one image).

        Args:
            images: C x H x W or N x C x H x W images in [0, 1].
        """
        batch, single = as_batch(images)
        masks = self._maps(batch)[1]
        return masks[0] if single else masks

    def apply(self, images: Tensor) -> Tensor:
        """Stamp each image with its own pattern under its own mask.

        Args:
            images: C x H x W or N x C x H x W images in [0, 1].

        Returns:
            A new tensor of the same shape, dtype and device.
        """
        batch, single = as_batch(images)
        patterns, masks = self._maps(batch)
        out = _stamp(batch, patterns, masks)
        return out[0] if single else out

    def state_dict(self) -> Dict[str, Any]:
        """Both generators' weights (to save the trigger beside its model; see :meth:`from_state_dict`)."""
        return {"pattern": self.pattern_generator.state_dict(), "mask": self.mask_generator.state_dict()}

    @classmethod
    def from_state_dict(
        cls, state: Dict[str, Any], settings: InputAwareSettings = InputAwareSettings(), channels: int = 3
    ) -> InputAwareTrigger:
        """Rebuild a trigger saved with :meth:`state_dict`.

        Args:
            state: what :meth:`state_dict` returned (e.g. read back with ``torch.load``).
            settings: the settings it was trained with (their ``width`` and ``depth``).
            channels: the images' channels.

        Returns:
            The trigger.

        Raises:
            RuntimeError: weights that do not fit the generators of these settings.
        """
        pattern = TriggerGenerator(channels, channels, settings.width, settings.depth)
        mask = TriggerGenerator(channels, 1, settings.width, settings.depth)
        pattern.load_state_dict(state["pattern"])
        mask.load_state_dict(state["mask"])
        return cls(pattern, mask)

    def __repr__(self) -> str:
        return f"InputAwareTrigger({type(self.pattern_generator).__name__}, {type(self.mask_generator).__name__})"


class InputAwarePoisoning:
    """The input-aware attack while training: pass it as ``perturb`` to ``train_with_recipe``.

    Before the first epoch (its ``prepare`` step, skipped on resume) the mask generator is
    pre-trained on the training images for ``mask_epochs`` with ``lambda_norm *`` density
    loss ``+ lambda_div *`` diversity loss, then frozen. In every augmented batch of ``n``
    items, ``floor(rate * n)`` random items get their own trigger and the target label,
    ``floor(cross_rate * n)`` others get the trigger of yet another image of the batch and
    keep their labels, and ``lambda_div *`` the diversity loss of the patterns is added to
    the classifier's loss; after each step the pattern generator takes an Adam step. Both
    generators and the optimiser are in the checkpoint (a resumed run is bit-identical).

    What the defender sees: a clean training set; in the batches, items with a sparse
    generated pattern, a tenth relabelled to the target, a tenth with a foreign pattern
    and their true labels.

    Args:
        target: the target class (all-to-one), or ``"all-to-all"`` (``y`` becomes
            ``(y + 1) % num_classes``).
        settings: an :class:`InputAwareSettings` (BackdoorBench's defaults).
        channels: the images' channels.
        num_classes: the number of classes; needed for all-to-all.
        seed: seeds the generators' initial weights.
        show_progress: show a tqdm progress bar while the mask generator is pre-trained
            (before the classifier's first epoch; each of its epochs costs about one
            classifier epoch).

    Attributes:
        pattern_generator: the :class:`TriggerGenerator` of patterns (trained jointly).
        mask_generator: the :class:`TriggerGenerator` of masks (pre-trained, then frozen).

    Raises:
        TypeError: settings that are not an :class:`InputAwareSettings`.
        ValueError: a bad target or channel count; images whose size the generators
            cannot take (sides divisible by ``2 ** depth``).

    Example:
        >>> poisoning = InputAwarePoisoning(target=0, settings=InputAwareSettings(mask_epochs=5))
        >>> run = train_with_recipe(model, images, labels, recipe, perturb=poisoning, checkpoint="iad.pt")
        >>> backdoor_metrics(run.model, test_images, test_labels, poisoning.trigger, target=0)
    """

    def __init__(
        self,
        target: Union[int, str] = 0,
        settings: InputAwareSettings = InputAwareSettings(),
        *,
        channels: int = 3,
        num_classes: Optional[int] = None,
        seed: int = 0,
        show_progress: bool = False,
    ) -> None:
        if not isinstance(settings, InputAwareSettings):
            raise TypeError(f"settings must be an InputAwareSettings, got {type(settings).__name__}.")
        self.target, self.num_classes = check_target(target, num_classes)
        self.settings = settings
        self.channels = check_positive_int(channels, "channels")
        self.seed = int(seed)
        self.show_progress = bool(show_progress)
        with torch.random.fork_rng(devices=[]):  # seeded initial weights, the caller's RNG untouched
            torch.manual_seed(self.seed)
            self.pattern_generator = TriggerGenerator(self.channels, self.channels, settings.width, settings.depth)
            self.mask_generator = TriggerGenerator(self.channels, 1, settings.width, settings.depth)
        self.optimizer = torch.optim.Adam(self.pattern_generator.parameters(), lr=settings.lr, betas=(0.5, 0.9))
        self.mask_ready = False

    @property
    def trigger(self) -> InputAwareTrigger:
        """A frozen copy of the current generators as a test-time trigger (a new one at each access)."""
        return InputAwareTrigger(self.pattern_generator, self.mask_generator)

    def _to(self, device: torch.device) -> None:
        # In place: the parameters keep their identity, so the optimiser still holds them.
        self.pattern_generator.to(device)
        self.mask_generator.to(device)

    def prepare(self, model: nn.Module, images: Tensor, labels: Tensor, generator: torch.Generator) -> None:
        """Pre-train the mask generator on ``images`` (once: skipped when already done), then freeze it.

        Args:
            model: the classifier (its device is used).
            images: the training images, N x C x H x W in [0, 1].
            labels: their labels (unused: the masks do not depend on them).
            generator: the source of the batch orders.
        """
        if self.mask_ready:
            return
        _check_images(images, self.channels, self.settings.depth)
        self._to(next(model.parameters()).device)
        self._train_masks(images, generator, next(model.parameters()).device)
        self.mask_ready = True

    def _train_masks(self, images: Tensor, generator: torch.Generator, device: torch.device) -> None:
        settings, net = self.settings, self.mask_generator.train().requires_grad_(True)
        optimizer = torch.optim.Adam(net.parameters(), lr=settings.lr, betas=(0.5, 0.9))
        batches = -(-images.shape[0] // settings.mask_batch_size)
        progress = tqdm(
            total=settings.mask_epochs * batches, desc="IAD mask pre-training", disable=not self.show_progress
        )
        for epoch in range(settings.mask_epochs):
            passed = sum(epoch >= share * settings.mask_epochs for share in _MASK_MILESTONES)
            for group in optimizer.param_groups:
                group["lr"] = settings.lr * 0.1**passed
            first, second = (torch.randperm(images.shape[0], generator=generator) for _ in range(2))
            for rows, others in zip(first.split(settings.mask_batch_size), second.split(settings.mask_batch_size)):
                batch, other = images[rows].to(device), images[others].to(device)
                masks, other_masks = threshold(net(batch)), threshold(net(other))
                density = F.relu(masks - settings.mask_density).mean()
                diversity = diversity_loss(batch, other, masks, other_masks)
                loss = settings.lambda_norm * density + settings.lambda_div * diversity
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                progress.update()
        progress.close()
        net.eval().requires_grad_(False)

    def poison_batch(
        self, model: nn.Module, images: Tensor, labels: Tensor, generator: torch.Generator
    ) -> PoisonedBatch:
        """Add backdoor and cross items to the batch, and the patterns' diversity loss.

        Args:
            model: the classifier (unused).
            images: the augmented batch, N x C x H x W in [0, 1] (not modified).
            labels: its labels (not modified).
            generator: the source of the draws (which items, which other images).

        Returns:
            A :class:`~captum_classpattern.training.PoisonedBatch`; its images carry the
            pattern generator's gradient, its extra loss is the weighted diversity loss.
        """
        _check_images(images, self.channels, self.settings.depth)
        count = images.shape[0]
        poisoned = batch_count(self.settings.rate, count, generator)
        crossed = batch_count(self.settings.cross_rate, count, generator) if count > 1 else 0
        if poisoned + crossed == 0:
            return PoisonedBatch(images, labels)
        order = torch.randperm(count, generator=generator)
        chosen, cross = order[:poisoned], order[poisoned : poisoned + crossed]
        # Each cross item takes the trigger of the image `poisoned + crossed` places on in the order: another image.
        sources = order[(poisoned + crossed + torch.arange(crossed)) % count]
        chosen, cross, sources = (index.to(images.device) for index in (chosen, cross, sources))
        self._to(images.device)
        makers = torch.cat([images[chosen], images[sources]])
        patterns = self.pattern_generator.train()(makers)
        with torch.no_grad():
            masks = threshold(self.mask_generator.eval()(makers))
        stamped = torch.cat(
            [
                _stamp(images[chosen], patterns[:poisoned], masks[:poisoned]),
                _stamp(images[cross], patterns[poisoned:], masks[poisoned:]),
            ]
        )
        out = images.index_copy(0, torch.cat([chosen, cross]), stamped.to(images.dtype))
        new_labels = labels.clone()
        new_labels[chosen] = backdoor_labels(labels[chosen], self.target, self.num_classes)
        pairs = min(poisoned, crossed)
        extra = None
        if pairs and self.settings.lambda_div > 0:
            # As in the paper's code: the backdoor items against the cross items' sources.
            own, foreign = makers[:pairs], makers[poisoned : poisoned + pairs]
            divergence = diversity_loss(own, foreign, patterns[:pairs], patterns[poisoned : poisoned + pairs])
            extra = self.settings.lambda_div * divergence
        return PoisonedBatch(out, new_labels, extra)

    def after_backward(self) -> None:
        """Step the pattern generator with the gradients the classifier's loss gave it."""
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> Dict[str, Any]:
        """The generators, the pattern generator's optimiser, and whether the masks are trained."""
        return {
            "pattern": self.pattern_generator.state_dict(),
            "mask": self.mask_generator.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "mask_ready": self.mask_ready,
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (e.g. from a training checkpoint)."""
        self.pattern_generator.load_state_dict(state["pattern"])
        self.mask_generator.load_state_dict(state["mask"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.mask_ready = bool(state["mask_ready"])
        self.mask_generator.eval().requires_grad_(False)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in dataclasses.asdict(self.settings).items())
        return (
            f"InputAwarePoisoning(target={self.target!r}, settings=InputAwareSettings({fields}), "
            f"channels={self.channels}, num_classes={self.num_classes}, seed={self.seed})"
        )

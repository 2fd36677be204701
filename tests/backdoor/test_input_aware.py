"""The input-aware dynamic backdoor (IAD): generators, per-batch poisoning, resumable joint training."""

import pytest
import torch

from captum_classpattern.backdoor import (
    InputAwarePoisoning,
    InputAwareSettings,
    InputAwareTrigger,
    TriggerGenerator,
    backdoor_metrics,
)
from captum_classpattern.models import SmallCNN
from captum_classpattern.training import TrainingRecipe, train_with_recipe

TINY = InputAwareSettings(mask_epochs=1, mask_batch_size=16, width=2, depth=1)
RECIPE = TrainingRecipe(epochs=2, batch_size=16, peak_lr=0.05, crop_padding=1)


def _task(count=48, classes=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (count,), generator=generator)
    images = torch.rand(count, 3, 8, 8, generator=generator) * 0.3
    for c in range(classes):
        images[labels == c, c] += 0.6  # each class brightens its own channel
    return images, labels


def _model(seed=0):
    torch.manual_seed(seed)
    return SmallCNN(in_channels=3, num_classes=3, width=4)


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def _spread(maps):
    """Mean absolute difference between the maps of neighbouring images."""
    return float((maps - maps.roll(1, 0)).abs().mean())


def test_trained_triggers_differ_between_inputs():
    generator = torch.Generator().manual_seed(0)
    images, labels = torch.rand(16, 3, 8, 8, generator=generator), torch.randint(0, 3, (16,), generator=generator)
    settings = InputAwareSettings(rate=0.25, cross_rate=0.25, mask_epochs=4, mask_batch_size=8, width=4, depth=1)
    poisoning = InputAwarePoisoning(target=0, settings=settings)
    untrained = poisoning.trigger
    # Untrained, the generators give nearly every image the same pattern and mask.
    assert _spread(untrained.pattern_generator(images)) < 0.01 and _spread(untrained.masks(images)) < 0.01
    poisoning.prepare(_model(), images, labels, torch.Generator().manual_seed(0))
    for step in range(40):  # the diversity loss alone, as in training
        poisoning.poison_batch(None, images, labels, torch.Generator().manual_seed(step)).extra_loss.backward()
        poisoning.after_backward()
    trigger = poisoning.trigger
    assert _spread(trigger.masks(images)) > 0.03 and _spread(trigger.pattern_generator(images)) > 0.03
    # An image stamped with its own trigger differs from the image stamped with another's (a cross item).
    a, b = images[:1], images[1:2]
    foreign = a + (trigger.pattern_generator(b) - a) * trigger.masks(b)
    assert (trigger(a) - foreign).abs().max() > 0.05
    stamped = trigger(images)
    assert stamped.shape == images.shape and stamped.min() >= 0 and stamped.max() <= 1
    assert trigger.masks(images).shape == (16, 1, 8, 8) and trigger.mask(8, 8).all()  # no fixed mask
    assert torch.allclose(trigger(images[0]), stamped[0], atol=1e-6)


def test_each_batch_gets_backdoor_and_cross_items_at_exact_rates():
    images, labels = _task(count=40)
    labels = labels.clamp(min=1)  # no item of the target class 0, so every backdoor item changes label
    poisoning = InputAwarePoisoning(target=0, settings=TINY)
    kept = images.clone()
    out = poisoning.poison_batch(None, images, labels, torch.Generator().manual_seed(0))
    assert torch.equal(images, kept)
    relabelled = out.labels != labels
    assert int(relabelled.sum()) == 4 and (out.labels[relabelled] == 0).all()  # floor(0.1 * 40)
    changed = (out.images.detach() - images).abs().amax(dim=(1, 2, 3)) > 0
    assert int(changed.sum()) == 8 and changed[relabelled].all()  # and 4 cross items keep their labels
    # The cross items carry a trigger made from other images, not their own.
    cross = changed & ~relabelled
    assert not torch.allclose(out.images[cross].detach(), poisoning.trigger(images[cross]), atol=1e-4)
    # The diversity loss is a positive scalar that trains the pattern generator only.
    assert out.extra_loss.dim() == 0 and out.extra_loss > 0
    out.extra_loss.backward()
    assert all(p.grad is not None for p in poisoning.pattern_generator.parameters())
    assert all(p.grad is None for p in poisoning.mask_generator.parameters())


def test_all_to_all_moves_each_label_to_the_next_class():
    images, labels = _task(count=30)
    poisoning = InputAwarePoisoning("all-to-all", InputAwareSettings(rate=0.2, width=2, depth=1), num_classes=3)
    out = poisoning.poison_batch(None, images, labels, torch.Generator().manual_seed(0))
    moved = out.labels != labels
    assert int(moved.sum()) == 6 and torch.equal(out.labels[moved], (labels[moved] + 1) % 3)


class _KilledAfter(InputAwarePoisoning):
    """Lets ``steps`` batches through, then stops the run as a kill would (same repr: same settings)."""

    def __init__(self, steps, **kwargs):
        super().__init__(**kwargs)
        self.steps = steps

    def poison_batch(self, model, images, labels, generator):
        self.steps -= 1
        if self.steps < 0:
            raise KeyboardInterrupt
        return super().poison_batch(model, images, labels, generator)


def test_joint_training_checkpoints_and_resumes_bit_identically(tmp_path):
    images, labels = _task()
    whole_attack = InputAwarePoisoning(target=0, settings=TINY)
    whole = train_with_recipe(_model(), images, labels, RECIPE, perturb=whole_attack).model
    assert whole_attack.mask_ready
    checkpoint = str(tmp_path / "iad.pt")
    with pytest.raises(KeyboardInterrupt):  # killed in the second epoch (3 steps per epoch)
        train_with_recipe(
            _model(), images, labels, RECIPE, perturb=_KilledAfter(4, settings=TINY), checkpoint=checkpoint
        )
    resumed_attack = InputAwarePoisoning(target=0, settings=TINY, seed=0)
    resumed = train_with_recipe(_model(seed=7), images, labels, RECIPE, perturb=resumed_attack, checkpoint=checkpoint)
    assert resumed.resumed_from == 1
    assert _same(whole, resumed.model)
    assert _same(whole_attack.pattern_generator, resumed_attack.pattern_generator)
    assert _same(whole_attack.mask_generator, resumed_attack.mask_generator)
    other = InputAwarePoisoning(target=1, settings=TINY)
    with pytest.raises(ValueError, match="other settings.*perturb"):
        train_with_recipe(_model(), images, labels, RECIPE, perturb=other, checkpoint=checkpoint)
    # The trigger of the trained attack measures the backdoor and survives a save.
    trigger = resumed_attack.trigger
    metrics = backdoor_metrics(resumed.model, images, labels, trigger, target=0)
    assert 0.0 <= metrics.attack_success_rate <= 1.0
    again = InputAwareTrigger.from_state_dict(trigger.state_dict(), settings=TINY)
    assert torch.equal(again(images), trigger(images))


def test_the_trigger_copies_the_generators():
    pattern, mask = TriggerGenerator(3, 3, 2, 1), TriggerGenerator(3, 1, 2, 1)
    trigger = InputAwareTrigger(pattern.train(), mask.train())
    assert pattern.training and all(p.requires_grad for p in pattern.parameters())  # the caller's nets untouched
    assert not trigger.pattern_generator.training


@pytest.mark.parametrize(
    "build, error, message",
    [
        (lambda: InputAwareSettings(rate=1.5), ValueError, "rate"),
        (lambda: InputAwareSettings(rate=0.6, cross_rate=0.6), ValueError, "exceeds the batch"),
        (lambda: InputAwareSettings(mask_epochs=-1), ValueError, "mask_epochs"),
        (lambda: InputAwareSettings(width=0), ValueError, "width"),
        (lambda: InputAwarePoisoning(settings={"rate": 0.1}), TypeError, "InputAwareSettings"),
        (lambda: InputAwarePoisoning(target="some"), ValueError, "all-to-all"),
        (lambda: InputAwarePoisoning(target="all-to-all"), ValueError, "num_classes"),
        (lambda: InputAwarePoisoning(channels=0), ValueError, "channels"),
        (lambda: InputAwareTrigger("net", TriggerGenerator(3, 1, 2, 1)), TypeError, "pattern_generator"),
    ],
)
def test_bad_arguments_are_refused(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_images_the_generators_cannot_take_are_refused():
    poisoning = InputAwarePoisoning(settings=InputAwareSettings(width=2, depth=2))
    labels = torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="divisible by 4"):
        poisoning.poison_batch(None, torch.rand(4, 3, 6, 6), labels, torch.Generator())
    with pytest.raises(ValueError, match="3-channel"):
        poisoning.poison_batch(None, torch.rand(4, 1, 8, 8), labels, torch.Generator())


def test_mask_pre_training_shows_progress_when_asked_and_trains_the_same(capsys):
    images, labels = _task()
    quiet, shown = (InputAwarePoisoning(settings=TINY, show_progress=flag) for flag in (False, True))
    quiet.prepare(_model(), images, labels, torch.Generator().manual_seed(0))
    assert "IAD mask pre-training" not in capsys.readouterr().err
    shown.prepare(_model(), images, labels, torch.Generator().manual_seed(0))
    assert "IAD mask pre-training" in capsys.readouterr().err
    assert _same(quiet.mask_generator, shown.mask_generator)

"""The per-batch poisoning hook of train_with_recipe: labels, extra loss, joint training, checkpoints."""

import pytest
import torch

from captum_classpattern.models import SmallCNN
from captum_classpattern.training import BatchPoisoning, PoisonedBatch, TrainingRecipe, train_with_recipe

RECIPE = TrainingRecipe(epochs=2, batch_size=16, peak_lr=0.05, crop_padding=1)


def _task(count=48, seed=0):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (count,), generator=generator)
    images = torch.rand(count, 3, 8, 8, generator=generator) * 0.3
    images[labels == 1, :, :4] += 0.6
    return images, labels


def _model(seed=0):
    torch.manual_seed(seed)
    return SmallCNN(in_channels=3, num_classes=2, width=4)


def _same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


class _Joint:
    """Stamps a learned additive trigger on one random item per batch, relabelled 0, and trains it jointly."""

    def __init__(self, stop_after=None):
        self.trigger = torch.zeros(3, 8, 8, requires_grad=True)
        self.optimizer = torch.optim.Adam([self.trigger], lr=0.05)
        self.calls, self.prepared, self.stop_after = 0, 0, stop_after
        self.seen = []

    def prepare(self, model, images, labels, generator):
        self.prepared += 1
        with torch.no_grad():
            self.trigger += 0.1 * torch.rand(self.trigger.shape, generator=generator)

    def poison_batch(self, model, images, labels, generator):
        self.calls += 1
        if self.stop_after is not None and self.calls > self.stop_after:
            raise KeyboardInterrupt  # as a kill would
        pick = int(torch.randint(0, images.shape[0], (1,), generator=generator))
        self.seen.append(pick)
        out, new_labels = images.clone(), labels.clone()
        out[pick] = (images[pick] + self.trigger).clamp(0, 1)
        new_labels[pick] = 0
        return PoisonedBatch(out, new_labels, 0.01 * self.trigger.pow(2).sum())

    def after_backward(self):
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def state_dict(self):
        return {"trigger": self.trigger.detach().clone(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state):
        with torch.no_grad():
            self.trigger.copy_(state["trigger"])
        self.optimizer.load_state_dict(state["optimizer"])

    def __repr__(self):
        return "Joint(lr=0.05)"


class _Passthrough:
    def poison_batch(self, model, images, labels, generator):
        torch.rand(5, generator=generator)  # draws from its own stream only
        return PoisonedBatch(images, labels)

    def __repr__(self):
        return "Passthrough()"


def test_a_hook_that_changes_nothing_trains_the_same_weights_as_the_clean_run():
    images, labels = _task()
    assert isinstance(_Passthrough(), BatchPoisoning)
    clean = train_with_recipe(_model(), images, labels, RECIPE).model
    hooked = train_with_recipe(_model(), images, labels, RECIPE, perturb=_Passthrough()).model
    assert _same_weights(clean, hooked)


def test_the_hook_relabels_adds_its_loss_and_trains_its_own_parameters():
    images, labels = _task()
    hook = _Joint()
    train_with_recipe(_model(), images, labels, RECIPE, perturb=hook)
    assert hook.prepared == 1 and hook.calls == 2 * 3  # 48 images, 16 per batch, 2 epochs
    assert hook.trigger.abs().sum() > 0 and hook.trigger.grad is None  # stepped, gradients cleared
    again = _Joint()
    train_with_recipe(_model(), images, labels, RECIPE, perturb=again)
    assert again.seen == hook.seen and torch.equal(again.trigger, hook.trigger)  # seeded draws


def test_a_killed_poisoned_run_resumes_with_the_hooks_state(tmp_path):
    images, labels = _task()
    whole_hook = _Joint()
    whole = train_with_recipe(_model(), images, labels, RECIPE, perturb=whole_hook).model
    checkpoint = str(tmp_path / "run.pt")
    with pytest.raises(KeyboardInterrupt):  # killed in the second epoch (3 steps per epoch)
        train_with_recipe(_model(), images, labels, RECIPE, perturb=_Joint(stop_after=4), checkpoint=checkpoint)
    resumed_hook = _Joint()
    resumed = train_with_recipe(_model(seed=3), images, labels, RECIPE, perturb=resumed_hook, checkpoint=checkpoint)
    assert resumed.resumed_from == 1 and resumed_hook.prepared == 0  # the state came from the checkpoint
    assert _same_weights(whole, resumed.model)
    assert torch.equal(whole_hook.trigger, resumed_hook.trigger)


def test_a_checkpoint_of_one_hook_refuses_another(tmp_path):
    images, labels = _task()
    checkpoint = str(tmp_path / "run.pt")
    train_with_recipe(_model(), images, labels, RECIPE, perturb=_Joint(), checkpoint=checkpoint)
    with pytest.raises(ValueError, match="other settings.*perturb"):
        train_with_recipe(_model(), images, labels, RECIPE, perturb=_Passthrough(), checkpoint=checkpoint)
    with pytest.raises(ValueError, match="other settings.*perturb"):
        train_with_recipe(_model(), images, labels, RECIPE, checkpoint=checkpoint)


def test_bad_hooks_are_refused():
    images, labels = _task()

    class _Short(_Passthrough):
        def poison_batch(self, model, images, labels, generator):
            return PoisonedBatch(images, labels[:-1])

    class _Tuple(_Passthrough):
        def poison_batch(self, model, images, labels, generator):
            return images, labels

    with pytest.raises(TypeError, match="perturb must be a BatchPoisoning"):
        train_with_recipe(_model(), images, labels, RECIPE, perturb="pgd")
    with pytest.raises(ValueError, match="labels for"):
        train_with_recipe(_model(), images, labels, RECIPE, perturb=_Short())
    with pytest.raises(TypeError, match="must return a PoisonedBatch"):
        train_with_recipe(_model(), images, labels, RECIPE, perturb=_Tuple())

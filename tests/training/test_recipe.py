"""The resumable training recipe and the PreAct-ResNet-18 it trains for the CIFAR-10 benchmarks."""

import pytest
import torch

from captum_classpattern.models import PreActResNet18, SmallCNN
from captum_classpattern.training import TrainingRecipe, augment, train_with_recipe

RECIPE = TrainingRecipe(epochs=2, batch_size=16, peak_lr=0.05)


def _task(count=64, seed=0):
    """Bright top half (class 1) or bright bottom half (class 0), with noise; flips and small crops keep the class."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (count,), generator=generator)
    images = torch.rand(count, 3, 12, 12, generator=generator) * 0.3
    images[labels == 1, :, :6] += 0.6
    images[labels == 0, :, 6:] += 0.6
    return images, labels


def _model(seed=0):
    torch.manual_seed(seed)
    return SmallCNN(in_channels=3, num_classes=2, width=4)


def test_preact_resnet18_matches_the_published_layout():
    model = PreActResNet18(num_classes=10, width=64)
    # The published CIFAR-10 PreAct-ResNet-18 has 11,171,146 parameters and these names.
    assert sum(p.numel() for p in model.parameters()) == 11_171_146
    names = set(model.state_dict())
    assert {"conv1.weight", "layer1.0.bn1.running_mean", "layer2.0.shortcut.0.weight", "linear.weight"} <= names
    assert "layer1.0.shortcut.0.weight" not in names  # identity shortcut where the shape is kept
    assert PreActResNet18(width=8)(torch.zeros(2, 3, 20, 20)).shape == (2, 10)


def test_augment_crops_within_the_padding_and_is_reproducible():
    images = torch.rand(8, 3, 6, 6)
    first = augment(images, torch.Generator().manual_seed(1), padding=2, flip=True)
    again = augment(images, torch.Generator().manual_seed(1), padding=2, flip=True)
    assert first.shape == images.shape and torch.equal(first, again)
    assert torch.equal(augment(images, torch.Generator(), padding=0, flip=False), images)
    # Every output pixel is a pixel of its own (reflect-padded, maybe flipped) image.
    for out, original in zip(first, images):
        assert set(out.flatten().tolist()) <= set(original.flatten().tolist())


def test_recipe_learns_a_simple_task():
    images, labels = _task()
    run = train_with_recipe(
        _model(), images, labels, TrainingRecipe(epochs=4, batch_size=16, crop_padding=2), monitor=(images, labels)
    )
    assert run.curve[-1]["test_accuracy"] >= 0.9
    assert [r["epoch"] for r in run.curve] == [1, 2, 3, 4]
    assert not run.model.training


class _KilledAfter:
    """A perturbation that lets ``steps`` batches through, then stops the run as a kill would."""

    def __init__(self, steps):
        self.steps = steps

    def __call__(self, model, images, labels):
        self.steps -= 1
        if self.steps < 0:
            raise KeyboardInterrupt
        return images

    def __repr__(self):
        return "identity"


class _Identity(_KilledAfter):
    def __init__(self):
        super().__init__(10**9)


def test_a_killed_run_resumes_to_the_same_weights(tmp_path):
    images, labels = _task()
    whole = train_with_recipe(_model(), images, labels, RECIPE, perturb=_Identity()).model
    checkpoint = str(tmp_path / "run.pt")
    with pytest.raises(KeyboardInterrupt):  # killed during the second epoch (4 steps per epoch)
        train_with_recipe(_model(), images, labels, RECIPE, perturb=_KilledAfter(6), checkpoint=checkpoint)
    resumed = train_with_recipe(_model(seed=5), images, labels, RECIPE, perturb=_Identity(), checkpoint=checkpoint)
    assert resumed.resumed_from == 1 and len(resumed.curve) == 2
    for (name, a), b in zip(whole.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_checkpoint_of_other_settings_is_refused_and_kept(tmp_path):
    images, labels = _task()
    checkpoint = tmp_path / "run.pt"
    train_with_recipe(_model(), images, labels, RECIPE, checkpoint=str(checkpoint))
    written = checkpoint.read_bytes()
    other = TrainingRecipe(epochs=3, batch_size=16, peak_lr=0.05)
    with pytest.raises(ValueError, match="other settings.*recipe"):
        train_with_recipe(_model(), images, labels, other, checkpoint=str(checkpoint))
    assert checkpoint.read_bytes() == written
    checkpoint.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read the training checkpoint"):
        train_with_recipe(_model(), images, labels, RECIPE, checkpoint=str(checkpoint))


@pytest.mark.parametrize(
    "bad, message",
    [({"epochs": 0}, "epochs"), ({"warmup": 1.0}, "warmup"), ({"crop_padding": -1}, "crop_padding")],
)
def test_bad_recipes_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        TrainingRecipe(**bad)


def test_a_run_that_diverges_stops_with_a_clear_error_and_writes_no_checkpoint(tmp_path):
    images, labels = _task()
    checkpoint = tmp_path / "run.pt"
    with pytest.raises(FloatingPointError, match="diverged at epoch 1, step [0-9]+ \\(loss .*peak_lr"):
        # A learning rate no network survives: the loss is NaN within a few steps.
        train_with_recipe(_model(), images, labels, TrainingRecipe(epochs=2, batch_size=16, peak_lr=1e30),
                          checkpoint=str(checkpoint))  # fmt: skip
    assert not checkpoint.exists()

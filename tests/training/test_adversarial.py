"""PGD attack and adversarial training on top of captum.robust.PGD."""

import copy
import warnings

import pytest
import torch

from captum_classpattern.models import SmallCNN
from captum_classpattern.training import (
    PGDPerturbation,
    adversarial_train,
    pgd_attack,
    pgd_robust_accuracy,
)

pytestmark = pytest.mark.usefixtures("one_thread")
EPS = 0.1  # 8/255 is a weak attack on the 8 x 8 upsampled digits


def test_attack_stays_in_ball_and_box_and_leaves_model_alone(trained_digits_model, digits16):
    model = copy.deepcopy(trained_digits_model).train()
    model.features[1].eval()  # a submodule the caller set differently must keep its own flag
    state = copy.deepcopy(model.state_dict())
    grads = {name: None if p.grad is None else p.grad.clone() for name, p in model.named_parameters()}
    images, labels = digits16.eval.images[:64], digits16.eval.labels[:64]
    before = images.clone()
    with pytest.warns(UserWarning, match="pgd_attack: the model is in training mode"):
        adversarial = pgd_attack(model, images, labels, eps=EPS, step_size=0.025, steps=5)
    assert torch.all((adversarial - images).abs() <= EPS + 1e-6)
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    torch.testing.assert_close(images, before)
    assert model.training and not model.features[1].training
    for name, p in model.named_parameters():  # the attack takes gradients of the images only
        assert (p.grad is None) == (grads[name] is None), name
        if p.grad is not None:
            torch.testing.assert_close(p.grad, grads[name], msg=name)
    for name, value in model.state_dict().items():  # BatchNorm statistics untouched
        torch.testing.assert_close(value, state[name], msg=name)


def test_attack_lowers_accuracy(trained_digits_model, digits16):
    images, labels = digits16.eval.images[:100], digits16.eval.labels[:100]
    natural = pgd_robust_accuracy(trained_digits_model, images, labels, eps=0.0, steps=1, random_start=False)
    attacked = pgd_robust_accuracy(trained_digits_model, images, labels, eps=EPS, steps=10)
    assert natural > 0.9 and attacked < 0.3


def test_adversarial_training_raises_robust_accuracy_and_restores_mode(digits16):
    train, test = digits16.train, digits16.eval
    torch.manual_seed(0)
    natural = SmallCNN(1, 10, 8)
    robust = copy.deepcopy(natural)
    from captum_classpattern.training import train_classifier

    train_classifier(natural, train.images, train.labels, epochs=8, seed=0)
    robust.train()
    # A short attack (2 steps of 0.06 from a random start) keeps the test fast.
    with warnings.catch_warnings():
        # Training mode is intended while training: the attacks must not warn about it.
        warnings.filterwarnings("error", message=".*the model is in training mode")
        adversarial_train(robust, train.images, train.labels, eps=EPS, step_size=0.06, steps=2, epochs=8, seed=0)
    assert robust.training  # the caller's mode comes back
    kwargs = dict(eps=EPS, steps=10, seed=0)
    images, labels = test.images[:150], test.labels[:150]
    natural_robust = pgd_robust_accuracy(natural, images, labels, **kwargs)
    with pytest.warns(UserWarning, match="the model is in training mode"):  # measured in eval mode all the same
        robust_robust = pgd_robust_accuracy(robust, images, labels, **kwargs)
    assert robust_robust > natural_robust + 0.15
    assert robust.training


def test_robust_accuracy_is_seeded_and_restores_rng(trained_digits_model, digits16):
    images, labels = digits16.eval.images[:60], digits16.eval.labels[:60]
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    first = pgd_robust_accuracy(trained_digits_model, images, labels, eps=0.05, steps=3, seed=4)
    assert torch.equal(torch.rand(1), expected_next)  # the global RNG is left where it was
    assert first == pgd_robust_accuracy(trained_digits_model, images, labels, eps=0.05, steps=3, seed=4)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(eps=-0.1), ValueError),
        (dict(steps=0), ValueError),
        (dict(step_size=2.0), ValueError),
    ],
)
def test_bad_settings(trained_digits_model, digits16, kwargs, error):
    with pytest.raises(error):
        pgd_attack(trained_digits_model, digits16.eval.images[:4], digits16.eval.labels[:4], **kwargs)


def test_bad_inputs(trained_digits_model, digits16):
    images, labels = digits16.eval.images[:4], digits16.eval.labels[:4]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        pgd_attack(trained_digits_model, images * 255, labels)
    with pytest.raises(TypeError, match="integer class"):
        pgd_attack(trained_digits_model, images, labels.float() + 0.5)
    with pytest.raises(ValueError, match="2 images' labels for 4 images"):
        pgd_attack(trained_digits_model, images, labels[:2])
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        pgd_robust_accuracy(trained_digits_model, images, labels, batch_size=0)
    with pytest.raises(ValueError, match="steps must be a positive int"):
        pgd_robust_accuracy(trained_digits_model, images, labels, steps=0)
    # A list of ints is as good as a label tensor, as everywhere in the package.
    torch.testing.assert_close(
        pgd_attack(trained_digits_model, images, labels.tolist(), random_start=False, steps=2),
        pgd_attack(trained_digits_model, images, labels, random_start=False, steps=2),
    )
    with pytest.raises(TypeError):
        adversarial_train(lambda x: x, images, labels)
    with pytest.raises(ValueError):
        PGDPerturbation(steps=0)
    assert "eps=0.1" in repr(PGDPerturbation(eps=0.1))

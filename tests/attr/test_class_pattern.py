"""ClassPattern: the search flips predictions, batches classes exactly, and leaves callers alone."""

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from captum.attr import GradientAttribution

from captum_classpattern import (
    PAPER_SCHEDULE,
    ClassPattern,
    SearchSchedule,
    predictive_power,
    random_pixel_power,
    select_canvases,
    top_k_pattern,
)

FAST = SearchSchedule(optimizer="sign", step_size=0.05, batch_size=16, steps=40)


class Scaled(torch.nn.Module):
    """A linear model on 1 x 4 x 4 images that needs a second argument."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(16, 3)

    def forward(self, x, scale):
        return self.linear(x.flatten(1)) * scale


def test_is_a_captum_gradient_attribution(linear_model):
    assert isinstance(ClassPattern(linear_model), GradientAttribution)


def test_found_pattern_flips_far_more_images_than_random_pixels(trained_digits_model, digits16):
    model, data = trained_digits_model, digits16
    classes = list(range(10))
    canvases = select_canvases(model, data.search.images, data.search.labels, classes)
    maps = ClassPattern(model).attribute(
        canvases,
        target=classes,
        baselines=data.search.images,
        baseline_labels=data.search.labels,
        seed=0,
        schedule=FAST,
    )
    found, chance = [], []
    for c in classes:
        pattern = top_k_pattern(maps[c], canvases[c], 0.1)
        found.append(predictive_power(model, pattern, data.eval.images, data.eval.labels, c))
        chance.append(random_pixel_power(model, canvases[c], data.eval.images, data.eval.labels, c, 0.1, trials=3))
    mean_found, mean_chance = sum(found) / 10, sum(chance) / 10
    assert mean_found > 0.3
    assert mean_found > 3 * mean_chance


def test_target_list_matches_per_class_calls(trained_digits_model, digits16):
    model, data = trained_digits_model, digits16
    classes = [3, 7, 1]
    canvases = select_canvases(model, data.search.images, data.search.labels, classes)
    explainer = ClassPattern(model)
    kwargs = dict(baselines=data.search.images, baseline_labels=data.search.labels, seed=5, schedule=FAST)
    together = explainer.attribute(canvases, target=classes, **kwargs)
    forwarded_together = explainer.last_stats.images_forwarded
    for i, c in enumerate(classes):
        alone = explainer.attribute(canvases[i : i + 1], target=c, **kwargs)
        torch.testing.assert_close(together[i : i + 1], alone, atol=1e-5, rtol=0)
    # One batched loop: the steps of the joint search equal those of a single class.
    assert explainer.last_stats.steps == FAST.steps
    assert forwarded_together == len(classes) * FAST.steps * FAST.batch_size


def test_paper_schedule_update_rule_by_hand(linear_model, toy_split):
    """One signed step of 0.02 from 0.5, in the direction the loss gradient says."""
    with torch.no_grad():  # large weights so the cross-entropy term can beat the size term
        linear_model[1].weight.copy_(torch.randn(3, 16, generator=torch.Generator().manual_seed(3)) * 10)
    canvas = toy_split.images[:1]
    target = 0
    others = toy_split.images[toy_split.labels != target][:4]
    schedule = PAPER_SCHEDULE.replace(epochs=None, steps=1)
    with pytest.warns(UserWarning, match="no labels"):  # the other-class images were picked by hand
        maps = ClassPattern(linear_model).attribute(canvas, target=target, baselines=others, seed=0, schedule=schedule)
    # Hand computation of d/dm [0.2 CE(W (m c + (1 - m) x), 0) + 0.8 sum(m) / (H W / 2)] at m = 0.5.
    weight, bias = linear_model[1].weight.detach(), linear_model[1].bias.detach()
    c = canvas.reshape(16)
    grad = torch.zeros(16)
    for x in others.reshape(-1, 16):
        composite = 0.5 * c + 0.5 * x
        probs = torch.softmax(weight @ composite + bias, 0)
        dlogits = probs - F.one_hot(torch.tensor(target), 3).float()
        grad += 0.2 * (weight.T @ dlogits) * (c - x) / len(others)
    grad += 0.8 / 8.0
    expected = (0.5 - 0.02 * grad.sign()).clamp(0, 1).reshape(4, 4)
    torch.testing.assert_close(maps[0, 0], expected)
    # The case is only hand-checkable if pixels really move both ways.
    assert (expected > 0.5).any() and (expected < 0.5).any()


def test_paper_schedule_runs_epochs_of_batches_of_four(linear_model, toy_split):
    canvas = toy_split.images[:1]
    explainer = ClassPattern(linear_model)
    explainer.attribute(
        canvas, target=0, baselines=toy_split.images, baseline_labels=toy_split.labels, schedule="paper"
    )
    # 8 other-class images in batches of 4, 5 epochs: 10 steps and 40 images.
    assert explainer.last_stats.steps == 10
    assert explainer.last_stats.images_forwarded == 40


def test_model_and_tensors_are_untouched(trained_digits_model, digits16):
    model = copy.deepcopy(trained_digits_model)
    model.train()
    model.features[0].train(False)  # a mixed mode must come back exactly
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    state = copy.deepcopy(model.state_dict())
    modes = [m.training for m in model.modules()]
    canvases = digits16.search.images[:2].clone()
    baselines = digits16.search.images.clone()
    labels = digits16.search.labels.clone()
    canvases_before, baselines_before = canvases.clone(), baselines.clone()
    with pytest.warns(UserWarning, match="training mode"):
        ClassPattern(model).attribute(
            canvases, target=[0, 1], baselines=baselines, baseline_labels=labels, schedule=FAST.replace(steps=3)
        )
    assert [m.training for m in model.modules()] == modes
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert all(torch.equal(p.grad, torch.ones_like(p)) for p in model.parameters())
    assert torch.equal(canvases, canvases_before) and torch.equal(baselines, baselines_before)


def test_no_warning_for_eval_model(trained_digits_model, digits16):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ClassPattern(trained_digits_model).attribute(
            digits16.search.images[:1],
            target=0,
            baselines=digits16.search.images,
            baseline_labels=digits16.search.labels,
            schedule=FAST.replace(steps=2),
        )


def test_dataloader_baselines_exclude_own_class(linear_model, toy_split):
    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, x):
            seen.append(x.shape[0])
            return linear_model(x)

    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(toy_split.images, toy_split.labels), batch_size=6
    )
    maps = ClassPattern(Recorder()).attribute(
        toy_split.images[:1], target=0, baselines=loader, schedule=SearchSchedule(epochs=2, steps=None)
    )
    assert maps.shape == (1, 1, 4, 4)
    # The first call infers the class count; then 2 epochs x 2 batches of 6 with the 2 class-0 images dropped.
    assert seen[1:] == [4, 4, 4, 4]


def test_auto_canvas_and_bound_search_set(trained_digits_model, digits16):
    explainer = ClassPattern(
        trained_digits_model, baselines=digits16.search.images, baseline_labels=digits16.search.labels
    )
    maps = explainer.attribute(target=4, schedule=FAST.replace(steps=2))
    assert maps.shape == (1, 1, 16, 16)
    assert float(maps.min()) >= 0 and float(maps.max()) <= 1


def test_tuple_inputs_come_back_as_tuple(linear_model, toy_split):
    out = ClassPattern(linear_model).attribute(
        (toy_split.images[:1],),
        target=0,
        baselines=toy_split.images,
        baseline_labels=toy_split.labels,
        schedule=FAST.replace(steps=1),
    )
    assert isinstance(out, tuple) and out[0].shape == (1, 1, 4, 4)


def test_max_forward_batch_does_not_change_the_result(linear_model, toy_split):
    kwargs = dict(
        target=[0, 1],
        baselines=toy_split.images,
        baseline_labels=toy_split.labels,
        seed=2,
        schedule=SearchSchedule(optimizer="adam", step_size=0.1, batch_size=4, steps=5),
    )
    full = ClassPattern(linear_model).attribute(toy_split.images[:2], **kwargs)
    split = ClassPattern(linear_model).attribute(toy_split.images[:2], max_forward_batch=3, **kwargs)
    torch.testing.assert_close(full, split)


def test_additional_forward_args_are_passed(toy_split):
    maps = ClassPattern(Scaled()).attribute(
        toy_split.images[:1], 0, toy_split.images, 2.0, baseline_labels=toy_split.labels, schedule=FAST.replace(steps=1)
    )
    assert maps.shape == (1, 1, 4, 4)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(baselines=torch.rand(5, 1, 5, 5)), "like the canvases"),
        (dict(target=3), "out of range"),
        (dict(target=-1), "out of range"),
        (dict(baselines=torch.rand(4, 1, 4, 4), baseline_labels=torch.zeros(4, dtype=torch.long)), "empty"),
        (dict(inputs=torch.full((1, 1, 4, 4), float("nan"))), "NaN"),
        (dict(baselines=torch.full((4, 1, 4, 4), float("nan"))), "NaN"),
        (dict(inputs=torch.rand(1, 1, 4, 4) * 255), r"\[0, 1\]"),
        (dict(inputs=torch.rand(1, 4, 4)), "N x C x H x W"),
        (dict(target=[0, 1]), "2 classes in target for 1 canvases"),
        (dict(baselines=None), "no search set"),
        (dict(baselines=[1, 2, 3], baseline_labels=None), "image tensor or an"),
    ],
)
def test_bad_input_raises_clear_errors(linear_model, toy_split, change, message):
    kwargs = dict(
        inputs=toy_split.images[:1],
        target=0,
        baselines=toy_split.images,
        baseline_labels=toy_split.labels,
        schedule=FAST.replace(steps=1),
    )
    kwargs.update(change)
    with pytest.raises((ValueError, TypeError), match=message):
        ClassPattern(linear_model).attribute(**kwargs)


def test_model_on_another_device_is_reported(toy_split):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)).to("meta")
    with pytest.raises(ValueError, match="model is on the meta device.*materialise"):
        ClassPattern(model).attribute(toy_split.images[:1], target=0, baselines=toy_split.images)


def test_k_larger_than_the_image_is_refused(toy_split):
    with pytest.raises(ValueError, match="k must lie in 1..16"):
        top_k_pattern(torch.rand(4, 4), toy_split.images[0], 17)


def test_bad_schedules_are_refused():
    with pytest.raises(ValueError, match="exactly one of epochs and steps"):
        SearchSchedule(epochs=2, steps=3)
    with pytest.raises(ValueError, match="optimizer"):
        SearchSchedule(optimizer="sgd")
    with pytest.raises(ValueError, match="schedule must be"):
        ClassPattern(torch.nn.Linear(1, 1)).attribute(
            torch.rand(1, 1, 1, 1), target=0, baselines=torch.rand(1, 1, 1, 1), schedule="quick"
        )


# Inputs that used to give silently wrong numbers or confusing errors (docs/reliability/inputs.rst).

SEARCH = dict(schedule=FAST.replace(steps=1))


def _loader(images, labels, batch_size=6):
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels), batch_size=batch_size)


@pytest.mark.parametrize("with_canvases", [True, False], ids=["canvases", "inputs=None"])
def test_a_model_returning_probabilities_is_refused(linear_model, toy_split, with_canvases):
    softmax_model = torch.nn.Sequential(linear_model, torch.nn.Softmax(dim=1))
    inputs = toy_split.images[:1] if with_canvases else None
    with pytest.raises(ValueError, match="returns probabilities.*remove the final softmax"):
        ClassPattern(softmax_model).attribute(
            inputs, target=0, baselines=toy_split.images, baseline_labels=toy_split.labels, **SEARCH
        )


def test_log_probabilities_give_the_same_maps_as_logits(linear_model, toy_split):
    log_softmax_model = torch.nn.Sequential(linear_model, torch.nn.LogSoftmax(dim=1))
    kwargs = dict(target=[0, 1], baselines=toy_split.images, baseline_labels=toy_split.labels, **SEARCH)
    from_logits = ClassPattern(linear_model).attribute(toy_split.images[:2], **kwargs)
    from_log_probabilities = ClassPattern(log_softmax_model).attribute(toy_split.images[:2], **kwargs)
    torch.testing.assert_close(from_logits, from_log_probabilities)


@pytest.mark.parametrize("form", ["tensor", "dataloader", "inputs=None"])
def test_float_labels_that_are_not_whole_numbers_are_refused(linear_model, toy_split, form):
    labels = toy_split.labels.float() + 0.5
    kwargs = dict(inputs=toy_split.images[:1], target=0, **SEARCH)
    if form == "dataloader":
        kwargs.update(baselines=_loader(toy_split.images, labels))
    else:
        kwargs.update(baselines=toy_split.images, baseline_labels=labels)
    if form == "inputs=None":
        kwargs.update(inputs=None)
    with pytest.raises(TypeError, match="labels must hold integer class indices, got the float 0.5"):
        ClassPattern(linear_model).attribute(**kwargs)


@pytest.mark.parametrize("with_canvases", [True, False], ids=["canvases", "inputs=None"])
@pytest.mark.parametrize(
    "target, message",
    [
        (3.0, r"target must be an int class index, got the float 3.0: pass int\(3.0\)"),
        ([3.0], r"target\[0\] must be an int class index, got the float 3.0"),
        (True, "target must be an int class index, not a bool"),
        ([0, True], r"target\[1\] must be an int class index, not a bool"),
        ("3", "target must be an int class index, got str '3': map class names to class indices"),
        (torch.tensor([1.0]), "target must hold integer class indices.*target.long()"),
    ],
)
def test_a_target_that_is_not_an_int_class_is_a_clear_type_error(
    linear_model, toy_split, with_canvases, target, message
):
    inputs = toy_split.images[:1] if with_canvases else None
    with pytest.raises(TypeError, match=message):
        ClassPattern(linear_model).attribute(
            inputs, target=target, baselines=toy_split.images, baseline_labels=toy_split.labels, **SEARCH
        )


@pytest.mark.parametrize("target", [3, 99, -1])
def test_a_target_the_model_does_not_have_is_refused_before_choosing_canvases(linear_model, toy_split, target):
    with pytest.raises(ValueError, match=f"target class {target} is out of range"):
        ClassPattern(linear_model).attribute(
            target=target, baselines=toy_split.images, baseline_labels=toy_split.labels, **SEARCH
        )


@pytest.mark.parametrize("form", ["tensor", "iterable"])
def test_a_search_set_without_labels_warns_that_the_own_class_stays_in(linear_model, toy_split, form):
    baselines = toy_split.images if form == "tensor" else [toy_split.images[:6], toy_split.images[6:]]
    with pytest.warns(UserWarning, match="own class cannot be excluded.*baseline_labels=labels"):
        ClassPattern(linear_model).attribute(toy_split.images[:1], target=0, baselines=baselines, **SEARCH)


@pytest.mark.filterwarnings("ignore:only 0 of:RuntimeWarning")  # an untrained model: the short searches collapse
@pytest.mark.parametrize("strategy", ["confident", "best_of_n", "index"])
def test_additional_forward_args_reach_the_canvas_choice(toy_split, strategy):
    maps = ClassPattern(Scaled()).attribute(
        target=[0, 1],
        baselines=toy_split.images,
        baseline_labels=toy_split.labels,
        additional_forward_args=2.0,
        canvas_strategy=strategy,
        **SEARCH,
    )
    assert maps.shape == (2, 1, 4, 4)


@pytest.mark.parametrize("with_canvases", [True, False], ids=["canvases", "inputs=None"])
def test_a_model_of_another_dtype_is_a_clear_value_error(toy_split, with_canvases):
    double_model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)).double()
    inputs = toy_split.images[:1] if with_canvases else None
    with pytest.raises(ValueError, match=r"dtype torch.float32.*parameters are torch.float64.*model.float\(\)") as info:
        ClassPattern(double_model).attribute(
            inputs, target=0, baselines=toy_split.images, baseline_labels=toy_split.labels, **SEARCH
        )
    assert isinstance(info.value.__cause__, RuntimeError)


def test_canvases_with_another_channel_count_are_a_clear_value_error(toy_split):
    grey_model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(32, 3))
    rgb = toy_split.images.expand(-1, 3, -1, -1)
    with pytest.raises(ValueError, match=r"shape \(1, 3, 4, 4\).*first layer takes 1 channels but the inputs have 3"):
        ClassPattern(grey_model).attribute(rgb[:1], target=0, baselines=rgb, baseline_labels=toy_split.labels, **SEARCH)


def test_noisy_canvases_are_clamped_into_the_unit_range(linear_model, toy_split):
    noisy = toy_split.images[:2] + torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    kwargs = dict(target=[0, 1], baselines=toy_split.images, baseline_labels=toy_split.labels, **SEARCH)
    explainer = ClassPattern(linear_model)
    torch.testing.assert_close(explainer.attribute(noisy, **kwargs), explainer.attribute(noisy.clamp(0, 1), **kwargs))


@pytest.mark.parametrize("scale", [255.0, -20.0])
def test_canvases_on_another_scale_are_still_refused(linear_model, toy_split, scale):
    with pytest.raises(ValueError, match=r"pixels in \[0, 1\].*clamped only within \[-8, 9\]"):
        ClassPattern(linear_model).attribute(
            toy_split.images[:1] * scale, target=0, baselines=toy_split.images, baseline_labels=toy_split.labels
        )


def test_a_search_set_of_another_dtype_is_cast_to_the_canvases_dtype(linear_model, toy_split):
    kwargs = dict(target=[0, 1], baseline_labels=toy_split.labels, **SEARCH)
    single = ClassPattern(linear_model).attribute(toy_split.images[:2], baselines=toy_split.images, **kwargs)
    double = ClassPattern(linear_model).attribute(toy_split.images[:2], baselines=toy_split.images.double(), **kwargs)
    assert torch.equal(single, double)


def test_a_search_set_repeated_by_a_wrapper_is_explained(linear_model, toy_split):
    repeated = toy_split.images.repeat_interleave(2, dim=0)
    with pytest.raises(ValueError, match="24 images but 12 baseline_labels.*bind the search set in the constructor"):
        ClassPattern(linear_model).attribute(
            toy_split.images[:1], target=0, baselines=repeated, baseline_labels=toy_split.labels
        )

"""The one search loop: its update rule, the stamp and blend objectives, and the batches Neural Cleanse reads."""

from dataclasses import dataclass
from typing import ClassVar, List, Optional

import pytest
import torch

from captum_classpattern.attr import (
    BlendObjective,
    SearchSchedule,
    SearchStep,
    StampObjective,
    search_batches,
    search_patterns,
    stamp_loss,
)

TARGETS = torch.tensor([0, 1, 2])
CONSTANT = SearchSchedule(step_size=0.1, batch_size=2, steps=4, final_step_size=None)


@dataclass
class _Push:
    """An objective whose loss gradient is +1 on every map pixel and -1 on every value: it records its steps."""

    learn_values: bool = False
    seen: Optional[List[int]] = None
    kind: ClassVar[str] = "test push"
    fixed_map: ClassVar[Optional[float]] = None

    def value_schedule(self, plan):
        return plan.replace(step_size=0.25) if self.learn_values else None

    def gradients(self, step: SearchStep):
        assert self.seen is not None
        self.seen.append(step.index)
        # Each row belongs to a canvas whose class it is not.
        assert not bool((step.targets[step.owner] == _labels_of(step.images)).any())
        return torch.ones_like(step.maps), (-torch.ones_like(step.values) if self.learn_values else None)


_LABEL_OF = {}


def _labels_of(images):
    return torch.tensor([_LABEL_OF[float(image.sum())] for image in images])


@pytest.fixture
def toy(toy_split):
    _LABEL_OF.clear()
    _LABEL_OF.update({float(image.sum()): int(label) for image, label in zip(toy_split.images, toy_split.labels)})
    return toy_split


def test_the_loop_takes_signed_clamped_steps_on_every_canvas(linear_model, toy):
    objective = _Push(learn_values=True, seen=[])
    canvases = torch.full((3, 1, 4, 4), 0.5)
    maps, values = search_patterns(linear_model, canvases, TARGETS, toy.images, toy.labels, objective, CONSTANT)
    assert objective.seen == [0, 1, 2, 3]
    # Four steps of 0.1 down from the schedule's init 0.5 (to 0.1); the values climb by 0.25 and stop at 1.
    torch.testing.assert_close(maps, torch.full((3, 4, 4), 0.1))
    assert torch.equal(values, torch.ones(3, 1, 4, 4))
    assert torch.equal(canvases, torch.full((3, 1, 4, 4), 0.5))  # the caller's tensor is left alone


def test_stamp_search_of_a_class_does_not_depend_on_its_neighbours(linear_model, toy):
    objective = StampObjective(learn_values=True, harden=0.5, smoothness=1.0)
    canvases = toy.images[:3]
    before = [p.detach().clone() for p in linear_model.parameters()]
    maps, values = search_patterns(linear_model, canvases, TARGETS, toy.images, toy.labels, objective, CONSTANT)
    for row in range(3):
        alone = search_patterns(
            linear_model, canvases[row : row + 1], TARGETS[row : row + 1], toy.images, toy.labels, objective, CONSTANT
        )
        assert torch.equal(alone[0], maps[row : row + 1]) and torch.equal(alone[1], values[row : row + 1])
    assert 0 <= float(maps.min()) and float(maps.max()) <= 1 and 0 <= float(values.min()) <= float(values.max()) <= 1
    for param, old in zip(linear_model.parameters(), before):
        assert param.grad is None and torch.equal(param, old)


def test_stamp_search_with_canvas_values_keeps_the_canvases(linear_model, toy):
    objective = StampObjective(learn_values=False)
    _, values = search_patterns(linear_model, toy.images[:3], TARGETS, toy.images, toy.labels, objective, CONSTANT)
    assert torch.equal(values, toy.images[:3])


def test_stamp_search_lowers_the_loss_it_optimises(linear_model, toy):
    schedule = CONSTANT.replace(steps=30, alpha=1.0)  # the class term alone
    canvases = torch.full((3, 1, 4, 4), 0.5)
    maps, values = search_patterns(
        linear_model, canvases, TARGETS, toy.images, toy.labels, StampObjective(value_step=0.05), schedule
    )
    owner = torch.arange(3).repeat_interleave(12)
    rows = toy.images.repeat(3, 1, 1, 1)
    counts = torch.full((3,), 12.0)
    start = torch.full((3, 4, 4), 0.5)
    with torch.no_grad():
        _, before = stamp_loss(linear_model, rows, owner, start, canvases, TARGETS, counts)
        _, after = stamp_loss(linear_model, rows, owner, maps, values, TARGETS, counts)
    assert float(after) < float(before)


def test_blend_search_learns_values_under_a_fixed_map(linear_model, toy):
    schedule = SearchSchedule(step_size=0.05, final_step_size=0.01, batch_size=2, steps=20)
    grey = torch.full((3, 1, 4, 4), 0.5)
    maps, values = search_patterns(linear_model, grey, TARGETS, toy.images, toy.labels, BlendObjective(0.3), schedule)
    assert torch.equal(maps, torch.full((3, 4, 4), 0.3))
    assert not torch.equal(values, grey) and 0 <= float(values.min()) and float(values.max()) <= 1
    blended = 0.7 * toy.images.unsqueeze(0) + 0.3 * values.unsqueeze(1)  # every image, every class's pattern
    with torch.no_grad():
        gained = [linear_model(blended[row]).log_softmax(1)[:, row].mean() for row in range(3)]
        start = [linear_model(0.7 * toy.images + 0.15).log_softmax(1)[:, row].mean() for row in range(3)]
    assert all(float(g) > float(s) for g, s in zip(gained, start))


def test_objectives_refuse_bad_settings(linear_model, toy):
    with pytest.raises(ValueError, match="harden"):
        StampObjective(harden=1.5)
    with pytest.raises(ValueError, match="smoothness"):
        StampObjective(smoothness=-1.0)
    with pytest.raises(TypeError, match="learn_values"):
        StampObjective(learn_values="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="strength"):
        BlendObjective(0.0)
    epochs = SearchSchedule(steps=None, epochs=1, final_step_size=None)
    with pytest.raises(ValueError, match="harden needs the number of steps"):
        hardened = StampObjective(harden=0.5)
        search_patterns(linear_model, toy.images[:3], TARGETS, toy.images, toy.labels, hardened, epochs)


def test_search_batches_draw_other_class_images_per_canvas(toy):
    steps = list(search_batches(toy.images, toy.labels, TARGETS, batch_size=3, steps=5, seed=0))
    assert len(steps) == 5
    for rows, owner in steps:
        assert rows.shape == (9, 1, 4, 4) and owner.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
        labels = torch.tensor([int(toy.labels[(toy.images == row).flatten(1).all(1)][0]) for row in rows])
        assert not bool((labels == TARGETS[owner]).any())
    again = list(search_batches(toy.images, toy.labels, TARGETS, batch_size=3, steps=5, seed=0))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(steps, again))

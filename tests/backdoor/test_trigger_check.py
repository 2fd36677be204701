"""Placing a recovered trigger where the model answers to it, and measuring its success."""

import pytest
import torch
from torch import nn

from captum_classpattern.backdoor import (
    locate_trigger,
    trigger_elsewhere,
    trigger_mirror_success,
    trigger_success,
)


class _BrightPixel(nn.Module):
    """Class 2 wins by 10 * (pixel (5, 5) - 0.5); classes 0 and 1 hold 0 and -1."""

    def forward(self, x):
        bright = x[:, 0, 5, 5]
        return torch.stack([torch.zeros_like(bright), -torch.ones_like(bright), 10 * (bright - 0.5)], dim=1)


class _BrightAnywhere(nn.Module):
    """Class 2 wins by 10 * (the brightest pixel - 0.5): a pooling model answers to a bright pixel anywhere."""

    def forward(self, x):
        bright = x[:, 0].flatten(1).max(1).values
        return torch.stack([torch.zeros_like(bright), -torch.ones_like(bright), 10 * (bright - 0.5)], dim=1)


def _data():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(30, 1, 8, 8, generator=generator) * 0.3
    return images, torch.arange(30) % 3


def test_a_trigger_recovered_off_target_is_moved_onto_the_pixel_the_model_reads():
    images, labels = _data()
    trigger_map = torch.zeros(8, 8)
    trigger_map[3, 3] = 1.0
    values = torch.ones(1, 8, 8)
    located = locate_trigger(_BrightPixel(), trigger_map, values, images, labels, cls=2, max_shift=3)
    assert located.shift == (2, 2)
    assert located.map[5, 5] == 1.0 and located.map.sum() == 1.0
    in_place = locate_trigger(_BrightPixel(), located.map, values, images, labels, cls=2, max_shift=0)
    assert located.margin == in_place.margin and in_place.shift == (0, 0)
    assert trigger_success(_BrightPixel(), located.map >= 0.5, located.values, images, labels, cls=2) == 1.0
    assert trigger_success(_BrightPixel(), trigger_map >= 0.5, values, images, labels, cls=2) == 0.0


def test_a_trigger_already_in_place_stays_and_shifts_never_wrap_around():
    images, labels = _data()
    trigger_map = torch.zeros(8, 8)
    trigger_map[5, 5] = 1.0
    located = locate_trigger(_BrightPixel(), trigger_map, torch.ones(1, 8, 8), images, labels, cls=2, max_shift=4)
    assert located.shift == (0, 0)
    edge = torch.zeros(8, 8)
    edge[7, 7] = 1.0  # only shifts up and left keep it inside
    moved = locate_trigger(_BrightPixel(), edge, torch.ones(1, 8, 8), images, labels, cls=2, max_shift=2)
    assert moved.shift[0] <= 0 and moved.shift[1] <= 0 and moved.map.sum() == 1.0


def test_bad_arguments_are_refused():
    images, labels = _data()
    with pytest.raises(ValueError, match="height and width"):
        locate_trigger(_BrightPixel(), torch.zeros(4, 4), torch.ones(1, 4, 4), images, labels, cls=2)
    with pytest.raises(ValueError, match="max_shift"):
        locate_trigger(_BrightPixel(), torch.zeros(8, 8), torch.ones(1, 8, 8), images, labels, cls=2, max_shift=-1)
    with pytest.raises(ValueError, match="outside (the target )?class"):
        trigger_success(_BrightPixel(), torch.ones(8, 8), torch.ones(1, 8, 8), images, torch.full((30,), 2), cls=2)


def test_a_trigger_the_model_reads_at_one_pixel_works_nowhere_else_and_one_it_pools_works_everywhere():
    images, labels = _data()
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[5, 5] = True
    values = torch.ones(1, 8, 8)
    assert trigger_success(_BrightPixel(), mask, values, images, labels, cls=2) == 1.0
    assert trigger_elsewhere(_BrightPixel(), mask, values, images, labels, cls=2) == 0.0
    assert trigger_elsewhere(_BrightAnywhere(), mask, values, images, labels, cls=2) == 1.0
    # The stamp's own values are kept as they move: a dark stamp works nowhere.
    assert trigger_elsewhere(_BrightAnywhere(), mask, torch.zeros(1, 8, 8), images, labels, cls=2) == 0.0


def test_a_stamp_that_cannot_move_or_is_empty_has_no_other_place():
    images, labels = _data()
    whole = torch.ones(8, 8, dtype=torch.bool)
    assert trigger_elsewhere(_BrightAnywhere(), whole, torch.ones(1, 8, 8), images, labels, cls=2) == 0.0
    empty = torch.zeros(8, 8, dtype=torch.bool)
    assert trigger_elsewhere(_BrightAnywhere(), empty, torch.ones(1, 8, 8), images, labels, cls=2) == 0.0


def test_trigger_elsewhere_refuses_bad_arguments_and_leaves_the_inputs_alone():
    images, labels = _data()
    before = images.clone()
    with pytest.raises(ValueError, match="height and width"):
        trigger_elsewhere(_BrightPixel(), torch.ones(4, 4, dtype=torch.bool), torch.ones(1, 8, 8), images, labels, 2)
    with pytest.raises(ValueError, match="outside (the target )?class"):
        trigger_elsewhere(_BrightPixel(), torch.ones(2, 2).bool().repeat(4, 4), torch.ones(1, 8, 8), images,
                          torch.full((30,), 2), cls=2)  # fmt: skip
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[0, 0] = True
    trigger_elsewhere(_BrightAnywhere(), mask, torch.ones(1, 8, 8), images, labels, cls=2)
    assert torch.equal(images, before)


class _BrightPixelOrMirror(nn.Module):
    """Class 2 wins by 10 * (the brighter of pixels (5, 5) and (5, 2) - 0.5): trained on flipped images."""

    def forward(self, x):
        bright = torch.maximum(x[:, 0, 5, 5], x[:, 0, 5, 2])
        return torch.stack([torch.zeros_like(bright), -torch.ones_like(bright), 10 * (bright - 0.5)], dim=1)


def test_a_trigger_works_mirrored_only_where_the_model_learned_both_places():
    images, labels = _data()
    before = images.clone()
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[5, 5] = True
    values = torch.zeros(1, 8, 8)
    values[0, 5, 5] = 1.0  # the values move with the mask: a mirrored dark pixel would flip nothing
    assert trigger_mirror_success(_BrightPixel(), mask, values, images, labels, cls=2) == 0.0
    assert trigger_mirror_success(_BrightPixelOrMirror(), mask, values, images, labels, cls=2) == 1.0
    assert torch.equal(images, before)
    with pytest.raises(ValueError, match="height and width"):
        trigger_mirror_success(_BrightPixel(), mask, torch.ones(1, 4, 4), images, labels, cls=2)

"""Images handed to a model in channels-last format: same logits, a fallback for models that refuse it."""

import pytest
import torch
from torch import nn

from captum_classpattern._utils import ChannelsLastInputs, channels_last_inputs


class _Recording(nn.Module):
    """A small CNN that notes the memory format of every input it is given."""

    def __init__(self, flatten_with_view: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4 * 6 * 6, 5)
        self.flatten_with_view = flatten_with_view
        self.formats = []

    def forward(self, images):
        self.formats.append(images.is_contiguous(memory_format=torch.channels_last) and not images.is_contiguous())
        features = torch.relu(self.conv(images))
        flat = features.view(len(images), -1) if self.flatten_with_view else features.flatten(1)
        return self.head(flat)


def test_the_model_gets_channels_last_images_and_returns_the_same_logits():
    model = _Recording().eval()
    images = torch.rand(4, 3, 6, 6)
    expected = model(images)
    got = ChannelsLastInputs(model)(images)
    assert model.formats == [False, True]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert images.is_contiguous()  # the caller's tensor keeps its layout


def test_a_model_that_views_its_activations_falls_back_to_contiguous_images_for_good():
    model = _Recording(flatten_with_view=True).eval()
    images = torch.rand(4, 3, 6, 6)
    with pytest.raises(RuntimeError):
        model(images.contiguous(memory_format=torch.channels_last))  # the premise: this model refuses the format
    model.formats.clear()
    fast = ChannelsLastInputs(model)
    torch.testing.assert_close(fast(images), model(images))
    fast(images)
    assert not fast.enabled and model.formats == [True, False, False, False]


def test_an_error_that_is_not_about_the_layout_reaches_the_caller():
    fast = ChannelsLastInputs(_Recording().eval())
    with pytest.raises(RuntimeError, match="channels"):
        fast(torch.rand(2, 5, 6, 6))  # five channels where the model takes three


def test_other_inputs_pass_unchanged_and_the_callers_model_keeps_its_mode():
    model = _Recording().train()
    fast = channels_last_inputs(model)
    assert channels_last_inputs(fast) is fast and not fast.training and model.training
    vector_model = nn.Linear(3, 2)
    vector = torch.rand(5, 3)
    torch.testing.assert_close(ChannelsLastInputs(vector_model)(vector), vector_model(vector))

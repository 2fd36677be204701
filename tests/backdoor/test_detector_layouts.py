"""The detectors on a 3-channel model that cannot take channels-last images: they fall back and still run.

On a CPU the scan, Neural Cleanse and MM-BD hand 3-channel image batches to the model in
channels-last memory format; a model that flattens an activation with ``view`` refuses it,
and must get contiguous images instead, with the same results as a model that does not.
"""

import torch
from torch import nn

from captum_classpattern.backdoor import (
    MaxMarginSettings,
    NeuralCleanseSettings,
    ScanSettings,
    ScoringSettings,
    max_margin_detection,
    neural_cleanse,
    scan,
)


class _TinyCNN(nn.Module):
    def __init__(self, flatten_with_view: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4 * 8 * 8, 3)
        self.flatten_with_view = flatten_with_view
        self.channels_last_batches = 0

    def forward(self, images):
        self.channels_last_batches += int(not images.is_contiguous())
        features = torch.relu(self.conv(images))
        flat = features.view(len(images), -1) if self.flatten_with_view else features.reshape(len(images), -1)
        return self.head(flat)


def _images():
    generator = torch.Generator().manual_seed(0)
    return torch.rand(24, 3, 8, 8, generator=generator), torch.arange(3).repeat(8)


def test_a_model_that_views_its_activations_gets_the_same_verdicts_as_one_that_does_not():
    images, labels = _images()
    viewing, reshaping = _TinyCNN(flatten_with_view=True).eval(), _TinyCNN(flatten_with_view=False).eval()
    settings = ScanSettings(steps=6, blend_steps=3, warp_steps=3)
    scoring = ScoringSettings(max_eval=8)
    found = [scan(model, images, labels, settings, scoring=scoring) for model in (viewing, reshaping)]
    assert reshaping.channels_last_batches > 10  # the premise: the other model did get channels-last batches
    assert found[0].flagged == found[1].flagged
    torch.testing.assert_close(torch.tensor(found[0].scores), torch.tensor(found[1].scores), atol=0.2, rtol=0)
    cleanse = NeuralCleanseSettings(steps=4, steps_per_epoch=2, batch_size=8)
    indices = [neural_cleanse(model, images, labels, cleanse).anomaly_index for model in (viewing, reshaping)]
    torch.testing.assert_close(torch.tensor(indices[0]), torch.tensor(indices[1]), atol=1e-3, rtol=1e-3)
    margin = MaxMarginSettings(images_per_class=2, steps=3)
    statistics = [max_margin_detection(model, (3, 8, 8), margin).statistics for model in (viewing, reshaping)]
    torch.testing.assert_close(torch.tensor(statistics[0]), torch.tensor(statistics[1]), atol=1e-4, rtol=1e-4)
    assert viewing.channels_last_batches == 3  # one refused try per detector, then contiguous batches only

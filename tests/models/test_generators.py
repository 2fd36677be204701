"""The concept autoencoder and segmenter: shapes, errors, a short training run, seeded latents."""

import pytest
import torch
from torch import nn

from captum_classpattern.dissection import ConceptDataset, ConceptSegmenter, segmentation_iou
from captum_classpattern.models import ConceptAutoencoder
from captum_classpattern.training import concept_latents, train_autoencoder


@pytest.mark.usefixtures("one_thread")
def test_autoencoder_shapes_and_layers():
    net = ConceptAutoencoder(code_channels=4, width=8)
    code = net.encoder(torch.rand(2, 3, 32, 32))
    assert code.shape == (2, 4, 8, 8)
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 3, 32, 32)
    names = dict(net.decoder.named_children())
    assert names["conv1"].out_channels == 8 and names["conv2"].out_channels == 4
    with pytest.raises(ValueError, match="width"):
        ConceptAutoencoder(width=2)
    with pytest.raises(ValueError, match="code_channels"):
        ConceptAutoencoder(code_channels=0)


@pytest.mark.usefixtures("one_thread")
def test_segmenter_paints_the_classified_shape_on_the_object():
    data = ConceptDataset(10, seed=0)
    images, masks, _, labels = data.tensors()
    oracle = OracleShapes(labels, data.num_classes)
    segmenter = ConceptSegmenter(oracle)
    predicted = segmenter(images)
    assert predicted.shape == (10, 2, 32, 32) and predicted.dtype == torch.long
    assert torch.equal(predicted[:, 0] > 0, predicted[:, 1] > 0)
    ious = segmentation_iou(segmenter, data)
    assert min(ious.values()) > 0.9 and "plain" not in ious
    with pytest.raises(TypeError, match="shape_net"):
        ConceptSegmenter("net")


class OracleShapes(nn.Module):
    """Returns the true shape of each image, in order (one call)."""

    def __init__(self, labels, classes):
        super().__init__()
        self.logits = nn.functional.one_hot(labels, classes).float()

    def forward(self, images):
        return self.logits[: images.shape[0]]


@pytest.mark.slow  # the first Adam step of a process imports for seconds
@pytest.mark.usefixtures("one_thread")
def test_train_autoencoder_lowers_the_loss_and_latents_are_seeded():
    images = ConceptDataset(16, seed=0).tensors()[0]
    torch.manual_seed(0)
    net = ConceptAutoencoder(code_channels=4, width=8)
    with torch.no_grad():
        before = float(((net(images) - images) ** 2).mean())
    trained = train_autoencoder(net, images, epochs=2, batch_size=8)
    assert trained is net and not net.training
    with torch.no_grad():
        after = float(((net(images) - images) ** 2).mean())
    assert after < before
    first = concept_latents(net, 5, seed=1)
    assert first.shape == (5, 4, 8, 8)
    assert torch.equal(first, concept_latents(net, 5, seed=1))
    assert not torch.equal(first, concept_latents(net, 5, seed=2))
    with pytest.raises(ValueError, match="noise"):
        concept_latents(net, 5, noise=-1.0)
    with pytest.raises(ValueError, match="epochs"):
        train_autoencoder(net, images, epochs=0)

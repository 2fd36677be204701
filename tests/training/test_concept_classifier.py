"""The cached concept classifier of the dissection examples."""

import pytest
import torch

from captum_classpattern.dissection import ConceptDataset
from captum_classpattern.models import concept_cnn
from captum_classpattern.training import concept_classifier, train_one_cycle


def test_concept_cnn_has_the_named_layers_dissection_uses():
    model = concept_cnn(num_classes=5, width=12)
    names = dict(model.named_modules())
    assert "features.relu4" in names and "head" in names
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 5)
    assert model[1:](torch.rand(2, 12, 8, 8)).shape == (2, 5)  # the head after the features


@pytest.mark.parametrize("bad", [0, -1, 1.5])
def test_concept_cnn_refuses_bad_sizes(bad):
    with pytest.raises(ValueError, match="width"):
        concept_cnn(width=bad)


def test_train_one_cycle_learns_and_is_seeded():
    torch.set_num_threads(1)
    images, _, _, labels = ConceptDataset(600, seed=0).tensors()
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        runs.append(train_one_cycle(concept_cnn(width=16), images, labels, epochs=6, seed=0))
    assert not runs[0].training
    for a, b in zip(runs[0].parameters(), runs[1].parameters()):
        assert torch.equal(a, b)
    with torch.no_grad():
        assert (runs[0](images).argmax(1) == labels).float().mean() > 0.35  # 5 classes: chance is 0.2


def test_concept_classifier_is_cached_by_its_settings(tmp_path):
    torch.set_num_threads(1)
    first = concept_classifier(train=150, epochs=1, width=8, cache_dir=str(tmp_path))
    assert len(list(tmp_path.iterdir())) == 1
    again = concept_classifier(train=150, epochs=1, width=8, cache_dir=str(tmp_path))
    for a, b in zip(first.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    concept_classifier(train=150, epochs=1, width=8, seed=1, cache_dir=str(tmp_path))
    assert len(list(tmp_path.iterdir())) == 2

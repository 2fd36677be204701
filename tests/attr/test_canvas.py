"""Canvas selection: index, confident, best of n, and its errors."""

import pytest
import torch

from captum_classpattern import select_canvases


def test_confident_canvas_is_the_most_probable_image(trained_digits_model, digits16):
    images, labels = digits16.search.images, digits16.search.labels
    canvas = select_canvases(trained_digits_model, images, labels, [2], "confident")[0]
    with torch.no_grad():
        probs = trained_digits_model(images[labels == 2]).softmax(1)[:, 2]
    assert torch.equal(canvas, images[labels == 2][probs.argmax()])


def test_index_strategy_and_loader(trained_digits_model, digits16):
    images, labels = digits16.search.images, digits16.search.labels
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels), batch_size=50)
    by_index = select_canvases(trained_digits_model, loader, None, [5, 6], "index", index=1)
    assert torch.equal(by_index[0], images[labels == 5][1])
    assert torch.equal(by_index[1], images[labels == 6][1])


def test_best_of_n_returns_one_canvas_of_each_class(trained_digits_model, digits16):
    images, labels = digits16.search.images, digits16.search.labels
    picked = select_canvases(trained_digits_model, images, labels, [0, 1], "best_of_n", n=2, search_steps=3)
    for canvas, cls in zip(picked, (0, 1)):
        assert any(torch.equal(canvas, img) for img in images[labels == cls])


def test_canvas_errors(trained_digits_model, digits16):
    with pytest.raises(ValueError, match="strategy"):
        select_canvases(trained_digits_model, digits16.search.images, digits16.search.labels, [0], "best")
    with pytest.raises(ValueError, match="needs labels"):
        select_canvases(trained_digits_model, digits16.search.images, None, [0])
    with pytest.raises(ValueError, match="no images"):
        few = digits16.search.labels.clone()
        few[few == 3] = 4
        select_canvases(trained_digits_model, digits16.search.images, few, [3])

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


@pytest.mark.parametrize(
    "change, error, message",
    [
        (dict(labels=torch.arange(12).float() % 3 + 0.5), TypeError, "labels must hold integer class indices"),
        (dict(labels=["a"] * 12), TypeError, "map class names to indices"),
        (dict(classes=[1.0]), TypeError, r"classes\[0\] must be an int class index"),
        (dict(classes=5), ValueError, "classes class 5 is out of range: the model has 3 classes"),
        (dict(index=-1, strategy="index"), ValueError, "index must be an int >= 0"),
        (dict(n=0, strategy="best_of_n"), ValueError, "n must be a positive int"),
        (dict(search_steps=0, strategy="best_of_n"), ValueError, "search_steps must be a positive int"),
    ],
)
def test_select_canvases_refuses_bad_labels_classes_and_settings(linear_model, toy_split, change, error, message):
    kwargs = {"images": toy_split.images, "labels": toy_split.labels, "classes": [0, 1], **change}
    with pytest.raises(error, match=message):
        select_canvases(linear_model, **kwargs)


def test_select_canvases_passes_additional_forward_args_to_the_model(toy_split):
    class Shifted(torch.nn.Module):
        def forward(self, x, shift):
            return torch.stack([x.flatten(1).mean(1), shift - x.flatten(1).mean(1), torch.zeros(x.shape[0])], 1)

    canvases = select_canvases(Shifted(), toy_split.images, toy_split.labels, [0, 1], additional_forward_args=1.0)
    class_0, class_1 = toy_split.images[toy_split.labels == 0], toy_split.labels == 1
    # Class 0's logit is the mean brightness: its brightest image wins; class 1 prefers the darkest.
    assert torch.equal(canvases[0], class_0[class_0.flatten(1).mean(1).argmax()])
    assert torch.equal(canvases[1], toy_split.images[class_1][toy_split.images[class_1].flatten(1).mean(1).argmin()])

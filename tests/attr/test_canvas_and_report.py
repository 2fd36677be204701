"""Canvas selection and the report file."""
import json

import pytest
import torch

from captum_classpattern import SearchReport, load_report, select_canvases
from captum_classpattern.models import cifar_resnet
from captum_classpattern.pipeline import ClassReport


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


def test_report_round_trip(tmp_path):
    report = SearchReport([ClassReport(class_=0, k=51, predictive_power=0.5, floor=0.0, random=0.1,
                                       baselines={"Saliency": 0.2}, name="zero")], test_accuracy=0.9)
    path = tmp_path / "out" / "report.json"
    report.save(path)
    raw = json.loads(path.read_text())
    assert set(raw["classes"][0]) >= {"class", "k", "predictive_power", "floor", "random", "baselines"}
    assert load_report(path) == report
    assert "mean" in report.table()
    assert list(tmp_path.joinpath("out").iterdir()) == [path]  # no temporary file left behind
    path.write_text("[]")
    with pytest.raises(ValueError, match="not a classpattern search report"):
        load_report(path)


def test_cifar_resnet_has_a_3x3_stem():
    model = cifar_resnet(18)
    assert model.conv1.kernel_size == (3, 3) and model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError):
        cifar_resnet(20)

"""The ImageNet path: streamed image folders, composites capped per model call, power at a budget."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import datasets, transforms

from captum_classpattern import ClassPattern
from captum_classpattern.attr import ImageStream, SearchSchedule
from captum_classpattern.data import Split
from captum_classpattern.metrics import wilson_interval
from captum_classpattern.models import SmallCNN
from captum_classpattern.pipeline import ClassReport, PowerSample, SearchReport, search_classes

SHORT = SearchSchedule(steps=4)
SETTINGS = dict(schedule=SHORT, baselines=("Saliency",), seed=1, show_progress=False)

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore:only .* pixels asked for have a positive score"),  # an untrained model
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Three classes of five random 3 x 10 x 10 PNGs, as an ImageFolder and as stacked tensors."""
    root = tmp_path_factory.mktemp("images")
    generator = np.random.default_rng(0)
    for cls in range(3):
        (root / f"class{cls}").mkdir()
        for i in range(5):
            pixels = generator.integers(0, 256, (10, 10, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"class{cls}" / f"{i}.png")
    dataset = datasets.ImageFolder(str(root), transforms.ToTensor())
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    return root, dataset, Split(images, torch.tensor(dataset.targets))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return SmallCNN(3, 3, 4).eval()


class Counting(torch.nn.Module):
    """A model that records the largest batch it was called with."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.largest = 0

    def forward(self, x):
        self.largest = max(self.largest, x.shape[0])
        return self.inner(x)


@pytest.mark.parametrize("schedule", ["paper", SHORT])
def test_streamed_folder_search_gives_the_maps_of_the_same_images_in_a_tensor(folder, model, schedule):
    _, dataset, split = folder
    canvases = split.images[[0, 5, 10]]
    explainer = ClassPattern(model)
    common = dict(target=[0, 1, 2], schedule=schedule, seed=3)
    from_tensor = explainer.attribute(canvases, baselines=split.images, baseline_labels=split.labels, **common)
    streamed = explainer.attribute(canvases, baselines=ImageStream(dataset, batch_size=4), **common)
    plain_dataset = explainer.attribute(canvases, baselines=dataset, **common)
    assert torch.equal(from_tensor, streamed) and torch.equal(from_tensor, plain_dataset)


def test_workers_do_not_change_the_maps(folder, model):
    _, dataset, split = folder
    canvases = split.images[[0, 5]]
    maps = [
        ClassPattern(model).attribute(
            canvases, target=[0, 1], baselines=ImageStream(dataset, num_workers=workers), schedule=SHORT, seed=0
        )
        for workers in (0, 2)
    ]
    assert torch.equal(maps[0], maps[1])


@pytest.mark.parametrize("strategy", ["index", "confident"])
def test_search_classes_on_a_stream_equals_the_tensor_search(folder, model, strategy):
    _, dataset, split = folder
    from_tensor = search_classes(model, split, split, [0, 1, 2], canvas_strategy=strategy, **SETTINGS)
    streamed = search_classes(model, ImageStream(dataset), split, [0, 1, 2], canvas_strategy=strategy, **SETTINGS)
    assert torch.equal(from_tensor.canvases, streamed.canvases) and torch.equal(from_tensor.maps, streamed.maps)
    assert from_tensor.report == streamed.report


def test_chunked_and_checkpointed_stream_search_equals_one_call(folder, model, tmp_path):
    _, dataset, split = folder
    stream, sample = ImageStream(dataset), PowerSample(ImageStream(dataset), per_class=3)
    whole = search_classes(model, stream, sample, [0, 1, 2], **SETTINGS)
    chunked = search_classes(model, stream, sample, [0, 1, 2], checkpoint_dir=tmp_path, chunk_size=2, **SETTINGS)
    resumed = search_classes(model, stream, sample, [0, 1, 2], checkpoint_dir=tmp_path, resume=True, **SETTINGS)
    for other in (chunked, resumed):
        assert torch.equal(whole.maps, other.maps) and whole.report == other.report
    with pytest.raises(ValueError, match="another run"):
        other_sample = PowerSample(ImageStream(dataset), per_class=2)
        search_classes(model, stream, other_sample, [0, 1, 2], checkpoint_dir=tmp_path, resume=True, **SETTINGS)


def test_the_composites_cap_bounds_the_model_batch_and_keeps_the_maps(folder, model):
    _, dataset, split = folder
    canvases = split.images[[0, 5, 10]]
    counting = Counting(model)
    common = dict(target=[0, 1, 2], baselines=split.images, baseline_labels=split.labels, schedule="paper", seed=2)
    free = ClassPattern(counting).attribute(canvases, **common)
    assert counting.largest == 12  # 3 canvases x batches of 4
    counting.largest = 0
    capped = ClassPattern(counting).attribute(canvases, max_forward_batch=5, **common)
    assert counting.largest <= 5
    assert torch.allclose(free, capped, atol=1e-6) or (free - capped).abs().gt(1e-6).float().mean() < 0.02


def test_search_classes_on_a_stream_calls_the_model_with_at_most_its_batch_size(folder, model):
    _, dataset, split = folder
    counting = Counting(model)
    stream = ImageStream(dataset, batch_size=3)
    settings = dict(SETTINGS, baselines=())
    outcome = search_classes(counting, stream, PowerSample(stream, per_class=4), [0, 1, 2], **settings)
    assert 0 < counting.largest <= 3
    uncapped = search_classes(model, split, split, [0, 1, 2], **settings)
    assert torch.allclose(outcome.maps, uncapped.maps, atol=1e-6)


def test_power_sample_is_seeded_and_takes_per_class_images(folder):
    _, dataset, split = folder
    sample = PowerSample(split, per_class=2, seed=4)
    chosen = sample.indices()
    assert torch.equal(chosen, PowerSample(split, per_class=2, seed=4).indices())
    assert torch.equal(torch.bincount(split.labels[chosen]), torch.tensor([2, 2, 2]))
    assert not torch.equal(chosen, PowerSample(split, per_class=2, seed=5).indices())
    assert torch.equal(PowerSample(ImageStream(dataset), per_class=2, seed=4).indices(), chosen)
    assert torch.equal(PowerSample(split).indices(), torch.arange(15))


def test_budgeted_measurement_on_all_images_matches_the_plain_one(trained_digits_model, digits16):
    classes = [0, 3, 7]
    plain = search_classes(trained_digits_model, digits16.search, digits16.eval, classes, **SETTINGS)
    budget = search_classes(trained_digits_model, digits16.search, PowerSample(digits16.eval), classes, **SETTINGS)
    for a, b in zip(plain.report.classes, budget.report.classes):
        assert b.measured == int((digits16.eval.labels != a.class_).sum())
        assert a.predictive_power == pytest.approx(b.predictive_power, abs=2 / b.measured)
        assert a.floor == pytest.approx(b.floor, abs=2 / b.measured)
        assert a.random == pytest.approx(b.random, abs=2 / b.measured)
        assert a.baselines["Saliency"] == pytest.approx(b.baselines["Saliency"], abs=2 / b.measured)
        low, high = b.power_interval
        assert low <= b.predictive_power <= high
        assert a.power_interval is None and a.measured is None


def test_wilson_interval_values_coverage_and_errors():
    low, high = wilson_interval(40, 100)
    assert (round(low, 3), round(high, 3)) == (0.309, 0.498)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    generator = torch.Generator().manual_seed(0)
    draws = torch.binomial(torch.full((2000,), 60.0), torch.full((2000,), 0.3), generator=generator).long()
    covered = [low <= 0.3 <= high for low, high in (wilson_interval(int(d), 60) for d in draws)]
    assert 0.92 <= sum(covered) / len(covered) <= 0.98
    for bad in [(5, 4), (-1, 3), (0, 0)]:
        with pytest.raises(ValueError):
            wilson_interval(*bad)
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(1, 2, confidence=1.0)
    with pytest.raises(TypeError):
        wilson_interval(1.0, 2)


def test_the_interval_survives_the_json_round_trip_and_old_reports_are_unchanged(tmp_path):
    row = ClassReport(0, 5, 0.5, 0.1, 0.2, {"Saliency": 0.3}, "zero", (0.4, 0.6), 100)
    report = SearchReport([row, ClassReport(1, 5, 0.5, 0.1, 0.2, {"Saliency": 0.3})])
    report.to_json(tmp_path / "report.json")
    again = SearchReport.from_json(tmp_path / "report.json")
    assert again == report and again.classes[0].power_interval == (0.4, 0.6)
    assert set(json.loads((tmp_path / "report.json").read_text())["classes"][1]) == {
        "class",
        "k",
        "predictive_power",
        "floor",
        "random",
        "baselines",
        "name",
    }
    table = report.table()
    assert "power CI" in table and "0.400-0.600" in table
    assert "power CI" not in SearchReport([ClassReport(1, 5, 0.5, 0.1, 0.2)]).table()


def test_bad_streams_and_sources_are_refused(folder, model):
    root, dataset, split = folder
    with pytest.raises(ValueError, match="needs the label"):
        ImageStream(torch.utils.data.TensorDataset(split.images))
    with pytest.raises(ValueError, match="one label per item"):
        ImageStream(dataset, labels=[0, 1])
    with pytest.raises(TypeError, match="map-style"):
        ImageStream([1, 2, 3].__iter__())
    with pytest.raises(ValueError, match="num_workers"):
        ImageStream(dataset, num_workers=-1)
    canvases = split.images[[0]]
    with pytest.raises(ValueError, match="carries its own labels"):
        ClassPattern(model).attribute(canvases, target=0, baselines=ImageStream(dataset), baseline_labels=split.labels)
    no_tensor = datasets.ImageFolder(str(root))
    with pytest.raises(TypeError, match="ToTensor"):
        ClassPattern(model).attribute(canvases, target=0, baselines=ImageStream(no_tensor), schedule=SHORT)
    resized = datasets.ImageFolder(str(root), transforms.Compose([transforms.Resize(8), transforms.ToTensor()]))
    with pytest.raises(ValueError, match="resize them"):
        ClassPattern(model).attribute(canvases, target=0, baselines=ImageStream(resized), schedule=SHORT)
    with pytest.raises(TypeError, match="search must be"):
        search_classes(model, split.images, split, [0], **SETTINGS)
    with pytest.raises(TypeError, match="held_out must be"):
        search_classes(model, split, split.images, [0], **SETTINGS)
    with pytest.raises(ValueError, match="per_class"):
        PowerSample(split, per_class=0)
    with pytest.raises(ValueError, match="confidence"):
        PowerSample(split, confidence=1.5)


class CountingReads(torch.utils.data.Dataset):
    """An ImageFolder that counts how often each of its images is read (decoded)."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.targets = dataset.targets
        self.reads = [0] * len(dataset)

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        self.reads[index] += 1
        return self.dataset[index]


def test_a_streamed_folder_is_decoded_once_per_run(folder, model):
    _, dataset, _ = folder
    counted = CountingReads(dataset)
    stream = ImageStream(counted, batch_size=4)
    search, held_out = stream.subset(range(0, 15, 2)), stream.subset(range(1, 15, 2))
    cached = search_classes(model, search, held_out, [0, 1, 2], chunk_size=1, **SETTINGS)
    assert max(counted.reads) == 1 and stream.cache.decoded == sum(counted.reads)
    assert stream.cache.reused > stream.cache.decoded  # read again by the steps and by every chunk measured
    # Off, the same run reads the images again and again, and gives the same numbers.
    uncached = CountingReads(dataset)
    plain = ImageStream(uncached, batch_size=4, cache_bytes=0)
    again = search_classes(
        model, plain.subset(range(0, 15, 2)), plain.subset(range(1, 15, 2)), [0, 1, 2], chunk_size=1, **SETTINGS
    )
    assert max(uncached.reads) > 3
    assert torch.equal(cached.maps, again.maps)
    assert [r.predictive_power for r in cached.report.classes] == [r.predictive_power for r in again.report.classes]


def test_the_decoded_images_kept_stay_within_the_budget(folder, model):
    _, dataset, _ = folder
    one_image = 3 * 10 * 10 * 4
    stream = ImageStream(dataset, batch_size=4, cache_bytes=5 * one_image)
    list(stream)
    list(stream)
    assert stream.cache.used == 5 * one_image and stream.cache.decoded == 15 + 10 and stream.cache.reused == 5
    with pytest.raises(ValueError, match="cache_bytes"):
        ImageStream(dataset, cache_bytes=-1)

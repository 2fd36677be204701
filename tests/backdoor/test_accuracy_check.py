"""The scan's accuracy check: a class recognised far less often than clean references recognise it is flagged."""

import numpy as np
import pytest
import torch

from captum_classpattern.backdoor import ScanResult, ScanSettings, ScoringSettings, scan
from captum_classpattern.backdoor._accuracy_check import weakened_classes
from captum_classpattern.cli._scan import _print_findings
from captum_classpattern.models import SmallCNN
from captum_classpattern.training import train_classifier

pytestmark = pytest.mark.usefixtures("one_thread")
# No probes and short searches: the check reads only the held-out accuracies.
FAST = ScanSettings(steps=30, blend_steps=0, warp_steps=0)
SCORING = ScoringSettings(max_eval=100)
WEAK = 3


class _HalfForgotten(torch.nn.Module):
    """A model that no longer recognises one class on most images: what poisoning part of it leaves.

    Which images is fixed by each image's pixels (a pseudo-random bit of their sum), so every
    scan sees the same ones forgotten (about two thirds).
    """

    def __init__(self, model, cls):
        super().__init__()
        self.model, self.cls = model, cls

    def forward(self, images):
        forgotten = torch.frac(images.sum(dim=(1, 2, 3)) * 7.31) > 0.3
        penalty = 30.0 * torch.nn.functional.one_hot(torch.tensor(self.cls), 10)
        return self.model(images) - forgotten.unsqueeze(1).to(images.dtype) * penalty


def _scan(model, data, **kwargs):
    held_out = (data.eval.images, data.eval.labels)
    return scan(model, data.search.images, data.search.labels, FAST, scoring=SCORING, held_out=held_out, **kwargs)


@pytest.fixture(scope="module")
def references(trained_digits_model, digits16, one_thread):
    """Scans of two clean digits models of one design (different seeds), and a third clean model."""
    trained = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        model = SmallCNN(1, 10, 8)
        trained.append(train_classifier(model, digits16.train.images, digits16.train.labels, epochs=6, seed=seed))
    return [_scan(trained_digits_model, digits16), _scan(trained[0], digits16)], trained[1]


def test_rule_flags_only_a_class_far_below_the_references():
    references = [[0.90, 0.80, 0.60, 0.70, 0.85], [0.92, 0.78, 0.55, 0.72, 0.88]]
    index, rows = weakened_classes([0.91, 0.79, 0.58, 0.35, 0.86], references, 3.0)
    assert rows == [3] and index[3] > 3.0 and np.all(index[[0, 1, 2, 4]] < 3.0)
    # One-sided: a class recognised better than by the references is not suspicious.
    index, rows = weakened_classes([0.91, 0.79, 0.58, 0.99, 0.86], references, 3.0)
    assert rows == [] and index[3] == 0.0
    # A naturally hard class (low for every model) is not weakened.
    assert weakened_classes([0.91, 0.79, 0.56, 0.71, 0.86], references, 3.0)[1] == []


def test_rule_needs_two_references_and_matching_classes():
    assert weakened_classes([0.9, 0.2, 0.8], [[0.9, 0.8, 0.8]], 3.0)[0].size == 0
    assert weakened_classes([], [[0.9, 0.8, 0.8], [0.9, 0.8, 0.8]], 3.0)[0].size == 0
    assert weakened_classes([0.9, 0.2, 0.8], [[0.9, 0.8, 0.8], [0.9, 0.8, 0.8], []], 3.0)[0].size == 0
    with pytest.raises(ValueError, match="same classes"):
        weakened_classes([0.9, 0.8, 0.8], [[0.9, 0.8, 0.8], [0.9, 0.8]], 3.0)


def test_a_half_forgotten_class_is_flagged_with_references_only(references, trained_digits_model, digits16, capsys):
    scans, _ = references
    suspect = _HalfForgotten(trained_digits_model, WEAK)
    result = _scan(suspect, digits16, reference=scans)
    accuracy = np.asarray(result.class_accuracy)
    # The class is still recognised (no collapse), just far less often than by clean models.
    assert 0.2 < accuracy[WEAK] < 0.8 and np.median(accuracy) > 0.8 and result.collapsed == []
    assert result.weakened == [WEAK] and WEAK in result.flagged
    assert result.accuracy_index[WEAK] > SCORING.accuracy_threshold
    assert result.most_suspicious() == WEAK and result.model_score() > 1.0
    assert len(result.reference_accuracy) == 2
    # The same scan alone cannot tell a weakened class from a hard one.
    assert result.rescore(result.score, reference=False).weakened == []
    # Kept, read back and compared again, the check holds.
    again = ScanResult.from_dict(result.to_dict())
    assert again.weakened == [WEAK] and again.reference_accuracy == result.reference_accuracy
    alone = _scan(suspect, digits16)
    assert alone.weakened == [] and alone.with_references(scans).weakened == [WEAK]
    # A record written before the references' accuracies were kept has no accuracy check.
    older = {k: v for k, v in result.to_dict().items() if k != "reference_accuracy"}
    assert ScanResult.from_dict(older).weakened == []
    _print_findings(result, [str(c) for c in range(10)], 3.0, 1.0, {"recovered_triggers": []})
    assert f"weakened class {WEAK}" in capsys.readouterr().out


def test_a_clean_model_with_references_is_not_weakened(references, digits16):
    scans, third = references
    result = _scan(third, digits16, reference=scans)
    assert result.weakened == [] and len(result.accuracy_index) == 10 and result.flagged == []

"""The zoo plan's order and the detector table's arithmetic (pure functions of the benchmark scripts)."""

import argparse
import time

import numpy as np
import pytest
import torch

from benchmarks import _detector_tables, bench_detectors, cifar10_zoo
from captum_classpattern.backdoor import PowerTable, ScanConfig, ScoringSettings
from captum_classpattern.backdoor._scan_arguments import TriggerFindings
from captum_classpattern.backdoor._scan_result import score_scan


def test_a_zoo_plan_lists_clean_models_then_every_attack_per_target():
    entries = cifar10_zoo.plan_entries("dev", ["gap"], ["patch", "wanet"])
    names = [e.name for e in entries]
    assert names == [
        "gap-natural-s0", "gap-natural-s1", "gap-natural-s2",
        "gap-patch-s0", "gap-wanet-s0", "gap-patch-t5-s0", "gap-wanet-t5-s0",
    ]  # fmt: skip
    assert "adaptive" not in cifar10_zoo.ATTACKS and "adaptive-1pct" in cifar10_zoo.ATTACKS


def _row(name, attack, target, flagged, score, success=None, detector="scan"):
    row = {"name": name, "detector": detector, "attack": attack, "target": target, "flagged": flagged,
           "score": score, "seconds": 10.0}  # fmt: skip
    if success is not None:
        row["attack_success"] = success
    return row


def test_the_table_counts_detections_false_alarms_and_working_backdoors():
    rows = [
        _row("c0", None, None, [], 0.2),
        _row("c1", None, None, [3], 1.5),
        _row("p0", "patch", 0, [0], 2.0, success=0.99),
        _row("p5", "patch", 5, [1], 0.1, success=0.97),  # flagged, but not at its target
        _row("a0", "adaptive", 0, [], 0.3, success=0.01),  # the poisoning did not take
    ]
    table = _detector_tables.summarise(rows)["scan"]
    assert table["clean"] == {"models": 2, "flagged_share": 0.5}
    patch = table["patch"]
    assert patch["detected_share"] == 0.5 and patch["detected_share_effective"] == 0.5
    # Scores 2.0 and 0.1 against clean 0.2 and 1.5: two of the four pairs are ordered right.
    assert patch["auroc"] == pytest.approx(0.5)
    adaptive = table["adaptive"]
    assert adaptive["working_models"] == 0 and adaptive["detected_share_effective"] is None
    assert table["seconds_per_model"] == 10.0


def test_the_mean_weighs_every_attack_the_same_and_the_pooled_auroc_uses_working_backdoors():
    rows = [
        _row("c0", None, None, [], 0.2),
        _row("p0", "patch", 0, [0], 2.0, success=0.99),
        _row("p5", "patch", 5, [5], 3.0, success=0.97),
        _row("w0", "wanet", 0, [], 0.1, success=0.99),
        _row("a0", "adaptive", 0, [], 5.0, success=0.01),  # did not take: in neither the mean nor the pooled AUROC
    ]
    table = _detector_tables.summarise(rows)["scan"]
    assert table["mean_detection"] == pytest.approx((1.0 + 0.0) / 2)
    assert table["auroc_all"] == pytest.approx(2 / 3)


def test_the_table_is_split_by_architecture_and_printed_as_markdown():
    rows = [
        {**_row("c0", None, None, [], 0.2), "arch": "gap"},
        {**_row("p0", "patch", 0, [0], 2.0, success=0.99), "arch": "gap"},
        {**_row("c1", None, None, [4], 1.0), "arch": "vgg"},
    ]
    by_arch = _detector_tables.summarise_by_arch(rows)
    assert sorted(by_arch) == ["gap", "vgg"]
    assert by_arch["vgg"]["scan"]["clean"] == {"models": 1, "flagged_share": 1.0}
    text = _detector_tables.markdown_tables(by_arch)
    assert "| scan | 1/1, AUROC 1.00 | 0/1 |" in text and "| scan | 1/1 |" in text


def test_the_rst_table_has_as_many_cells_per_row_as_columns():
    rows = [
        {**_row("c0", None, None, [], 0.2), "arch": "gap"},
        {**_row("p0", "patch", 0, [0], 2.0, success=0.99), "arch": "gap"},
        {**_row("s0", "sig", 0, [], 0.5, success=0.20), "arch": "gap"},
    ]
    text = _detector_tables.rst_tables(_detector_tables.summarise_by_arch(rows))
    lines = text.splitlines()
    assert lines[0].startswith(".. list-table:: Pooled CNN:") and lines[1] == "   :header-rows: 1"
    starts = [i for i, line in enumerate(lines) if line.startswith("   * - ")]
    widths = {len([line for line in lines[i + 1 : i + 8] if line.startswith("     - ")]) for i in starts}
    assert len(starts) == 2 and widths == {6}  # detector + patch, sig, clean, mean, AUROC, seconds
    assert "     - 1/1, AUROC 1.00" in lines and "     - (1 did not take)" in lines


def test_patch_triggers_are_scored_against_the_patch_and_its_mirror_place():
    rows = [
        {**_row("p2", "patch", 2, [2], 4.0, success=0.99), "reported_triggers": [2],
         "trigger_jaccard": 0.0, "trigger_jaccard_mirror": 0.6},
        {**_row("p7", "patch", 7, [7], 3.0, success=0.99), "reported_triggers": [7],
         "trigger_jaccard": 0.5, "trigger_jaccard_mirror": 0.1},
        {**_row("q7", "patch", 7, [7], 3.0, success=0.99), "reported_triggers": [7], "trigger_jaccard": 0.3},
    ]  # fmt: skip
    found = _detector_tables.summarise(rows)["scan"]["patch_triggers"]
    assert found["reported"] == 3 and found["jaccard_min"] == 0.0
    # Only the rows with both places measured count, each at its better place.
    assert found["either_place_models"] == 2 and found["either_place_mean"] == pytest.approx(0.55)
    assert found["either_place_min"] == 0.5


def test_a_trigger_recovered_at_the_mirror_place_scores_there_and_not_at_the_patch():
    entry = cifar10_zoo.entry_named("gap-patch-t2-s10")
    true_mask = bench_detectors.models.trigger_of("patch").mask(32, 32)
    mirrored = true_mask.flip(-1).float()
    assert not torch.equal(mirrored, true_mask.float())  # the zoo's patch is off the middle column
    powers = np.tile(np.linspace(0.1, 0.5, 3), (10, 1))
    found = score_scan(
        list(range(10)), torch.rand(10, 32, 32), torch.rand(10, 3, 32, 32), PowerTable([1, 2, 4], powers, [20] * 10),
        ScanConfig(scoring=ScoringSettings(k=4, auc_k=4)),
        triggers=TriggerFindings({2: mirrored}, {2: torch.rand(3, 32, 32)}, success={2: 1.0}),
    )  # fmt: skip
    findings = bench_detectors.trigger_findings(found, entry)
    assert findings["trigger_jaccard"] == 0.0 and findings["trigger_jaccard_mirror"] == 1.0
    assert findings["trigger_success"] == 1.0


def test_a_zoo_model_is_found_by_its_name_in_any_plan():
    for plan in cifar10_zoo.PLANS:
        for entry in cifar10_zoo.plan_entries(plan, ["gap"], ["patch", "sig-half"]):
            assert cifar10_zoo.entry_named(entry.name) == entry
    with pytest.raises(ValueError, match="no zoo plan"):
        cifar10_zoo.entry_named("gap-patch-t9-s99")


def _manifest_row(name, status, **numbers):
    return {"name": name, "status": status, **numbers}


def test_a_manifest_keeps_models_trained_on_another_machine_and_marks_retrained_ones():
    earlier = {
        "models": [
            _manifest_row("gap-natural-s10", "done", clean_accuracy=0.76, minutes=25.6),
            _manifest_row("gap-natural-s11", "done", clean_accuracy=0.77, minutes=29.3),
            _manifest_row("gap-natural-s12", "done", clean_accuracy=0.75, minutes=28.9),
        ]
    }
    here = {
        "models": [
            _manifest_row("gap-natural-s10", "pending"),
            _manifest_row("gap-natural-s11", "done", clean_accuracy=0.771, minutes=31.0),
            _manifest_row("gap-natural-s12", "done", clean_accuracy=0.75, minutes=28.9),
        ]
    }
    merged = cifar10_zoo.with_earlier(here, earlier)
    elsewhere, retrained, same = merged["models"]
    assert elsewhere["status"] == "done elsewhere" and elsewhere["clean_accuracy"] == 0.76
    assert retrained["clean_accuracy"] == 0.771 and retrained["earlier"] == {"clean_accuracy": 0.77, "minutes": 29.3}
    assert "earlier" not in same  # the same training written twice is not a retraining
    assert merged["counts"] == {"done elsewhere": 1, "done": 2}
    rewritten = _manifest_row("gap-natural-s11", "done", clean_accuracy=0.771, minutes=31.0)
    again = cifar10_zoo.with_earlier({"models": [rewritten]}, {"models": [retrained]})
    assert again["models"][0]["earlier"] == {"clean_accuracy": 0.77, "minutes": 29.3}


def test_the_zoo_trains_only_the_models_named_and_refuses_unknown_names():
    entries = cifar10_zoo.plan_entries("replica", ["gap"], ["patch"])
    chosen = cifar10_zoo.chosen_entries(entries, ["gap-natural-s11", "gap-patch-t7-s10"])
    assert [e.name for e in chosen] == ["gap-natural-s11", "gap-patch-t7-s10"]
    assert cifar10_zoo.chosen_entries(entries, None) == entries
    with pytest.raises(ValueError, match="gap-blend-t2-s10"):
        cifar10_zoo.chosen_entries(entries, ["gap-blend-t2-s10"])


def test_clean_models_scanned_on_another_machine_serve_as_references(tmp_path):
    entries = cifar10_zoo.plan_entries("replica", ["gap"], ["patch"])
    first, fresh, folder = tmp_path / "first", tmp_path / "fresh", tmp_path / "committed"
    (first / "detector-scans").mkdir(parents=True)
    (first / "detector-scans" / "gap-natural-s10.json").write_text('{"classes": [0, 1]}')
    assert [e.name for e in cifar10_zoo.reference_models(entries, str(first), None)] == ["gap-natural-s10"]
    assert not folder.exists()  # without a folder (the quick zoo) nothing is copied out of the cache
    assert [e.name for e in cifar10_zoo.reference_models(entries, str(first), str(folder))] == ["gap-natural-s10"]
    assert sorted(p.name for p in folder.iterdir()) == ["gap-natural-s10.json.gz"]
    # A new machine: an empty cache gets the scan back, so the model is a reference without training.
    assert [e.name for e in cifar10_zoo.reference_models(entries, str(fresh), str(folder))] == ["gap-natural-s10"]
    assert (fresh / "detector-scans" / "gap-natural-s10.json").read_text() == '{"classes": [0, 1]}'


def test_rescoring_rewrites_only_scan_ref_rows_whose_kept_scans_are_here(tmp_path, monkeypatch):
    clean = cifar10_zoo.plan_entries("replica", ["gap"], [])
    kept = tmp_path / "detector-scans"
    kept.mkdir()
    for name in ["gap-patch-t7-s10"] + [c.name for c in clean]:
        (kept / f"{name}.json").write_text("{}")
    asked = []

    def rescored(detector, entry, cache, data, references):
        asked.append((detector, entry.name, sorted(r.name for r in references)))
        return {"flagged": [7, 3], "weakened": [3], "score": 2.0, "seconds": 1.0}

    monkeypatch.setattr(bench_detectors, "detect", rescored)
    rows = [
        {**_row("gap-patch-t7-s10", "patch", 7, [7], 1.5, detector="scan-ref"), "seconds": 250.0},
        _row("gap-patch-t7-s10", "patch", 7, [7], 1.5),  # the scan alone: no references to score again
        _row("gap-blend-t2-s10", "blend", 2, [2], 3.0, detector="scan-ref"),  # trained elsewhere: no kept scan
    ]
    before = [dict(row) for row in rows]
    assert bench_detectors.rescore_rows(rows, str(tmp_path), {}, clean) == 1
    assert asked == [("scan-ref", "gap-patch-t7-s10", [c.name for c in clean])]
    # The new flags and score; the seconds stay those of the scan as run.
    assert rows[0] == {**before[0], "flagged": [7, 3], "weakened": [3], "score": 2.0}
    assert rows[1:] == before[1:]


def test_watching_scans_models_as_they_land_and_waits_for_every_reference(tmp_path, monkeypatch):
    landed = {"gap-natural-s10", "gap-natural-s11"}
    run = []

    def status(entry, cache):
        return {"status": "done" if entry.name in landed else "pending"}

    def detected(detector, entry, cache, data, references):
        run.append((entry.name, detector, len(references)))
        return {"flagged": [], "score": 0.1, "seconds": 1.0}

    monkeypatch.setattr(cifar10_zoo, "entry_status", status)
    monkeypatch.setattr(cifar10_zoo, "reference_models", lambda entries, cache, folder: [
        e for e in entries if e.attack is None and e.name in landed])  # fmt: skip
    monkeypatch.setattr(bench_detectors, "detect", detected)
    monkeypatch.setattr(bench_detectors, "attack_success", lambda name, cache: None)
    args = argparse.Namespace(plan="replica", archs=["gap"], attacks=["patch"], detectors=["scan", "scan-ref"],
                              budget_minutes=None, quick=False)  # fmt: skip
    rows = [_row("gap-natural-s10", None, None, [], 0.2)]  # scanned in an earlier run
    out = str(tmp_path / "rows.jsonl")
    assert bench_detectors.run_pending(args, rows, out, str(tmp_path), {}, 0.0)
    assert run == [("gap-natural-s11", "scan", 2)]  # no scan-ref before all three clean models exist
    landed.update({"gap-natural-s12", "gap-patch-t7-s10"})  # a zoo process finishes two more meanwhile
    assert bench_detectors.run_pending(args, rows, out, str(tmp_path), {}, 0.0)
    assert run[1:] == [
        ("gap-natural-s10", "scan-ref", 3), ("gap-natural-s11", "scan-ref", 3),
        ("gap-natural-s12", "scan", 3), ("gap-natural-s12", "scan-ref", 3),
        ("gap-patch-t7-s10", "scan", 3), ("gap-patch-t7-s10", "scan-ref", 3),
    ]  # fmt: skip
    assert len(bench_detectors._load_rows(out)) == len(rows) == 8
    landed.add("gap-blend-t2-s10")
    spent = argparse.Namespace(**{**vars(args), "attacks": ["patch", "blend"], "budget_minutes": 1.0})
    two_minutes_ago = time.perf_counter() - 120.0
    assert not bench_detectors.run_pending(spent, rows, out, str(tmp_path), {}, two_minutes_ago)
    assert len(run) == 7


def test_one_table_format_at_a_time(capsys):
    with pytest.raises(SystemExit) as stopped:
        bench_detectors.main(["--summary-only", "--markdown", "--rst"])
    assert stopped.value.code == 2 and "not allowed with" in capsys.readouterr().err


def test_a_model_whose_training_diverges_is_marked_and_not_trained_again(tmp_path, capsys):
    entry = cifar10_zoo.entry_named("vgg-iad-t2-s10")
    assert cifar10_zoo.entry_status(entry, str(tmp_path))["status"] == "pending"

    def diverges():
        raise FloatingPointError("training diverged at epoch 2, step 1 (loss nan)")

    assert not cifar10_zoo.train_or_mark(entry, str(tmp_path), diverges)
    status = cifar10_zoo.entry_status(entry, str(tmp_path))
    assert status["status"] == "diverged" and "epoch 2" in status["error"]
    assert "vgg-iad-t2-s10" in capsys.readouterr().err
    assert cifar10_zoo.train_or_mark(cifar10_zoo.entry_named("vgg-iad-t7-s10"), str(tmp_path), lambda: None)


def test_only_the_vggs_iad_models_train_at_the_lower_peak():
    def peak(name):
        return cifar10_zoo.recipe_of(cifar10_zoo.entry_named(name)).peak_lr

    assert peak("vgg-iad-t2-s10") == peak("vgg-iad-t7-s10") == 0.1
    assert peak("vgg-patch-t2-s10") == peak("vgg-natural-s10") == peak("preact18-iad-t2-s10") == 0.2
    assert cifar10_zoo.recipe_of(cifar10_zoo.entry_named("vgg-iad-t2-s10"), quick=True).epochs == 1

"""
Scanning a backdoored model
===========================

Find a BadNets backdoor in a digits CNN with class patterns, then find the poisoned
images. The class pattern of a backdoor class flips far more images, with far fewer
pixels, than that of any natural class. The story, on the bundled digits (16 x 16) and a
small CNN whose head sees positions (:class:`~captum_classpattern.models.SpatialCNN`):

1. an attacker poisons 10% of the training set: a 3 x 3 white square at the bottom-right
   corner and the label 0 (all-to-one). The backdoored model keeps its clean accuracy and
   obeys the trigger;
2. a defender who holds only clean held-out images scans every class: for the backdoor
   class a tiny pattern flips almost every image, so its score is an outlier (MAD anomaly
   index > 2). A clean twin trained without poison is scanned too: nothing should be
   flagged. Neural Cleanse, the classic baseline, runs on the same images;
3. a defender who also holds the suspect training set scores every training image by the
   power of its own tiny class pattern: the poisoned images stand out, and where their
   patterns sit recovers the trigger.

Run::

    python examples/backdoor_scan.py            # about 2 minutes on a CPU
    python examples/backdoor_scan.py --quick    # shorter searches (< 60 s)

It writes ``scan_backdoored.png``, ``scan_clean.png``, ``poisoned_images.png`` and
``results.json`` to ``--out`` (default ``examples_output/backdoor_scan``). This page shows a
``--quick`` run. How the scan was designed and how it compares with Neural Cleanse on 22
models: :doc:`../design/backdoor_benchmark`.
"""

import argparse
import json
import os
import sys
import time

import torch
from matplotlib.figure import Figure

from captum_classpattern import load_digits
from captum_classpattern.backdoor import (
    NeuralCleanseSettings,
    PatchTrigger,
    PoisonedDataset,
    ScanSettings,
    backdoor_metrics,
    neural_cleanse,
    scan,
    suspicion_scores,
)
from captum_classpattern.metrics import trigger_jaccard
from captum_classpattern.models import SpatialCNN
from captum_classpattern.training import accuracy, train_classifier
from captum_classpattern.visualization import plot_scan

TARGET = 0
TENSORS = ("maps", "values", "pattern_pixels", "trigger_maps", "trigger_values", "masks", "patterns")


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options: ``--quick``, ``--out DIR`` and ``--seed``.

    In a notebook, where ``sys.argv`` holds the kernel's own options, the defaults apply
    unless ``argv`` is given (``parse_args(["--quick"])``).
    """
    parser = argparse.ArgumentParser(description="Find a backdoor with class patterns, then the poisoned images.")
    parser.add_argument("--quick", action="store_true", help="shorter searches (< 60 s)")
    parser.add_argument(
        "--out",
        default=os.path.join("examples_output", "backdoor_scan"),
        help="folder for the figures and results.json",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the poisoning, the weights and the search")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars (shown on a terminal only)")
    if argv is None and "ipykernel" in sys.modules:
        argv = []
    return parser.parse_args(argv)


args = parse_args()
PROGRESS = not args.no_progress and sys.stderr.isatty()  # no bars in logs, notebooks or the docs build
torch.set_num_threads(1)
started = time.perf_counter()
scan_steps, nc_steps, epochs = (80, 150, 6) if args.quick else (150, 300, 10)
data = load_digits(size=16)
trigger = PatchTrigger()  # 3 x 3 white square, bottom-right
true_mask = trigger.mask(16, 16)

# %%
# 1. The attack
# -------------
#
# A head that sees positions, as in the BadNets MNIST models: with global pooling the
# model learns the trigger as "bright pixels near the right edge", and clean models more
# often carry natural backdoors. A clean twin is trained from the same seed without poison.

poisoned = PoisonedDataset((data.train.images, data.train.labels), trigger, target=TARGET, rate=0.1, seed=args.seed)
train_images, train_labels = poisoned.tensors()
models = {}
for name, (images, labels) in {
    "backdoored": (train_images, train_labels),
    "clean": (data.train.images, data.train.labels),
}.items():
    torch.manual_seed(args.seed)
    models[name] = train_classifier(
        SpatialCNN(16), images, labels, epochs=epochs, seed=args.seed, show_progress=PROGRESS
    )
metrics = backdoor_metrics(models["backdoored"], data.eval.images, data.eval.labels, trigger, TARGET)
clean_ca = accuracy(models["clean"], data.eval.images, data.eval.labels)
print(f"poisoned {poisoned.poisoned_indices.numel()} of {len(poisoned)} training images -> class {TARGET}")
print(f"clean model:      clean accuracy {clean_ca:.3f}")
print(
    f"backdoored model: clean accuracy {metrics.clean_accuracy:.3f}, attack success "
    f"{metrics.attack_success_rate:.3f}, robust accuracy {metrics.robust_accuracy:.3f}"
)

# %%
# 2. The scan, with clean held-out images only
# --------------------------------------------
#
# :func:`~captum_classpattern.backdoor.scan` searches, for every class, the smallest
# pattern that flips 80% of the other classes' images, and flags the classes whose
# pattern is an outlier. :func:`~captum_classpattern.backdoor.neural_cleanse` runs on the
# same images. Each scan figure shows the anomaly index of every class and the patterns.


def _summary(record: dict) -> dict:
    """A result's ``to_dict()`` without its maps, masks and values, so that results.json stays readable."""
    return {key: value for key, value in record.items() if key not in TENSORS}


results = {
    "attack": {
        **metrics.to_dict(),
        "clean_model_accuracy": clean_ca,
        "poisoned": int(poisoned.poisoned_indices.numel()),
    }
}
os.makedirs(args.out, exist_ok=True)
for name, model in models.items():
    result = scan(
        model,
        data.search.images,
        data.search.labels,
        ScanSettings(steps=scan_steps),
        eval_images=data.eval.images,
        eval_labels=data.eval.labels,
        trigger_mask=true_mask,
        trigger_target=TARGET,
        seed=args.seed,
        show_progress=PROGRESS,
    )
    nc = neural_cleanse(
        model,
        data.search.images,
        data.search.labels,
        NeuralCleanseSettings(steps=nc_steps),
        seed=args.seed,
        show_progress=PROGRESS,
    )
    print(f"\n{name} model, class-pattern scan ({result.seconds:.0f} s): flagged {result.flagged or 'nothing'}")
    print("  anomaly index per class: " + " ".join(f"{a:.1f}" for a in result.anomaly_index))
    print(
        f"  smallest pattern of class {TARGET} flipping 80%: {result.patterns[TARGET].k} pixels "
        f"(power {result.powers[TARGET]:.2f})"
        + (f"; trigger Jaccard {result.trigger_jaccard:.2f}" if name == "backdoored" else "")
    )
    for cls in result.flagged:
        if name == "clean" or cls != TARGET:
            # Not poisoning: this class has a natural backdoor, a tiny pattern that works.
            print(
                f"  class {cls} is flagged without poisoning: {result.patterns[cls].k} learned pixels "
                f"flip {result.powers[cls]:.0%} of the other classes' images (a natural backdoor)"
            )
    print(
        f"{name} model, Neural Cleanse ({nc.seconds:.0f} s): flagged {nc.flagged or 'nothing'}; "
        f"mask norm of class {TARGET} {nc.norms[TARGET]:.1f} (median "
        f"{sorted(nc.norms)[len(nc.norms) // 2]:.1f})"
    )
    fig, _ = plot_scan(result, [str(c) for c in result.classes], use_pyplot=False)
    fig.savefig(os.path.join(args.out, f"scan_{name}.png"), dpi=110)
    results[name] = {"scan": _summary(result.to_dict()), "neural_cleanse": _summary(nc.to_dict())}

# %%
# 3. The suspect training set: which images carry the trigger?
# -------------------------------------------------------------
#
# The scan says where to look: the training images labelled as a flagged class (all
# images if nothing was flagged). :func:`~captum_classpattern.backdoor.suspicion_scores`
# scores each by the power of its own tiny pattern; the pixels of the flagged images'
# patterns recover the trigger.


def draw_suspects(images, suspicion, poisoned, recovered, path: str) -> None:
    """The most and least suspicious scored training images, and the recovered trigger pixels."""
    order = torch.argsort(suspicion.scores, descending=True)
    picks = order[:6].tolist() + order[-6:].tolist()
    fig = Figure(figsize=(11, 2.4), layout="constrained")
    axes = fig.subplots(1, len(picks) + 1)
    for ax, position in zip(axes, picks):
        index = int(suspicion.indices[position])
        ax.imshow(images[index, 0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        tag = "poisoned" if bool(poisoned[index]) else "clean"
        ax.set_title(f"{suspicion.scores[position]:.2f}\n{tag}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[-1].imshow(recovered.float().numpy(), cmap="Reds", vmin=0, vmax=1, interpolation="nearest")
    axes[-1].set_title("recovered\ntrigger", fontsize=8)
    axes[-1].set_xticks([])
    axes[-1].set_yticks([])
    fig.suptitle(
        f"training images by suspicion (power of their own {suspicion.k}-pixel pattern): 6 highest, 6 lowest",
        fontsize=9,
    )
    fig.savefig(path, dpi=110)


flagged = results["backdoored"]["scan"]["flagged"] or None
suspicion = suspicion_scores(
    models["backdoored"], train_images, train_labels, classes=flagged, seed=args.seed, show_progress=PROGRESS
)
precision, recall = suspicion.precision_recall(poisoned.poisoned_indices)
recovered = suspicion.recovered_trigger(int(true_mask.sum())) if suspicion.flagged.numel() else None
jaccard = None if recovered is None else trigger_jaccard(recovered, true_mask)
print(
    f"per-image suspicion over the {suspicion.indices.numel()} training images labelled "
    f"{flagged or 'anything'} ({suspicion.seconds:.0f} s): "
    f"{suspicion.flagged.numel()} flagged, precision {precision:.2f}, recall {recall:.2f}"
)
if jaccard is not None:
    print(f"trigger recovered from the flagged images: Jaccard {jaccard:.2f} with the true 3x3 patch")
    draw_suspects(
        train_images, suspicion, poisoned.poisoned_mask, recovered, os.path.join(args.out, "poisoned_images.png")
    )

# %%
# Save the numbers
# ----------------

results["suspicion"] = {
    "precision": precision,
    "recall": recall,
    "flagged": int(suspicion.flagged.numel()),
    "trigger_jaccard": jaccard,
    "seconds": round(suspicion.seconds, 1),
}
results["seconds"] = round(time.perf_counter() - started, 1)
with open(os.path.join(args.out, "results.json"), "w") as stream:
    json.dump(results, stream, indent=2)
print(f"wrote figures and results.json to {args.out} ({results['seconds']:.0f} s)")

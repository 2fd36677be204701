"""The ``classpattern`` command end to end, as users run it: thread settings on a calm and a busy machine.

Each run is a fresh ``classpattern search`` process (imports, model factory, data, canvas
choice, search, measurement, baselines, figure and files), timed by the wall clock, with
the phase breakdown the command writes into ``report.json`` (``phase_seconds``). Cases:

* ``resnet32`` / ``resnet64``: a torchvision ResNet-18 (10 classes, random weights saved as
  a state dict: the cost does not depend on the weights) on an image folder of 1,000 images
  (100 per class; CIFAR-10 test images when ``--cifar10`` or ``CLASSPATTERN_CIFAR10`` names a
  copy, else procedural PNGs), streamed (``--data DIR``) at ``--image-size`` 32 or 64;
* ``digits``: the cached digits CNN on the bundled digits (``--data digits``).

each for one class (``--classes 0``) and, for the cases named by ``--ten``, all ten. Thread
settings:

* ``torch``: torch's own count (one per physical core), the package's policy off
  (``--threads torch``): what every earlier version did;
* ``one``: ``OMP_NUM_THREADS=1`` in the environment, the advice users were given;
* ``auto``: the package's measured policy (``--threads auto``, the default).

On a machine with more than two cores ``--threads 2`` is a separate setting (``two``); on
two cores it is torch's count. ``busy``: the benchmark starts one single-threaded busy-loop
process beside each run (and stops it after), the case of a shared machine; ``calm``: none.

``bare`` is the model's bare forward and input-gradient backward at the search's batch (one
composite per step), timed over ``--bare-steps`` steps and scaled to the search's 600, at
one thread and at torch's count, in this process under the same load; ``search_vs_bare``
divides it by the search phase of the run with that many threads (>= 0.9: the search loop
costs little over the model). A run past ``--timeout`` is abandoned (``wall_s`` null) and
not repeated.

Usage::

    python -m benchmarks.bench_cli_end_to_end                              # resnet64, one class, calm and busy
    python -m benchmarks.bench_cli_end_to_end --cases resnet32 resnet64 digits --ten digits --repeats 2
    python -m benchmarks.bench_cli_end_to_end --device cuda --cases resnet64 --ten   # on a GPU machine

The last line printed is the JSON of all numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from contextlib import contextmanager
from pathlib import Path
from statistics import median
from typing import Dict, Iterator, List, Optional, Sequence

import torch

from benchmarks import _harness
from benchmarks._harness import Timer, add_device_option, emit_json

ROOT = Path(_harness.ROOT)
CLASSES = [str(c) for c in range(10)]
PER_CLASS = 100
STEPS = 600
FACTORY = """
import torchvision

def resnet18():
    return torchvision.models.resnet18(num_classes=10)
"""


def write_folder(target: Path, cifar10: Optional[str]) -> str:
    """1,000 images, 100 per class, in ``target/<class>/``: links to CIFAR-10 test images, or procedural PNGs."""
    if cifar10 and (Path(cifar10) / "test").is_dir():
        source = Path(cifar10) / "test"
        for name in sorted(os.listdir(source)):
            (target / name).mkdir(parents=True)
            for file in sorted(os.listdir(source / name))[:PER_CLASS]:
                (target / name / file).symlink_to(source / name / file)
        return f"CIFAR-10 test images ({cifar10})"
    import numpy as np
    from PIL import Image

    generator = np.random.default_rng(0)
    for cls in CLASSES:
        (target / cls).mkdir(parents=True)
        tint = generator.integers(0, 256, 3)
        for i in range(PER_CLASS):
            noise = generator.integers(0, 256, (32, 32, 3))
            pixels = ((noise + tint) // 2).astype(np.uint8)
            Image.fromarray(pixels).save(target / cls / f"{i}.png")
    return "procedural 32 x 32 PNGs"


@contextmanager
def load(kind: str) -> Iterator[None]:
    """``busy``: one busy-loop process beside the block; ``calm``: nothing."""
    if kind == "calm":
        yield
        return
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        yield
    finally:
        spinner.kill()
        spinner.wait()


def command(case: str, ten: bool, work: Path, out: Path, device: str) -> List[str]:
    """The ``classpattern search`` arguments of a case."""
    run = [sys.executable, "-m", "captum_classpattern.cli", "search", "--no-progress", "--out", str(out)]
    run += ["--device", device]
    if case == "digits":
        run += ["--model", "captum_classpattern.training:digits_model", "--data", "digits"]
    else:
        size = case.removeprefix("resnet")
        run += ["--model", "bench_nets:resnet18", "--weights", str(work / "resnet18.pt")]
        run += ["--data", str(work / "images"), "--image-size", size]
    return run + ([] if ten else ["--classes", "0"])


def environment(setting: str, work: Path) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = os.pathsep.join([str(work), str(ROOT), env.get("PYTHONPATH", "")])
    if setting == "one":
        env["OMP_NUM_THREADS"] = "1"
    return env


def flags(setting: str) -> List[str]:
    return {"torch": ["--threads", "torch"], "one": [], "auto": ["--threads", "auto"], "two": ["--threads", "2"]}[
        setting
    ]


def run_once(case: str, ten: bool, setting: str, work: Path, timeout: float, device: str) -> dict:
    """One command, timed; its phases and thread decisions from ``report.json``."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "out"
        clock = Timer()
        try:
            done = subprocess.run(
                command(case, ten, work, out, device) + flags(setting),
                env=environment(setting, work),
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return {"wall_s": None, "timed_out_after_s": timeout}
        wall = clock.seconds
        if done.returncode != 0:
            raise RuntimeError(f"{case} {setting} failed: {done.stderr.strip()[-800:]}")
        settings = json.loads((out / "report.json").read_text())["settings"]
    phases = settings["phase_seconds"]
    return {
        "wall_s": round(wall, 2),
        "phases_s": phases,
        "outside_phases_s": round(wall - sum(v for k, v in phases.items()), 2),  # imports, start-up, writing
        "threads": {k: v["threads"] for k, v in settings["threads"]["kinds"].items()},
        "policy": settings["threads"]["policy"],
        **({"images": settings["images"]} if "images" in settings else {}),
    }


def bare_seconds(side: int, threads: int, device: str, steps: int) -> float:
    """Seconds of the ResNet-18's forward and input-gradient backward at batch 1: ``steps`` timed, x STEPS / steps."""
    import torchvision

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        model = torchvision.models.resnet18(num_classes=10).eval().to(device)
        x = torch.rand(1, 3, side, side, device=device)
        for _ in range(3):
            x.requires_grad_(True)
            model(x)[0, 0].backward()
        clock = Timer()
        for _ in range(steps):
            leaf = x.detach().requires_grad_(True)
            torch.autograd.grad(model(leaf)[0, 0], leaf)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return clock.seconds * STEPS / steps
    finally:
        torch.set_num_threads(before)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run every case, setting and load; print progress lines and, last, one JSON line. Returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", default=["resnet64"], choices=["resnet32", "resnet64", "digits"])
    parser.add_argument("--ten", nargs="*", default=[], help="cases also run with all ten classes")
    parser.add_argument("--bare-steps", type=int, default=100, help="steps of the bare loop timed (default 100)")
    parser.add_argument("--loads", nargs="+", default=["calm", "busy"], choices=["calm", "busy"])
    parser.add_argument("--settings", nargs="+", default=None, help="default: torch one auto (+ two above 2 cores)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each combination (the median is kept)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds before a run is abandoned")
    parser.add_argument("--cifar10", default=os.environ.get("CLASSPATTERN_CIFAR10"))
    add_device_option(parser, "the commands' --device, e.g. cuda (default cpu)")
    args = parser.parse_args(argv)
    cores = torch.get_num_threads()
    settings = args.settings or (["torch", "one", "auto"] + (["two"] if cores > 2 else []))
    results: dict = {
        "cores": os.cpu_count(),
        "torch_threads": cores,
        "torch": torch.__version__,
        "device": args.device,
        "runs": [],
    }
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        (work / "bench_nets.py").write_text(textwrap.dedent(FACTORY))
        torch.manual_seed(0)
        import torchvision

        torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), work / "resnet18.pt")
        results["images"] = write_folder(work / "images", args.cifar10)
        for load_kind in args.loads:
            with load(load_kind):
                for case in args.cases:
                    if case.startswith("resnet"):
                        side = int(case.removeprefix("resnet"))
                        bare = {
                            str(n): round(bare_seconds(side, n, args.device, args.bare_steps), 2)
                            for n in sorted({1, cores})
                        }
                        results.setdefault("bare_s", {})[f"{case} {load_kind}"] = bare
                        emit_json({"bare": case, "load": load_kind, "seconds": bare})
                    for ten in [False, True] if case in args.ten else [False]:
                        for setting in settings:
                            runs = [run_once(case, ten, setting, work, args.timeout, args.device)]
                            while len(runs) < args.repeats and runs[-1]["wall_s"] is not None:
                                runs.append(run_once(case, ten, setting, work, args.timeout, args.device))
                            finished = [r for r in runs if r["wall_s"] is not None]
                            row = {
                                "case": case,
                                "classes": 10 if ten else 1,
                                "load": load_kind,
                                "setting": setting,
                                "wall_s": median(r["wall_s"] for r in finished) if finished else None,
                                "runs": runs,
                            }
                            results["runs"].append(row)
                            emit_json({k: row[k] for k in ("case", "classes", "load", "setting", "wall_s")})
                            emit_json(runs[-1])
    summarise(results)
    emit_json(results)
    return 0


def summarise(results: dict) -> None:
    """Per case and load: each setting's wall time over the best, and the search phase against the bare loop."""
    table: Dict[str, dict] = {}
    for row in results["runs"]:
        key = f"{row['case']} {row['classes']} class(es) {row['load']}"
        table.setdefault(key, {})[row["setting"]] = row["wall_s"]
    results["over_best"] = {
        key: {s: (round(w / min(x for x in walls.values() if x), 3) if w else None) for s, w in walls.items()}
        for key, walls in table.items()
        if any(walls.values())
    }
    ratios = {}
    for row in results["runs"]:
        bare = results.get("bare_s", {}).get(f"{row['case']} {row['load']}")
        finished = [r for r in row["runs"] if r["wall_s"] is not None]
        if not bare or not finished or row["classes"] != 1 or row["setting"] not in ("one", "torch"):
            continue
        threads = "1" if row["setting"] == "one" else str(results["torch_threads"])
        search = median(r["phases_s"]["search"] for r in finished)
        ratios[f"{row['case']} {row['load']} {row['setting']}"] = round(bare[threads] / search, 3)
    results["search_vs_bare"] = ratios


if __name__ == "__main__":
    raise SystemExit(main())

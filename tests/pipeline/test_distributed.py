"""Classes sharded over 2 gloo processes give the report of a single process, on every rank.

The processes are started the way ``torchrun`` starts them (``RANK``, ``WORLD_SIZE``,
``MASTER_ADDR=127.0.0.1`` and a free port in the environment, no process group yet), so
the tests also cover :func:`search_classes` setting the group up by itself. The model is
the session's tiny 16 x 16 digits CNN, saved for the workers to load. The workers also
resume, sharded, a single-process run whose checkpoints lost some chunks.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch

from captum_classpattern import search_classes
from captum_classpattern.attr import SearchSchedule
from captum_classpattern.pipeline import (
    all_gather,
    init_distributed,
    is_main_process,
    local_device,
    main_process_first,
    shard,
    world,
)

STEPS = 30
TORCHRUN_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")

WORKER = textwrap.dedent(
    """
    import sys

    import torch

    from captum_classpattern.data import load_digits
    from captum_classpattern.pipeline import world
    from captum_classpattern.models import SmallCNN
    from captum_classpattern.pipeline import search_classes
    from captum_classpattern.attr import SearchSchedule

    torch.set_num_threads(1)
    weights, out, steps, checkpoints = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    model = SmallCNN(in_channels=1, num_classes=10, width=8)
    model.load_state_dict(torch.load(weights, weights_only=True))
    model.eval()
    data = load_digits(size=16)
    settings = dict(schedule=SearchSchedule(steps=steps), baselines=("Saliency",), seed=3, show_progress=False)
    try:  # class 99 has no images: the rank that owns it fails, and every rank must hear of it
        search_classes(model, data.search, data.eval, [0, 1, 99], **settings)
        error = None
    except ValueError as caught:
        error = str(caught)
    outcome = search_classes(model, data.search, data.eval, range(10), **settings)
    resumed = search_classes(model, data.search, data.eval, range(10), checkpoint_dir=checkpoints, chunk_size=2,
                             resume=True, **settings)
    rank, world_size = world()
    torch.save({"report": outcome.report.to_dict(), "maps": outcome.maps, "canvases": outcome.canvases,
                "patterns": [(pattern.mask, pattern.values) for pattern in outcome.patterns],
                "resumed_report": resumed.report.to_dict(), "resumed_maps": resumed.maps,
                "error": error, "world_size": world_size}, f"{out}/rank{rank}.pt")
    """
)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _torchrun_environment(rank: int, world_size: int, port: int) -> dict:
    env = {key: value for key, value in os.environ.items() if key not in TORCHRUN_VARIABLES}
    env.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        OMP_NUM_THREADS="1",
    )
    return env


@pytest.fixture
def single_process(monkeypatch):
    """No torchrun variables in this process, whatever the caller's shell holds."""
    for key in TORCHRUN_VARIABLES:
        monkeypatch.delenv(key, raising=False)


@pytest.mark.slow  # end to end: two worker processes, each importing torch and searching
def test_two_gloo_processes_gather_the_single_process_report(trained_digits_model, digits16, tmp_path, single_process):
    weights = tmp_path / "model.pt"
    torch.save(trained_digits_model.state_dict(), weights)
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    checkpoints = tmp_path / "checkpoints"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' setting: the same kernels, the same numbers
    try:  # a single-process run, checkpointed in chunks of 3, that then loses two of its chunks
        alone = search_classes(
            trained_digits_model,
            digits16.search,
            digits16.eval,
            range(10),
            schedule=SearchSchedule(steps=STEPS),
            baselines=("Saliency",),
            seed=3,
            show_progress=False,
            checkpoint_dir=checkpoints,
            chunk_size=3,
        )
    finally:
        torch.set_num_threads(threads)
    os.remove(checkpoints / "classes-000003-000006.pt")
    os.remove(checkpoints / "classes-000009-000010.pt")
    port = _free_port()
    workers = [
        subprocess.Popen(
            [sys.executable, str(script), str(weights), str(tmp_path), str(STEPS), str(checkpoints)],
            env=_torchrun_environment(rank, 2, port),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(2)
    ]
    logs = []
    for worker in workers:
        try:
            logs.append(worker.communicate(timeout=120)[0])
        except subprocess.TimeoutExpired:
            for other in workers:
                other.kill()
            pytest.fail("the distributed workers did not finish in 120 s")
    assert all(worker.returncode == 0 for worker in workers), "\n".join(logs)

    for rank in range(2):
        gathered = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        assert gathered["world_size"] == 2
        assert gathered["report"] == alone.report.to_dict()
        assert torch.equal(gathered["maps"], alone.maps)
        assert torch.equal(gathered["canvases"], alone.canvases)
        assert len(gathered["patterns"]) == len(alone.patterns)
        for (mask, values), pattern in zip(gathered["patterns"], alone.patterns):
            assert torch.equal(mask, pattern.mask) and torch.equal(values, pattern.values)
        assert gathered["resumed_report"] == alone.report.to_dict()
        assert torch.equal(gathered["resumed_maps"], alone.maps)
        assert "class 99" in gathered["error"]
        if rank == 0:  # rank 1 owned class 99; rank 0 hears of it instead of waiting forever
            assert gathered["error"].startswith("rank 1: ")
    # Each rank searched and checkpointed the lost classes of its own share (0-4 and 5-9), in chunks of 2.
    assert sorted(os.listdir(checkpoints)) == [
        "classes-000000-000003.pt",
        "classes-000003-000005.pt",
        "classes-000005-000006.pt",
        "classes-000006-000009.pt",
        "classes-000009-000010.pt",
        "manifest.json",
    ]


@pytest.mark.slow  # end to end: torchrun and two worker processes
def test_classpattern_search_under_torchrun_writes_once(trained_digits_model, tmp_path, monkeypatch, single_process):
    """``classpattern search`` launched by torchrun: rank 0 alone prints and writes, same report."""
    from captum_classpattern.cli import main

    torch.save(trained_digits_model.state_dict(), tmp_path / "model.pt")
    (tmp_path / "tiny_factory.py").write_text(
        "from captum_classpattern.models import SmallCNN\n\n\n"
        "def build():\n    return SmallCNN(in_channels=1, num_classes=10, width=8)\n"
    )
    arguments = [
        "search",
        "--model",
        "tiny_factory:build",
        "--weights",
        "model.pt",
        "--classes",
        "0,3,7",
        "--no-progress",
    ]
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc-per-node",
        "2",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(_free_port()),
        "-m",
        "captum_classpattern.cli",
        *arguments,
        "--out",
        "ranks",
    ]
    env = {key: value for key, value in os.environ.items() if key not in TORCHRUN_VARIABLES}
    done = subprocess.run(
        command, cwd=tmp_path, env=dict(env, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("test accuracy on") == 1 and done.stdout.count("wrote ") == 1, done.stdout

    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main([*arguments, "--out", "alone"]) == 0
    finally:
        torch.set_num_threads(threads)
    with open(tmp_path / "ranks" / "report.json") as stream:
        ranks = json.load(stream)
    with open(tmp_path / "alone" / "report.json") as stream:
        alone = json.load(stream)
    assert ranks["classes"] == alone["classes"]
    assert ranks["test_accuracy"] == alone["test_accuracy"]
    assert os.path.isfile(tmp_path / "ranks" / "patterns.png")


@pytest.mark.parametrize("count, world_size", [(10, 1), (10, 2), (10, 3), (3, 5), (0, 2)])
def test_shards_are_contiguous_and_cover_everything_once(count, world_size):
    items = list(range(count))
    shares = [shard(items, rank, world_size) for rank in range(world_size)]
    assert sum(shares, []) == items
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_bad_ranks_are_refused():
    with pytest.raises(ValueError, match="rank must lie"):
        shard([1, 2], 2, 2)
    with pytest.raises(ValueError, match="rank must lie"):
        shard([1, 2], 0, 0)


def test_single_process_is_left_alone(single_process):
    assert world() == (0, 1)
    assert init_distributed() is False
    assert is_main_process()
    assert all_gather({"a": 1}) == [{"a": 1}]
    with main_process_first():
        pass


def test_torchrun_environment_without_a_master_is_refused(monkeypatch, single_process):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert world() == (1, 2) and not is_main_process()
    with pytest.raises(RuntimeError, match="MASTER_ADDR, MASTER_PORT not set"):
        init_distributed()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE must be an integer"):
        world()


def test_local_device_gives_each_process_its_gpu(monkeypatch, single_process):
    assert local_device("cuda") == torch.device("cuda")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert local_device("cuda") == torch.device("cuda", 3)
    assert local_device("cuda:1") == torch.device("cuda", 1)
    assert local_device("cpu") == torch.device("cpu")

"""The thread policy: the faster count is kept, the user's choice wins, the caller's count comes back."""

import os
import time

import pytest
import torch

from captum_classpattern._utils import threads
from captum_classpattern._utils.threads import (
    FIRST_TRY_STEPS,
    PREFER_FEWER,
    TIMED_STEPS,
    StepTuner,
    explicit_threads,
    idle_cores,
    set_threads,
    thread_report,
    thread_scope,
    tuned_threads,
)


def run(tuner: StepTuner, cost, steps: int) -> list:
    """Drive ``tuner`` for ``steps`` steps whose seconds are ``cost(threads)``; the counts it used."""
    used = []
    for _ in range(steps):
        count = tuner.threads()
        used.append(count)
        tuner.record(count, cost(count))
    return used


def test_the_faster_count_is_kept_after_the_trial_steps():
    busy = StepTuner(available=2, start=2)  # a wrong start: the other core is taken, 2 threads spin
    used = run(busy, lambda n: 0.030 if n == 1 else 0.800, 60)
    assert busy.choice == 1 and used[-30:] == [1] * 30
    assert used.count(2) == 1 + FIRST_TRY_STEPS + TIMED_STEPS  # warm-up, the start, its timing; 1 thread wins
    calm = StepTuner(available=2, start=1)
    used = run(calm, lambda n: 0.030 if n == 1 else 0.018, 60)
    assert calm.choice == 2 and used[-30:] == [2] * 30


def test_a_short_loop_stays_on_its_starting_count():
    tuner = StepTuner(available=2, start=1)
    assert run(tuner, lambda n: 0.030 if n == 1 else 0.018, FIRST_TRY_STEPS + 1) == [1] * (FIRST_TRY_STEPS + 1)


def test_fewer_threads_are_kept_unless_more_are_clearly_faster():
    tuner = StepTuner(available=2, start=2)
    run(tuner, lambda n: 0.030 if n == 1 else 0.030 * (1 - PREFER_FEWER / 2), 40)
    assert tuner.choice == 1


def test_a_machine_that_becomes_busy_is_followed():
    tuner = StepTuner(available=2, start=2)
    run(tuner, lambda n: 0.030 if n == 1 else 0.018, 40)
    assert tuner.choice == 2
    used = run(tuner, lambda n: 0.030 if n == 1 else 0.500, 40)  # another process takes a core
    assert tuner.choice == 1 and used[-10:] == [1] * 10


def test_a_machine_that_becomes_calm_is_followed_after_a_while():
    tuner = StepTuner(available=2, start=1)
    run(tuner, lambda n: 0.030 if n == 1 else 0.500, 40)
    assert tuner.choice == 1
    used = run(tuner, lambda n: 0.030 if n == 1 else 0.018, 2000)
    assert tuner.choice == 2 and used[-10:] == [2] * 10
    # Trying the other count again costs a small share of the steps.
    tries = StepTuner(available=2, start=1)
    used = run(tries, lambda n: 0.030 if n == 1 else 0.500, 2000)
    assert used.count(2) < 0.01 * len(used)


def test_a_noisy_machine_does_not_make_the_slow_count_tried_over_and_over():
    tuner = StepTuner(available=2, start=1)
    noise = iter([0.003, 0.009] * 5000)  # one-thread steps that vary 3x under load
    used = run(tuner, lambda n: next(noise) if n == 1 else 0.300, 5000)
    assert tuner.choice == 1
    slow_seconds = 0.300 * used.count(2)
    assert slow_seconds < 0.25 * 0.006 * used.count(1)  # a bounded share of the run's time


def test_the_candidates_are_one_half_and_all_threads():
    assert StepTuner(available=8, start=8).candidates == [1, 4, 8]
    assert StepTuner(available=8, start=8).threads() == 8


def test_idle_cores_reads_the_machine():
    idle = idle_cores(0.02)
    assert idle is None or 0 <= idle <= (os.cpu_count() or 1) + 0.5


@pytest.fixture
def measured_policy(monkeypatch):
    """Two torch threads that the policy may change (as in a user's process with torch's default count)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    for name in threads.EXPLICIT_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads, "_AT_IMPORT", 2)
    monkeypatch.setattr(threads, "_TORCH_DEFAULT", 2)
    monkeypatch.setattr(threads, "idle_cores", lambda interval=0.05: 2.0)  # a calm machine: start on 2
    set_threads("auto")
    yield
    set_threads("auto")
    torch.set_num_threads(before)


def slow_on(count: int, work: torch.Tensor, steps: int) -> list:
    """Run steps that take 20 ms on ``count`` threads and 2 ms otherwise; the counts torch had in each."""
    seen = []
    for _ in range(steps):
        with tuned_threads("test", work, owner=count):
            seen.append(torch.get_num_threads())
            time.sleep(0.02 if torch.get_num_threads() == count else 0.002)
    return seen


def test_the_policy_times_real_steps_and_restores_the_callers_count(measured_policy):
    work = torch.zeros(4, 3, 8, 8)
    assert explicit_threads() is None
    assert slow_on(2, work, 26)[-5:] == [1] * 5
    assert torch.get_num_threads() == 2  # the caller's count, after every step
    assert slow_on(1, work, 26)[-5:] == [2] * 5
    kinds = thread_report()["kinds"]
    assert thread_report()["policy"] == "measured" and kinds["test 4-7x3x8x8"]["threads"] in (1, 2)


def test_the_users_choice_wins(measured_policy, monkeypatch):
    work = torch.zeros(4, 3, 8, 8)
    set_threads(1)
    assert set(slow_on(1, work, 8)) == {1} and thread_report()["policy"] == "set_threads(1)"
    set_threads("torch")
    assert set(slow_on(2, work, 8)) == {2}
    set_threads("auto")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert set(slow_on(2, work, 8)) == {2} and explicit_threads() == "OMP_NUM_THREADS=2"
    monkeypatch.delenv("OMP_NUM_THREADS")
    torch.set_num_threads(3)  # as a user's torch.set_num_threads(3)
    try:
        assert set(slow_on(3, work, 8)) == {3} and explicit_threads() == "torch.set_num_threads(3)"
    finally:
        torch.set_num_threads(2)


def test_the_callers_count_comes_back_after_an_error(measured_policy):
    set_threads(1)
    with pytest.raises(RuntimeError, match="inside"):
        with tuned_threads("test", torch.zeros(2, 2)):
            assert torch.get_num_threads() == 1
            raise RuntimeError("inside")
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("setting, error", [(0, ValueError), ("fast", ValueError), (2.0, TypeError), (True, TypeError)])
def test_bad_settings_are_refused(setting, error):
    with pytest.raises(error, match="threads"):
        set_threads(setting)


def test_inside_a_scope_the_chosen_count_holds_between_steps_and_the_callers_comes_back(measured_policy):
    work = torch.zeros(4, 3, 8, 8)
    with thread_scope(start=1):
        assert torch.get_num_threads() == 1  # the command line starts on one thread
        slow_on(1, work, 26)  # one thread is the slow one here: the loop moves to two
        assert torch.get_num_threads() == 2
        slow_on(2, work, 26)
        assert torch.get_num_threads() == 1  # and stays there for the work after the loop
        assert thread_report()["policy"] == "measured"
    assert torch.get_num_threads() == 2
    set_threads(1)
    with thread_scope():
        assert torch.get_num_threads() == 1  # the user's count, for all the work of the scope
    assert torch.get_num_threads() == 2

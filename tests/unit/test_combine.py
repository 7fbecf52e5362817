"""Concurrent calls combined (hub.store.combine): each caller gets exactly its own results, calls that arrive
while one runs go through one run together, conflicting items never share a run, and a failed run fails only
the calls it was running."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from hub.store.combine import Combiner


def queued(combined: Combiner[int, str], calls: int) -> None:
    """Wait until `calls` calls stand queued behind the run in progress."""
    while len(combined._waiting) < calls:
        threading.Event().wait(0.001)


class Recorder:
    def __init__(self, gate: threading.Event | None = None, fail_on: int | None = None):
        self.runs: list[list[int]] = []
        self.gate, self.fail_on = gate, fail_on
        self.first_started = threading.Event()

    def __call__(self, items: list[int]) -> list[str]:
        self.runs.append(list(items))
        self.first_started.set()
        if self.gate is not None and len(self.runs) == 1:
            self.gate.wait(5)
        if self.fail_on is not None and self.fail_on in items:
            raise RuntimeError(f"cannot {self.fail_on}")
        return [f"done {i}" for i in items]


def test_a_lone_call_runs_its_items_and_gets_their_results() -> None:
    run = Recorder()
    assert Combiner(run, most=10)([3, 1, 2]) == ["done 3", "done 1", "done 2"]
    assert run.runs == [[3, 1, 2]]


def test_calls_waiting_behind_a_run_go_through_the_next_run_together_each_with_its_own_results() -> None:
    gate = threading.Event()
    run = Recorder(gate)
    combined = Combiner(run, most=100)
    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(combined, [0])
        assert run.first_started.wait(5)
        later = [pool.submit(combined, [10 * n + 1, 10 * n + 2]) for n in range(1, 6)]
        queued(combined, 5)
        gate.set()
        assert first.result(5) == ["done 0"]
        for n, future in enumerate(later, start=1):
            assert future.result(5) == [f"done {10 * n + 1}", f"done {10 * n + 2}"]
    assert len(run.runs) == 2
    assert sorted(run.runs[1]) == sorted(i for n in range(1, 6) for i in (10 * n + 1, 10 * n + 2))


def test_a_run_takes_at_most_most_items_but_never_splits_a_call() -> None:
    gate = threading.Event()
    run = Recorder(gate)
    combined = Combiner(run, most=4)
    with ThreadPoolExecutor(4) as pool:
        pool.submit(combined, [0])
        assert run.first_started.wait(5)
        futures = [pool.submit(combined, [n, n + 100, n + 200]) for n in range(1, 4)]
        queued(combined, 3)
        gate.set()
        for n, future in enumerate(futures, start=1):
            assert future.result(5) == [f"done {n}", f"done {n + 100}", f"done {n + 200}"]
    assert [len(r) for r in run.runs] == [1, 3, 3, 3]


def test_items_with_the_same_key_never_share_a_run() -> None:
    gate = threading.Event()
    run = Recorder(gate)
    combined = Combiner(run, most=100, key=lambda i: i)
    with ThreadPoolExecutor(4) as pool:
        pool.submit(combined, [0])
        assert run.first_started.wait(5)
        a = pool.submit(combined, [7, 8])
        queued(combined, 1)
        b = pool.submit(combined, [8, 9])  # delivery 8 twice: the second waits for the next run
        queued(combined, 2)
        gate.set()
        assert a.result(5) == ["done 7", "done 8"]
        assert b.result(5) == ["done 8", "done 9"]
    assert run.runs[1:] == [[7, 8], [8, 9]]


def test_a_failed_run_fails_the_calls_it_ran_and_not_the_next_ones() -> None:
    gate = threading.Event()
    run = Recorder(gate, fail_on=5)
    combined = Combiner(run, most=2)
    with ThreadPoolExecutor(4) as pool:
        pool.submit(combined, [0])
        assert run.first_started.wait(5)
        bad = pool.submit(combined, [4, 5])
        queued(combined, 1)
        good = pool.submit(combined, [6])
        queued(combined, 2)
        gate.set()
        with pytest.raises(RuntimeError, match="cannot 5"):
            bad.result(5)
        assert good.result(5) == ["done 6"]


def test_many_threads_calling_at_once_each_get_exactly_their_own_results() -> None:
    run = Recorder()
    combined = Combiner(run, most=16)
    with ThreadPoolExecutor(16) as pool:
        futures = {n: pool.submit(combined, [n, n + 1000]) for n in range(400)}
        for n, future in futures.items():
            assert future.result(10) == [f"done {n}", f"done {n + 1000}"]
    assert sorted(i for r in run.runs for i in r) == sorted(i for n in range(400) for i in (n, n + 1000))


class Shutdown(BaseException):
    """What a worker's shutdown raises in a thread (not an Exception)."""


def test_a_run_cut_short_by_shutdown_raises_in_every_call_it_ran_and_leaves_none_waiting() -> None:
    gate, started = threading.Event(), threading.Event()

    def run(items: list[int]) -> list[str]:
        if items == [0]:
            started.set()
            gate.wait(5)
            return ["done 0"]
        raise Shutdown

    combined: Combiner[int, str] = Combiner(run, most=10)
    with ThreadPoolExecutor(3) as pool:
        pool.submit(combined, [0])
        assert started.wait(5)
        a, b = pool.submit(combined, [1]), pool.submit(combined, [2])
        queued(combined, 2)
        gate.set()
        for future in (a, b):
            with pytest.raises(Shutdown):
                future.result(5)


def test_a_run_that_stops_short_leaves_the_rest_first_in_line_and_every_call_gets_all_its_results() -> None:
    """The store's group commit stops a transaction once it has held the write lock long enough: the works it
    did not reach run next, before any that came later."""
    gate = threading.Event()
    runs: list[list[int]] = []
    started = threading.Event()

    def run(items: list[int]) -> list[str]:
        runs.append(list(items))
        if items == [0]:
            started.set()
            gate.wait(5)
        return [f"done {i}" for i in items[:2]]  # two at most: the rest waits for the next run

    combined: Combiner[int, str] = Combiner(run, most=100)
    with ThreadPoolExecutor(3) as pool:
        pool.submit(combined, [0])
        assert started.wait(5)
        a = pool.submit(combined, [1, 2, 3])
        queued(combined, 1)
        b = pool.submit(combined, [4, 5])
        queued(combined, 2)
        gate.set()
        assert a.result(5) == ["done 1", "done 2", "done 3"]
        assert b.result(5) == ["done 4", "done 5"]
    assert runs == [[0], [1, 2, 3, 4, 5], [3, 4, 5], [5]]

"""The worker pool: a job's unexpected exception goes to its error callback, and the worker
and the batch go on."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from exporter.core.clock import FakeClock
from exporter.polling.workers import Job, WorkerPool


def test_a_step_that_raises_is_handed_to_on_error_which_says_whether_the_job_goes_on() -> None:
    done: list[str] = []
    errors: list[tuple[str, int, str]] = []
    lock = threading.Lock()

    def step(name: str, result: bool | None = True) -> bool:
        with lock:
            done.append(name)
        if result is None:
            raise RuntimeError(name)
        return result

    def job(name: str, go_on: bool) -> Job:
        def handle(i: int, error: Exception) -> bool:
            with lock:
                errors.append((name, i, str(error)))
            return go_on
        return Job((lambda: step(f"{name}0", None), lambda: step(f"{name}1"),
                    lambda: step(f"{name}2", False), lambda: step(f"{name}3")), handle)

    pool = WorkerPool(2)
    try:
        pool.run_all([job("a", True), job("b", False)])
    finally:
        pool.close()
    assert sorted(errors) == [("a", 0, "a0"), ("b", 0, "b0")]
    # a goes on after its bug and stops where a step says so; b stops at its bug
    assert sorted(done) == ["a0", "a1", "a2", "b0"]


def test_an_error_callback_that_raises_is_logged_and_the_batch_ends(
        caplog: pytest.LogCaptureFixture) -> None:
    def bug() -> bool:
        raise RuntimeError("step")

    def worse(_i: int, _error: Exception) -> bool:
        raise RuntimeError("callback")

    ran: list[int] = []
    pool = WorkerPool(1)
    try:
        pool.run_all([Job((bug,), worse), lambda: ran.append(1)])
        pool.run_all([lambda: ran.append(2)])  # the worker survived
    finally:
        pool.close()
    assert ran == [1, 2]
    assert [(r.levelno, r.getMessage()) for r in caplog.records
            if r.name == "exporter.polling.workers"] == [(logging.ERROR, "task failed")]


def test_a_pool_needs_a_worker() -> None:
    with pytest.raises(ValueError, match=r"^pool size must be at least 1$"):
        WorkerPool(0)
    pool = WorkerPool(1)  # named "poll" unless told otherwise
    names: list[str] = []
    try:
        pool.run_all([lambda: names.append(threading.current_thread().name)])
    finally:
        pool.close()
    assert names == ["poll-0"]


def test_the_pool_grows_to_what_a_batch_can_use_in_named_daemon_threads() -> None:
    seen: set[threading.Thread] = set()
    lock = threading.Lock()

    def task(barrier: threading.Barrier | None = None) -> None:
        with lock:
            seen.add(threading.current_thread())
        if barrier is not None:
            barrier.wait(timeout=10)  # every task of the batch runs at once

    pool = WorkerPool(3, "probe")
    try:
        pool.run_all([task])
        assert [t.name for t in seen] == ["probe-0"]
        assert sorted(t.name for t in threading.enumerate()
                      if t.name.startswith("probe-")) == ["probe-0"]  # one task, one thread
        barrier = threading.Barrier(3)
        pool.run_all([lambda: task(barrier)] * 3)
        assert sorted(t.name for t in seen) == ["probe-0", "probe-1", "probe-2"]
        assert all(t.daemon for t in seen)
        pool.run_all([])  # an empty batch is done at once
    finally:
        pool.close()
    for thread in seen:
        thread.join(timeout=10)  # closed: every idle worker exits
        assert not thread.is_alive()
    assert sorted(t.name for t in threading.enumerate() if t.name.startswith("probe-")) == []


def test_a_closed_pool_runs_a_later_batch_on_new_workers() -> None:
    ran: list[str] = []
    pool = WorkerPool(1, "again")
    try:
        pool.run_all([lambda: ran.append(threading.current_thread().name)])
        pool.close()
        pool.run_all([lambda: ran.append(threading.current_thread().name)])
    finally:
        pool.close()
    assert ran == ["again-0", "again-0"]


@pytest.mark.parametrize(("gap", "with_clock", "paced"), [
    (0.5, True, 1.0),  # two gaps of half a second before the third task
    (None, True, 0.0),  # no gap: no pacing, whatever the clock
    (2.0, False, 0.0),  # no clock to keep a gap by: none is kept
])
def test_a_batch_is_paced_only_with_a_gap_and_a_clock(gap: float | None, with_clock: bool,
                                                     paced: float) -> None:
    clock = FakeClock()
    began = clock.monotonic()
    ran: list[int] = []
    pool = WorkerPool(1)
    try:
        tasks = [lambda: ran.append(1)] * 3
        kept = clock if with_clock else None
        if gap is None:
            pool.run_all(tasks, clock=kept)
        else:
            pool.run_all(tasks, gap, kept)
    finally:
        pool.close()
    assert ran == [1, 1, 1]
    assert clock.monotonic() - began == pytest.approx(paced)


def test_a_batch_ends_only_when_its_last_task_has() -> None:
    done: list[int] = []

    def slow() -> None:
        time.sleep(0.3)
        done.append(2)

    pool = WorkerPool(1)
    try:
        pool.run_all([lambda: done.append(1), slow])
        assert done == [1, 2]
    finally:
        pool.close()

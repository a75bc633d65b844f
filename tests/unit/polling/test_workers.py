"""The worker pool: a job's unexpected exception goes to its error callback, and the worker
and the batch go on."""

from __future__ import annotations

import logging
import threading

import pytest

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

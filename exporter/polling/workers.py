"""A small bounded pool of daemon threads, so an API call in flight never delays shutdown; with
the supervisor, the only place a task's unexpected exception is caught."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from exporter.core.clock import Clock

Task = Callable[[], None]
#: One step of a Job: True when the job's next step is to run.
Step = Callable[[], bool]
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Job:
    """Steps run in order while each returns True. An unexpected exception in a step is handed
    to ``on_error`` with the step's index; its answer says whether the later steps still run
    (a job that fails one step need not lose the others)."""

    steps: Sequence[Step]
    on_error: Callable[[int, Exception], bool]

    def __call__(self) -> None:
        for i, step in enumerate(self.steps):
            try:
                go_on = step()
            except Exception as error:  # noqa: BLE001 -- the job's owner says what it costs
                go_on = self.on_error(i, error)
            if not go_on:
                return


class WorkerPool:
    """Runs batches of tasks on at most ``size`` daemon threads.

    ``concurrent.futures`` joins its threads at interpreter exit, which would hold SIGTERM
    hostage to a 60 s API timeout; these threads are daemons and simply stop with the process.
    """

    def __init__(self, size: int, name: str = "poll") -> None:
        if size < 1:
            raise ValueError("pool size must be at least 1")
        self._size = size
        self._name = name
        self._queue: queue.SimpleQueue[tuple[Task, _Batch] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def run_all(self, tasks: Sequence[Task], gap: float = 0.0, clock: Clock | None = None) -> None:
        """Run every task and return when all are done. A task (a Job's ``on_error``, too) that
        raises is logged.

        With ``gap`` (and the ``clock`` to keep it by), task ``i`` is handed to a worker no
        earlier than ``i * gap`` seconds after the first: the caller's thread paces the queue,
        so no worker sits idle in a sleep.
        """
        batch = _Batch(len(tasks))
        self._grow(min(self._size, len(tasks)))
        began = clock.monotonic() if clock is not None and gap > 0 else None
        for i, task in enumerate(tasks):
            if began is not None and clock is not None:
                clock.sleep(began + i * gap - clock.monotonic())
            self._queue.put((task, batch))
        batch.wait()

    def close(self) -> None:
        """Ask idle threads to exit; busy ones exit after their task."""
        for _ in self._threads:
            self._queue.put(None)
        self._threads.clear()

    def _grow(self, wanted: int) -> None:
        while len(self._threads) < wanted:
            thread = threading.Thread(
                target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            task, batch = item
            try:
                task()
            except Exception:  # a worker that dies would hang every later batch
                log.exception("task failed")
            finally:
                batch.done()


class _Batch:
    def __init__(self, count: int) -> None:
        self._left = count
        self._cond = threading.Condition()

    def done(self) -> None:
        with self._cond:
            self._left -= 1
            if self._left <= 0:
                self._cond.notify_all()

    def wait(self) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._left <= 0)

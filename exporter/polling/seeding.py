"""Budget seeding: the usage a budget's period held before a new target's counting began.

A target's counters start at its ledger's origin, so a monthly budget deployed mid-month would
otherwise miss everything spent since the 1st. For every target whose ledger is new (first
deployment, lost state, a target added by a reload or discovery), the poller reads, once, the
UTC days from the start of the earliest budget period in force it falls under up to its
origin, each day once it has settled, plus the ledger's baseline (what its first stretch held
at its first read, which its counters leave out); the service then adds them to the budgets
(cost/budgets). Restored ledgers are never seeded: what they counted is already in the
budgets, or arrives as their increments.

Progress within a target is not kept across restarts (its days are read again); which targets
still wait is (``pending``), and it is saved in the same state document as the budgets' use, so
a seed is counted exactly once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from exporter.config.types import Target
from exporter.core.usage import Totals

DAY = 86400
#: Days read per target and poll, like a catch-up (a month takes four polls).
MAX_SEED_READS = 8

Horizon = Callable[[Target, int], int | None]
"""Where a target's seed starts: the earliest start of the budget periods it falls under that
contain the given instant (now), a UTC day's first second; None when it falls under none."""


@dataclass(frozen=True, slots=True)
class Seed:
    """A target's usage before its counting began, by UTC day (the day's first second)."""

    target: Target
    origin: int
    days: tuple[tuple[int, Totals], ...]


@dataclass(slots=True)
class _Progress:
    start: int = -1  # the first day; -1 until planned
    read: dict[int, Totals] = field(default_factory=dict)


class Seeding:
    """Which new targets still need their seed read, and the days read so far.

    Shared by the pollers of a process (a reload or discovery change keeps it), like the
    bucket meter; thread-safe, since targets are polled concurrently.
    """

    def __init__(self, pending: Iterable[str] = (), horizon: Horizon | None = None) -> None:
        self._lock = threading.Lock()
        self._progress: dict[str, _Progress] = {ident: _Progress() for ident in pending}
        self._horizon = horizon
        self._done: list[Seed] = []
        self._reasons: set[str] = set()  # why seeds were given up, to log each reason once

    def configure(self, horizon: Horizon | None) -> None:
        """Use ``horizon`` from now on (None: no budgets, so nothing is seeded)."""
        with self._lock:
            self._horizon = horizon

    def begin(self, ident: str) -> None:
        """A new ledger for ``ident``: its seed is due (if budgets want one)."""
        with self._lock:
            if self._horizon is not None:
                self._progress.setdefault(ident, _Progress())

    def pending(self) -> list[str]:
        """The targets whose seed is not in the budgets yet (saved in the state): still being
        read, or read and not taken yet. A state written in between (``stop()`` does not wait
        for the cycle) must not lose a seed that is in neither the budgets nor this list."""
        with self._lock:
            return sorted({*self._progress, *(seed.target.ident for seed in self._done)})

    def plan(self, target: Target, origin: int, settled_before: int) -> list[tuple[int, int]]:
        """The inclusive ``(start, end)`` day slices to read for ``target`` now: days before
        ``origin`` not read yet whose end is before ``settled_before`` (API time minus settle),
        at most MAX_SEED_READS. Empty when nothing is due; a target under no budget is done."""
        with self._lock:
            progress = self._progress.get(target.ident)
            if progress is None:
                return []
            if progress.start < 0:
                # The periods in force now: days of earlier ones can count for no budget, and a
                # ledger that began before them already counts all of them itself.
                start = None if self._horizon is None else self._horizon(target, settled_before)
                if start is None or start >= origin:
                    del self._progress[target.ident]  # nothing before counting to add
                    return []
                progress.start = start
            slices = []
            for day in range(progress.start, origin, DAY):
                end = min(day + DAY, origin) - 1
                if day not in progress.read and end < settled_before:
                    slices.append((day, end))
                if len(slices) == MAX_SEED_READS:
                    break
            return slices

    def baseline(self, target: Target, origin: int, totals: Totals) -> None:
        """The ledger's baseline (usage from ``origin`` to its first read), counted with the
        seed's days; call after :meth:`plan` and before the days' reads."""
        with self._lock:
            progress = self._progress.get(target.ident)
            if progress is not None and 0 <= progress.start < origin:
                progress.read[origin] = totals

    def record(self, target: Target, origin: int, start: int, totals: Totals) -> None:
        """``totals`` for the slice starting at ``start``; the seed is done with its last."""
        with self._lock:
            progress = self._progress.get(target.ident)
            if progress is None or progress.start < 0:
                return
            progress.read[start] = totals
            days = range(progress.start, origin, DAY)
            if all(day in progress.read for day in days):
                del self._progress[target.ident]
                self._done.append(Seed(target, origin, tuple(sorted(progress.read.items()))))

    def drop(self, ident: str, reason: str) -> bool:
        """Give up ``ident``'s seed (its days cannot be read exactly); whether ``reason`` is
        new, so the caller logs each reason once."""
        with self._lock:
            self._progress.pop(ident, None)
            new = reason not in self._reasons
            self._reasons.add(reason)
            return new

    def take_done(self) -> list[Seed]:
        """The seeds completed since the last call, to add to the budgets once."""
        with self._lock:
            done, self._done = self._done, []
            return done

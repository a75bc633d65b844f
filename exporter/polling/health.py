"""A target's poll health, one small type per concern: whether it answers, its failures and
permanent-error pause, the strikes of ranges the API rejects, a fresh ledger's first answer,
its catch-up, its window gauges. Each is changed only by its target's poll (and ``adopt``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from exporter.accounting.ledger import Read
from exporter.api.errors import ApiError
from exporter.core.usage import Totals
from exporter.polling.windowreads import WindowGauges


@dataclass(slots=True)
class Outcome:
    """Whether the target's last poll counted, when one last did (wall time), and whether it
    was polled at all (new targets are read at once, not paced)."""

    up: bool = False
    last_success: float | None = None
    polled: bool = False

    def tried(self) -> None:
        """The target's poll began (paced from now on)."""
        self.polled = True

    def succeeded(self, now: float) -> None:
        """A poll counted at wall time ``now``."""
        self.up, self.last_success = True, now

    def failed(self) -> None:
        """A poll did not count."""
        self.up = False


@dataclass(slots=True)
class Failures:
    """The failures by reason (never reset within a process), the problem last said, and when
    a target paused by a permanent error is tried again (monotonic; 0: not paused)."""

    counts: Counter[str] = field(default_factory=Counter)
    last_problem: str | None = None
    retry_at: float = 0.0

    def paused(self, now: float) -> bool:
        """Whether a permanent error still pauses the target at monotonic ``now``."""
        return now < self.retry_at

    def failed(self, error: ApiError, now: float, pause: float) -> bool:
        """Count ``error`` (a permanent one pauses the target ``pause`` seconds from ``now``);
        True when it is a change of problem, to be said."""
        self.counts[error.category] += 1
        if not error.transient:
            self.retry_at = now + pause
        problem = f"{error.category}:{error.retcode}:{error.http_status}"
        if problem == self.last_problem:
            return False
        self.last_problem = problem
        return True

    def cleared(self) -> None:
        """A poll counted: no problem now, no pause."""
        self.last_problem, self.retry_at = None, 0.0

    def lift(self) -> None:
        """End a permanent-error pause (a reload: the operator may have fixed the keys)."""
        self.retry_at = 0.0

    def by_reason(self) -> tuple[tuple[str, int], ...]:
        """The counts, sorted by reason."""
        return tuple(sorted(self.counts.items()))


@dataclass(slots=True)
class Strikes:
    """Failed reads by the start of their range, counted in cycles where another read of the
    target succeeded: a range the API keeps rejecting is given up (see Poller._strike)."""

    by_start: dict[int, int] = field(default_factory=dict)

    def struck(self, start: int) -> int:
        """The read from ``start`` failed once more; its strikes."""
        strikes = self.by_start[start] = self.by_start.get(start, 0) + 1
        return strikes

    def cleared(self, start: int) -> None:
        """The read from ``start`` succeeded, or was given up."""
        self.by_start.pop(start, None)


@dataclass(slots=True)
class FirstAnswer:
    """A fresh ledger's first answer while the API's time was not settled: (read, totals, sent
    monotonic), its baseline once the time settles and agrees (see Poller._take_baseline); and
    whether the API refused a first read that reached past its time."""

    held: tuple[Read, Totals, float] | None = None
    no_reach: bool = False

    def refused(self) -> None:
        """The API refused a first read reaching past its time: ask without from now on."""
        self.no_reach = True

    def hold(self, read: Read, totals: Totals, sent: float) -> None:
        """Keep the first answer until the API's time is settled."""
        self.held = (read, totals, sent)

    def take(self) -> tuple[Read, Totals, float] | None:
        """The held answer, if any, no longer held."""
        held, self.held = self.held, None
        return held


@dataclass(slots=True)
class CatchUp:
    """The API time of the latest plan, how far behind it the reads are (API seconds), and
    whether, once in this process, every second up to a plan's time was read."""

    planned: int | None = None
    remaining: int | None = None
    caught_up: bool = False

    def plan(self, now: int) -> None:
        """This cycle's reads are planned up to API time ``now``."""
        self.planned = now

    def track(self, frontier: int) -> bool:
        """The reads stand at ``frontier``; True the first time nothing is behind the plan."""
        if self.planned is None:
            return False
        self.remaining = max(0, self.planned - frontier + 1)
        if self.remaining or self.caught_up:
            return False
        self.caught_up = True
        return True

    def restart(self) -> None:
        """A ledger from elsewhere: caught up only once it is read up to a plan again."""
        self.caught_up, self.remaining = False, None


@dataclass(slots=True)
class Health:
    """Per-target poll health, mutated only by that target's task (and adopt, under the lock)."""

    outcome: Outcome = field(default_factory=Outcome)
    failures: Failures = field(default_factory=Failures)
    strikes: Strikes = field(default_factory=Strikes)
    first: FirstAnswer = field(default_factory=FirstAnswer)
    catchup: CatchUp = field(default_factory=CatchUp)
    windows: WindowGauges = field(default_factory=WindowGauges)

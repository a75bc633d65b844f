"""The ledger against a ground-truth event store: random usage, lateness, faults and restarts.

The promise checked after every step (CONTRACT.md, "Accounting"):

- counters never go down within a process lifetime;
- counter == sum of the events the ledger has been shown: an event counts iff its second was
  covered by a successful count read that saw it (``visible_at <=`` that read's server time), taking
  for each second the latest such read (a closed period is never read again: its closing read);
- independently of that bookkeeping: once time up to T is settled, every event in [origin, T] that
  became visible within ``settle`` is counted, and with no later usage the settled sum equals the
  exact truth of [origin, T] (unless a restart gave old time up, which ``skipped_seconds`` reports);
- audits report exactly the usage that arrived after its period closed;
- after faults stop, everything settles (liveness).
"""

from __future__ import annotations

import json
import random
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.ledger import DAY, Ledger, Read
from exporter.state import reconcile
from exporter.usage import ZERO, Totals

FAR = 2**62


@dataclass(frozen=True)
class Event:
    """One request's usage: it happened at ``ts`` and the API shows it from ``visible_at``."""

    ts: int
    visible_at: int
    totals: Totals


class EventStore:
    """The API's truth, sorted by timestamp."""

    def __init__(self, events: list[Event]) -> None:
        self.events = sorted(events, key=lambda e: e.ts)
        self._ts = [e.ts for e in self.events]
        self._values = [e.totals.values() for e in self.events]

    def span(self, start: int, end: int) -> range:
        """Indices of events with start <= ts <= end."""
        return range(bisect_left(self._ts, start), bisect_right(self._ts, end))

    def query(self, start: int, end: int, at: int) -> Totals:
        """What the API answers at time ``at`` for [start, end]."""
        return self.add_up(i for i in self.span(start, end) if self.events[i].visible_at <= at)

    def add_up(self, indices: Iterable[int]) -> Totals:
        """Sum of these events' usage, on plain tuples (Totals.__add__ is slow for many runs)."""
        sums = [0] * len(Totals.NAMES)
        for i in indices:
            for k, v in enumerate(self._values[i]):
                sums[k] += v
        return Totals(*sums)


@dataclass(frozen=True)
class Scenario:
    """The knobs of one simulated run."""

    interval: int
    period: int
    settle: int
    duration: int
    n_events: int
    p_beyond: float  # share of events that arrive later than settle
    p_poll_fail: float
    p_call_fail: float
    p_outage: float
    p_restart: float
    p_save_lost: float  # the save after a poll did not happen (crash, full disk)
    max_backfill: int
    max_reads: int | None
    audit: bool
    seed: int


def make_store(sc: Scenario, t0: int, rng: random.Random) -> EventStore:
    """Random usage, some of it on period boundaries and some before counting starts."""
    events = []
    for _ in range(sc.n_events):
        ts = t0 - sc.period + rng.randrange(sc.duration + sc.period)
        if rng.random() < 0.2:  # boundaries are where off-by-one errors live
            ts = (ts // sc.period) * sc.period - rng.randint(0, 1)
        if rng.random() < sc.p_beyond:
            late = sc.settle + rng.randint(1, 2 * sc.settle + 2 * sc.period)
        else:
            late = rng.choice([0, sc.settle, rng.randint(0, sc.settle)])
        tin, tout = rng.randint(0, 500), rng.randint(0, 500)
        events.append(Event(ts, ts + late, Totals(tin, tout, tin + tout, 1, rng.randint(0, 1))))
    return EventStore(events)


@dataclass
class Books:
    """The harness's own record of what was shown to the ledger in this chain of lifetimes."""

    origin: int
    expected: Totals = ZERO
    late: Totals = ZERO
    truth_until: int = 0
    settled_truth: Totals = ZERO
    audited: frozenset[tuple[int, int]] = frozenset()

    def copy(self) -> Books:
        """A snapshot (all fields are immutable)."""
        return Books(self.origin, self.expected, self.late, self.truth_until,
                     self.settled_truth, self.audited)


class Sim:
    """One exporter target, its API, its state file and its faults, on a fake clock."""

    def __init__(self, sc: Scenario) -> None:
        self.sc, self.rng = sc, random.Random(sc.seed)
        self.now = 1_700_000_000 + self.rng.randrange(DAY)  # deliberately off-grid
        self.store = make_store(sc, self.now, self.rng)
        self.period = sc.period
        self.periods_used = {sc.period}
        self.outage_until = 0
        self.fresh()

    def fresh(self) -> None:
        """A process without state: counting starts now, from zero."""
        self.ledger = Ledger(self.now, self.period, self.sc.settle, audit=self.sc.audit)
        self.books = Books(self.now, truth_until=self.now - 1)
        self.counted: set[int] = set()
        self.undo: list[int] = []  # events counted since the last save
        self.floor = ZERO
        self.saved: tuple[str, Books] | None = None  # a new chain cannot load the old one's state

    def step(self) -> None:
        """Maybe restart, maybe start an outage, then poll and save."""
        if self.rng.random() < self.sc.p_restart:
            self.restart()
        if self.rng.random() < self.sc.p_outage:
            self.outage_until = self.now + self.rng.randint(1, 3 * self.period)
        self.poll(self.sc.p_poll_fail, self.sc.p_call_fail)
        if self.rng.random() >= self.sc.p_save_lost:
            self.save()
        self.now += self.sc.interval

    def poll(self, p_poll_fail: float, p_call_fail: float) -> None:
        """One cycle: plan, call (in any order, some calls failing), record, check."""
        reads = self.ledger.plan(self.now, self.sc.max_reads)
        self.check_plan(reads)
        down = self.now < self.outage_until or self.rng.random() < p_poll_fail
        self.rng.shuffle(reads)  # concurrent calls complete in any order
        for read in reads:
            if down or self.rng.random() < p_call_fail:
                continue
            # The server answers a little after the request was sent; read_at is the send time.
            at = self.now + self.rng.randint(0, min(5, self.sc.interval - 1))
            applied = self.ledger.record(read, self.store.query(read.start, read.end, at), self.now)
            # An audit may be dropped meanwhile (its list is short); a count read never is.
            assert applied or read.kind == "audit"
            if applied:
                self.observe(read, at)
        self.check()

    def observe(self, read: Read, at: int) -> None:
        """Update the harness's books with what this read showed the ledger."""
        events = self.store.events
        seen = [i for i in self.store.span(read.start, read.end)
                if i not in self.counted and events[i].visible_at <= at]
        if read.kind == "audit":
            key = (read.start, read.end)
            assert key not in self.books.audited, "a closed period was audited twice"
            self.books.audited |= {key}
            self.books.late += self.store.add_up(seen)
            return
        self.counted.update(seen)
        self.undo.extend(seen)
        self.books.expected += self.store.add_up(seen)

    def check_plan(self, reads: list[Read]) -> None:
        """Reads stay within a day, after the origin, and count reads never overlap or repeat."""
        settled = self.ledger.settled_until()
        last_end = settled
        for read in reads:
            assert read.start <= read.end and read.end - read.start < DAY
            assert read.start >= self.books.origin
            if read.kind == "audit":
                assert read.end <= settled
                continue
            assert read.start > last_end and read.end <= self.now
            last_end = read.end
        if self.sc.max_reads is not None:
            assert len(reads) <= self.sc.max_reads

    def check(self) -> None:
        """The promise, after every step."""
        counters = self.ledger.counters()
        assert counters.dominates(self.floor), "a counter went down"
        self.floor = counters
        assert counters == self.books.expected
        assert self.ledger.late_after_settle == self.books.late
        settled = self.ledger.settled_until()
        assert settled <= self.now
        if self.ledger.skipped_seconds == 0 and settled > self.books.truth_until:
            self.check_settled(self.books.truth_until + 1, settled)

    def check_settled(self, start: int, end: int) -> None:
        """Newly settled time: on-time usage is all counted; without late usage, exactly."""
        for i in self.store.span(start, end):
            event = self.store.events[i]
            if event.visible_at <= event.ts + self.sc.settle:
                assert i in self.counted, f"on-time event {event} was settled uncounted"
        self.books.settled_truth += self.store.query(start, end, FAR)
        self.books.truth_until = end
        if self.sc.p_beyond == 0:
            assert self.ledger.settled_totals() == self.books.settled_truth

    def save(self) -> None:
        """Persist the ledger (as JSON text, like the state file) with the books that match it."""
        self.saved = (json.dumps(self.ledger.to_dict()), self.books.copy())
        self.undo = []

    def restart(self) -> None:
        """Stop (possibly losing unsaved work) and start again after some downtime."""
        self.now += self.rng.choice([
            self.sc.interval, self.rng.randint(1, 3) * self.period,
            self.sc.max_backfill + self.rng.randint(1, 2 * self.period)])
        if self.saved is None or self.rng.random() < 0.25:
            self.fresh()
            return
        doc, books = self.saved
        loaded = Ledger.from_dict(json.loads(doc))
        before = loaded.counters()
        if self.rng.random() < 0.3:  # the operator changed poll.period
            self.period = self.rng.choice(periods_for(self.sc.interval))
            self.periods_used.add(self.period)
        result = reconcile({"t": loaded, "gone": Ledger(0, self.period, 0)}, ["t", "new"],
                           self.now, self.period, self.sc.settle, self.sc.max_backfill,
                           audit=self.sc.audit)
        assert set(result.ledgers) == {"t", "new"}
        self.ledger = result.ledgers["t"]
        assert self.ledger.counters() == before, "a restart with state must continue the counters"
        self.books = books.copy()
        self.counted.difference_update(self.undo)  # what the lost polls showed is forgotten
        self.undo = []
        self.floor = before

    def drain(self) -> None:
        """Faults stop; everything up to the end of the run must settle, then stay exact."""
        end, self.outage_until = self.now, 0
        backlog = (end - self.ledger.settled_until()) // self.period + 2
        polls = backlog // (self.sc.max_reads or backlog) + 2
        # Polling less often than every interval is fine here and keeps the drain short.
        step = max(self.sc.interval, min(self.periods_used) // 4)
        longest = max(self.periods_used)  # stretches read before a period change keep their bounds
        polls += (longest + self.sc.settle) // step + 2
        for _ in range(polls):
            if self.ledger.settled_until() >= end:
                break
            self.poll(0.0, 0.0)
            self.now += step
        assert self.ledger.settled_until() >= end, "the ledger did not settle after faults stopped"


PERIODS = (60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 21600, 43200, 86400)


def periods_for(interval: int) -> list[int]:
    """Periods worth simulating at this poll interval (a few to a few dozen polls each)."""
    return [p for p in PERIODS if interval <= p <= 64 * interval]


@st.composite
def scenarios(draw: st.DrawFn, long: bool) -> Scenario:
    """A week at coarse steps (long) or a few hours at fine ones."""
    if long:
        interval = draw(st.sampled_from([600, 900, 1800, 3600]))
        duration = 7 * DAY
    else:
        interval = draw(st.sampled_from([1, 5, 15, 60]))
        duration = draw(st.integers(30, 250)) * interval
    period = draw(st.sampled_from(periods_for(interval)))
    settle = draw(st.sampled_from([0, interval, period // 4, period // 2, period, 2 * period])
                  | st.integers(0, 2 * period))
    p_fail = st.sampled_from([0.0, 0.05, 0.3])
    return Scenario(
        interval=interval, period=period, settle=settle, duration=duration,
        n_events=draw(st.integers(0, 400)),
        p_beyond=draw(st.sampled_from([0.0, 0.0, 0.1, 0.5])),
        p_poll_fail=draw(p_fail), p_call_fail=draw(p_fail),
        p_outage=draw(st.sampled_from([0.0, 0.005, 0.03])),
        p_restart=draw(st.sampled_from([0.0, 0.01, 0.05])),
        p_save_lost=draw(st.sampled_from([0.0, 0.1])),
        max_backfill=draw(st.sampled_from([period, 3 * period, DAY if long else 20 * period])),
        max_reads=draw(st.sampled_from([None, None, 1, 2, 5])),
        audit=draw(st.booleans()),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def run(sc: Scenario) -> None:
    """Simulate the whole scenario, checking after every step, then drain."""
    sim = Sim(sc)
    for _ in range(sc.duration // sc.interval):
        sim.step()
    sim.drain()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(long=True))
def test_a_week_of_random_usage_faults_and_restarts(sc: Scenario) -> None:
    run(sc)


@settings(max_examples=2500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(long=False))
def test_hours_at_fine_steps(sc: Scenario) -> None:
    run(sc)


def test_on_time_usage_without_faults_is_exact() -> None:
    """The plain statement: no faults, all usage within settle -> settled counter == truth."""
    sc = Scenario(interval=60, period=3600, settle=600, duration=2 * DAY, n_events=500,
                  p_beyond=0.0, p_poll_fail=0.0, p_call_fail=0.0, p_outage=0.0, p_restart=0.0,
                  p_save_lost=0.0, max_backfill=DAY, max_reads=None, audit=False, seed=7)
    sim = Sim(sc)
    for _ in range(sc.duration // sc.interval):
        sim.step()
    sim.drain()
    origin, settled = sim.ledger.origin, sim.ledger.settled_until()
    assert settled >= origin + sc.duration - 1
    assert sim.ledger.settled_totals() == sim.store.query(origin, settled, FAR)
    assert sim.ledger.settled_totals() != ZERO

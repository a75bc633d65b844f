"""Budget seeding: a budget deployed mid-period holds the period's usage from before counting
began, read once from the API, never twice (restarts, reloads) and never for restored ledgers."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from exporter.config import (
    ApiConfig,
    BudgetConfig,
    Config,
    ModelPrice,
    PollConfig,
    PricingConfig,
    StateConfig,
    Target,
)
from exporter.core.clock import SystemClock
from exporter.core.usage import Totals
from exporter.cost.budgets import BudgetTracker
from exporter.polling.seeding import DAY, Seeding
from exporter.service import Service
from exporter.simulator import Event, EventStore, SimulatorServer
from exporter.simulator.usage import Usage
from tests.fleet import SECOND_BUCKETS
from tests.harness import parse_metrics

NOV_1 = 1_793_491_200  # 2026-11-01T00:00:00Z
NOV_15 = NOV_1 + 14 * DAY
NOON = NOV_15 + 12 * 3600  # the API's time when the exporter starts
TARGET = Target("uminferapikey-a", "m", "org")
OTHER = Target("uminferapikey-b", "m", "org")  # under the monthly budget only


# --- the pieces ---


def test_a_new_target_reads_each_day_from_its_earliest_period_start_up_to_its_origin() -> None:
    tracker = BudgetTracker((BudgetConfig("d", "daily", key=TARGET.key, tokens=10),
                             BudgetConfig("m", "monthly", tokens=10)))
    seeding = Seeding(horizon=tracker.horizon)
    seeding.begin(TARGET.ident)
    origin = NOON + 7
    first = seeding.plan(TARGET, origin, settled_before=origin)
    # docs/cost.md: up to 8 days a poll (the number written out: a looser cap must fail here).
    assert first == [(NOV_1 + i * DAY, NOV_1 + (i + 1) * DAY - 1) for i in range(8)]
    for start, _ in first:
        seeding.record(TARGET, origin, start, Totals(tokens=1))
    assert seeding.take_done() == []
    rest = seeding.plan(TARGET, origin, settled_before=origin)
    assert rest[-1] == (NOV_15, origin - 1)  # the last day ends where counting began
    assert len(first) + len(rest) == 15
    for start, _ in rest:
        seeding.record(TARGET, origin, start, Totals(tokens=2))
    (seed,) = seeding.take_done()
    assert (seed.target, seed.origin, len(seed.days)) == (TARGET, origin, 15)
    assert seeding.pending() == [] and seeding.take_done() == []


def test_a_seed_from_the_epoch_is_a_seed_like_any_other() -> None:
    # Only a negative start marks a seed not planned yet: a period may begin at second 0.
    seeding = Seeding(horizon=lambda _target, _now: 0)
    seeding.begin(TARGET.ident)
    origin = 2 * DAY
    assert seeding.plan(TARGET, origin, settled_before=origin) == [(0, DAY - 1), (DAY, 2 * DAY - 1)]
    seeding.baseline(TARGET, origin, Totals(tokens=9))
    seeding.record(TARGET, origin, 0, Totals(tokens=1))
    assert seeding.plan(TARGET, origin, settled_before=origin) == [(DAY, 2 * DAY - 1)]
    seeding.record(TARGET, origin, DAY, Totals(tokens=2))
    (seed,) = seeding.take_done()
    assert seed.days == ((0, Totals(tokens=1)), (DAY, Totals(tokens=2)),
                         (origin, Totals(tokens=9)))


def test_a_seed_read_but_not_yet_counted_is_still_saved_as_pending() -> None:
    # stop() writes the state without waiting for the cycle: between the poll that reads a
    # seed's last day and the cost stage that adds it to the budgets, the state must still
    # list it, or a restart neither reads it again nor finds it in the budgets.
    seeding = Seeding(horizon=BudgetTracker((BudgetConfig("d", "daily", tokens=1),)).horizon)
    seeding.begin(TARGET.ident)
    origin = NOV_15 + 600
    [(start, _)] = seeding.plan(TARGET, origin, settled_before=origin)
    seeding.record(TARGET, origin, start, Totals(tokens=5))
    assert seeding.pending() == [TARGET.ident]  # read, not in the budgets yet
    assert len(seeding.take_done()) == 1
    assert seeding.pending() == []


def test_a_day_is_read_only_once_it_has_settled() -> None:
    seeding = Seeding(horizon=BudgetTracker((BudgetConfig("d", "daily", tokens=1),)).horizon)
    seeding.begin(TARGET.ident)
    origin = NOV_15 + 600
    assert seeding.plan(TARGET, origin, settled_before=origin - 60) == []
    assert seeding.plan(TARGET, origin, settled_before=origin) == [(NOV_15, origin - 1)]


def test_a_ledger_begun_before_the_periods_in_force_reads_nothing() -> None:
    # E.g. accounting.origin in October: the ledger itself counts all of November.
    seeding = Seeding(horizon=BudgetTracker((BudgetConfig("m", "monthly", tokens=1),)).horizon)
    seeding.begin(TARGET.ident)
    assert seeding.plan(TARGET, NOV_1 - 5 * DAY, settled_before=NOON) == []
    assert seeding.pending() == []


def test_without_budgets_or_a_matching_one_nothing_is_read() -> None:
    Seeding(horizon=None).begin(TARGET.ident)
    unmatched = Seeding(horizon=BudgetTracker((BudgetConfig("d", "daily", key="x",
                                                            tokens=1),)).horizon)
    unmatched.begin(TARGET.ident)
    assert unmatched.plan(TARGET, NOON, settled_before=NOON) == []
    assert unmatched.pending() == []


def test_each_budget_takes_the_days_of_its_own_current_period() -> None:
    daily, monthly = BudgetConfig("d", "daily", tokens=100), BudgetConfig("m", "monthly",
                                                                          tokens=100)
    euro = BudgetConfig("e", "monthly", cost=Decimal(5), currency="EUR")
    tracker = BudgetTracker((daily, monthly, euro))
    days = [(NOV_1, 3, Decimal("0.5")), (NOV_15, 4, Decimal("0.25")),
            (NOV_15 - DAY, 5, None)]
    tracker.add_before(TARGET, days, "EUR", NOON)
    used = {b.name: b.used for b in tracker.snapshot(NOON)}
    assert used == {"d": 4, "m": 12, "e": Decimal("0.75")}
    assert tracker.add_before(TARGET, days, "USD", NOON) == ("e",)  # not this budget's money
    assert tracker.snapshot(NOON)[2].used == Decimal("0.75")


@pytest.mark.parametrize(("budget", "origin"), [("monthly", NOV_1), ("daily", NOV_15)])
def test_a_ledger_beginning_exactly_at_its_period_start_needs_no_seed(budget: str,
                                                                      origin: int) -> None:
    # An origin on the 1st (or at midnight for a daily budget): the ledger counts the whole
    # period itself, so nothing is read and the target does not stay pending for ever.
    seeding = Seeding(horizon=BudgetTracker((BudgetConfig("b", budget, tokens=1),)).horizon)
    seeding.begin(TARGET.ident)
    assert seeding.pending() == [TARGET.ident]
    assert seeding.plan(TARGET, origin, settled_before=NOON) == []
    assert seeding.pending() == []
    assert seeding.take_done() == []


def test_the_baseline_is_counted_with_the_days_and_ignored_where_no_seed_is_due() -> None:
    seeding = Seeding(horizon=BudgetTracker((BudgetConfig("d", "daily", tokens=1),)).horizon)
    origin = NOV_15 + 600
    seeding.baseline(TARGET, origin, Totals(tokens=9))  # not pending: nothing to add it to
    seeding.begin(TARGET.ident)
    seeding.baseline(TARGET, origin, Totals(tokens=8))  # not planned yet: no seed known
    seeding.record(TARGET, origin, NOV_15, Totals(tokens=4))  # nor days
    assert seeding.take_done() == [] and seeding.pending() == [TARGET.ident]
    [(start, _)] = seeding.plan(TARGET, origin, settled_before=origin)
    seeding.baseline(TARGET, origin, Totals(tokens=7))
    seeding.record(TARGET, origin, start, Totals(tokens=5))
    (seed,) = seeding.take_done()
    assert seed.days == ((NOV_15, Totals(tokens=5)), (origin, Totals(tokens=7)))
    seeding.record(OTHER, origin, start, Totals(tokens=5))  # never begun: ignored
    assert seeding.pending() == [] and seeding.take_done() == []


def test_a_day_ending_the_second_before_settled_time_is_not_read_yet() -> None:
    seeding = Seeding(horizon=BudgetTracker((BudgetConfig("d", "daily", tokens=1),)).horizon)
    seeding.begin(TARGET.ident)
    origin = NOV_15 + 600
    assert seeding.plan(TARGET, origin, settled_before=origin - 1) == []  # ends at origin - 1


def test_targets_pending_in_the_state_without_budgets_any_more_are_done() -> None:
    seeding = Seeding(pending=[TARGET.ident])  # saved while budgets were configured
    assert seeding.pending() == [TARGET.ident]
    assert seeding.plan(TARGET, NOON, settled_before=NOON) == []
    assert seeding.pending() == []


def test_a_dropped_seed_is_no_longer_pending_and_each_reason_is_new_once() -> None:
    seeding = Seeding(pending=[TARGET.ident, OTHER.ident])
    assert seeding.drop(TARGET.ident, "rejected") is True
    assert seeding.pending() == [OTHER.ident]
    assert seeding.drop(OTHER.ident, "rejected") is False  # logged once, for the first
    assert seeding.drop(OTHER.ident, "too_late") is True
    assert seeding.pending() == []


class SlowDay(int):
    """A day's first second whose hashing and comparing yield the GIL, as a real poller's
    thread is switched out at any point: it widens each window in which two pollers recording
    the days of one seed (an old poller still running beside its replacement after a reload)
    can interleave."""

    def __hash__(self) -> int:
        time.sleep(0.0005)
        return int.__hash__(self)

    def __eq__(self, other: object) -> bool:
        time.sleep(0.0005)
        return int.__eq__(self, other)


def test_days_recorded_concurrently_complete_the_seed_exactly_once() -> None:
    origin = NOV_1 + 29 * DAY + 3600  # 30 days of November before counting began
    days = [SlowDay(NOV_1 + i * DAY) for i in range(30)]
    for _ in range(5):
        seeding = Seeding(horizon=BudgetTracker((BudgetConfig("m", "monthly",
                                                              tokens=1),)).horizon)
        seeding.begin(TARGET.ident)
        assert seeding.plan(TARGET, origin, settled_before=origin)
        barrier, errors = threading.Barrier(len(days)), list[BaseException]()

        def record(day: int, seeding: Seeding = seeding,
                   barrier: threading.Barrier = barrier, errors: list[BaseException] = errors
                   ) -> None:
            barrier.wait()
            try:
                seeding.record(TARGET, origin, day, Totals(tokens=1))
            except BaseException as error:  # reported by the test thread
                errors.append(error)

        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-5)
        try:
            threads = [threading.Thread(target=record, args=(day,)) for day in days]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            sys.setswitchinterval(interval)
        assert errors == []
        (seed,) = seeding.take_done()  # once: not lost, not repeated
        assert [day for day, _ in seed.days] == days
        assert seeding.pending() == []


# --- the real service against the simulator, mid-month ---


class MidMonthClock(SystemClock):
    """Real time moved to 12:00 UTC on 15 November (monotonic time is real)."""

    def __init__(self) -> None:
        self.shift = NOON - time.time()

    def time(self) -> float:
        return time.time() + self.shift


USE = {  # second -> tokens; only what lies in a budget's period counts for it
    NOV_1 - 1: 1_000_000,  # October: neither budget
    NOV_1: 1,
    NOV_1 + 9 * DAY + 3600: 20,
    NOV_15: 300,
    NOON - 90: 4_000,
}
MONTH = sum(n for ts, n in USE.items() if ts >= NOV_1)
TODAY = sum(n for ts, n in USE.items() if ts >= NOV_15)


def config(url: str, state: Path, *targets: Target) -> Config:
    return Config(
        api=ApiConfig(endpoint=url, public_key="pub", private_key="priv", timeout=5,
                      rate_limit=0),
        poll=PollConfig(interval=1, settle=1, test_period=10), windows=(),
        state=StateConfig(path=str(state)), targets=targets,
        # A dollar a token, so the money budget reads like the token ones.
        pricing=PricingConfig(currency="USD", models=(ModelPrice("m", Decimal(10**6)),)),
        budgets=(BudgetConfig("d", "daily", key=TARGET.key, tokens=10**9),
                 BudgetConfig("m", "monthly", tokens=10**9),
                 BudgetConfig("usd", "monthly", cost=Decimal(1000), currency="USD")))


@contextmanager
def simulator() -> Iterator[tuple[SimulatorServer, MidMonthClock]]:
    clock = MidMonthClock()
    store = EventStore()
    for target in (TARGET, OTHER):
        for ts, n in USE.items():
            store.add(Event(ts, ts, "org", target.key, target.model, Usage(n, 0, n, 1, 0)))
    with SimulatorServer(store, {"pub": "priv"}, clock, buckets=SECOND_BUCKETS) as sim:
        yield sim, clock


def metrics(service: Service) -> dict[str, float]:
    samples = parse_metrics(service.cache.body(compressed=False).decode())
    found = {dict(labels)["budget"]: v for (name, labels), v in samples.items()
             if name == "uminfer_budget_used"}
    found["seeding"] = service.metrics.registry.get_sample_value(
        "uminfer_budget_seeding_targets") or 0.0
    found["counted"] = sum(v for (name, _), v in samples.items()
                           if name == "uminfer_tokens_total")
    return found


def cycles(service: Service, until: float = 20.0) -> dict[str, float]:
    """Cycles until every seed is counted and everything used so far is counted."""
    deadline = time.monotonic() + until
    while True:
        service.run_cycle()
        seen = metrics(service)
        if (seen["seeding"] == 0 and seen["m"] >= 2 * MONTH) or time.monotonic() > deadline:
            return seen
        time.sleep(0.2)


def test_a_budget_deployed_mid_month_holds_the_whole_month_once(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    with simulator() as (sim, _):
        cfg = config(sim.url, state, TARGET, OTHER)
        service = Service(cfg, SystemClock(), CollectorRegistry(), lambda: cfg)
        service.run_cycle()  # one poll: at most MAX_SEED_READS days each, 15 are due
        first = metrics(service)
        assert first["seeding"] == 2 and first["m"] < 2 * MONTH
        service.stop()  # a restart in the middle of seeding

        again = Service(cfg, SystemClock(), CollectorRegistry(), lambda: cfg)
        seen = cycles(again)
        # Usage since the origin is counted (0 here); everything before it is the seed.
        assert (seen["seeding"], seen["counted"]) == (0, 0)
        assert (seen["m"], seen["d"], seen["usd"]) == (2 * MONTH, TODAY, 2 * MONTH)
        again.stop()

        # A restart with every seed counted reads no more and counts nothing twice.
        third = Service(cfg, SystemClock(), CollectorRegistry(), lambda: cfg)
        for _ in range(3):
            third.run_cycle()
        seen = metrics(third)
        assert (seen["m"], seen["d"], seen["seeding"]) == (2 * MONTH, TODAY, 0)
        third.stop()


def test_a_target_added_by_a_reload_is_seeded_and_restored_ones_are_not(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    with simulator() as (sim, _):
        one = config(sim.url, state, TARGET)
        both = config(sim.url, state, TARGET, OTHER)
        current = [one]
        service = Service(one, SystemClock(), CollectorRegistry(), lambda: current[0])
        deadline = time.monotonic() + 20
        while metrics(service).get("m", 0) < MONTH and time.monotonic() < deadline:
            service.run_cycle()
            time.sleep(0.2)
        assert metrics(service)["m"] == MONTH
        current[0] = both
        assert service.reload() is None
        seen = cycles(service)
        assert (seen["m"], seen["d"], seen["seeding"]) == (2 * MONTH, TODAY, 0)
        service.stop()

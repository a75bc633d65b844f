"""What is polled now: a target set changed by a reload or discovery keeps every ledger (the
gone ones parked, since when), health carries over (pauses lifted only by a reload), cost
meters follow exactly the ledgers known, and parked ledgers expire after their retention."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal

import pytest

from exporter.accounting.ledger import Ledger
from exporter.accounting.parked import RETENTION
from exporter.accounting.state import StateDocument
from exporter.api.errors import ApiError
from exporter.config import (
    AccountingConfig,
    ApiConfig,
    Config,
    ModelPrice,
    PollConfig,
    PricingConfig,
    Target,
)
from exporter.core.clock import FakeClock
from exporter.core.usage import Reading, Totals
from exporter.polling.accounts import Accounts
from exporter.polling.costing import Costing
from exporter.polling.polled import Polled
from exporter.polling.poller import Poller
from exporter.polling.sharding import Shard
from exporter.polling.workers import WorkerPool
from tests.doubles import UsageDouble
from tests.pollers import make_poller

START = 1_700_006_400  # a period boundary for 1h periods
A, B, C = (Target(f"uminferapikey-{k}", "m") for k in "abc")
ALL = Shard(0, 1)


class Api(UsageDouble):
    """One token a second for every target; a key in ``failing`` fails with its error."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls = 0
        self.failing: dict[str, ApiError] = {}

    def get_usage(self, target: Target, start: int, end: int, deadline: float) -> Reading:
        self.calls += 1
        if target.key in self.failing:
            raise self.failing[target.key]
        seconds = max(0, min(end, int(self.clock.time())) - start + 1)
        return Reading(Totals(seconds, 0, seconds, 0, 0))


class Cost(Costing):
    """The real costing, telling what it was configured with and how often it synced."""

    def __init__(self, config: Config) -> None:
        super().__init__(config, StateDocument())
        self.configured: list[tuple[Config, object, object]] = []
        self.synced: list[set[str]] = []

    def configure(self, config: Config, listed: Mapping[str, Iterable[ModelPrice]],
                  unlisted: Mapping[str, Mapping[str, str]]) -> None:
        self.configured.append((config, listed, unlisted))
        super().configure(config, listed, unlisted)

    def sync(self, ledgers: Mapping[str, Ledger]) -> None:
        self.synced.append(set(ledgers))
        super().sync(ledgers)


class Found(Accounts):
    """Accounts whose discovery finds ``found`` (this shard's share; when ``changed``), with
    fixed list prices; each call's arguments kept."""

    LISTED = {"": (ModelPrice("m", input=Decimal(1)),)}
    UNLISTED = {"": {"m2": "unknown_unit"}}

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(lambda api: pytest.fail("no account is connected here"), clock)
        self.found: tuple[Target, ...] = ()
        self.changed = False
        self.asked: list[tuple[str, Config, object]] = []

    def refresh_targets(self, config: Config, deadline: float) -> bool:
        self.asked.append(("refresh", config, deadline))
        return self.changed

    def effective(self, config: Config, shard: Shard) -> Config:
        self.asked.append(("effective", config, shard))
        mine = tuple(t for t in self.found if shard.owns(t))
        return dataclasses.replace(config, targets=config.targets + mine)

    def prices(self, config: Config) -> tuple[dict[str, tuple[ModelPrice, ...]],
                                              dict[str, dict[str, str]]]:
        self.asked.append(("prices", config, None))
        return dict(self.LISTED), dict(self.UNLISTED)


def config(*targets: Target, origin: int | None = None) -> Config:
    return Config(api=ApiConfig(timeout=10, rate_limit=0),
                  poll=PollConfig(interval=60, settle=600, test_period=3600),
                  accounting=AccountingConfig(origin=origin),
                  pricing=PricingConfig(), targets=targets)


def ledger(origin: int = START) -> Ledger:
    return Ledger(origin, 3600, 300)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START + 100.0)


@pytest.fixture
def pool() -> Iterator[WorkerPool]:
    workers = WorkerPool(1)
    yield workers
    workers.close()


class Setup:
    def __init__(self, clock: FakeClock, pool: WorkerPool) -> None:
        self.clock, self.api, self.now = clock, Api(clock), START + 50
        self.made: list[Poller] = []
        self.pool = pool
        self.accounts = Found(clock)

    def make(self, cfg: Config, ledgers: dict[str, Ledger]) -> Poller:
        poller = make_poller(cfg, self.api, self.clock, self.pool, ledgers)
        self.made.append(poller)
        return poller

    def polled(self, cfg: Config, known: Mapping[str, Ledger],
               since: Mapping[str, int] | None = None) -> tuple[Polled, Cost]:
        cost = Cost(cfg)
        polled = Polled(cfg, known, since or {}, make=self.make, cost=cost,
                        api_now=lambda: self.now)
        return polled, cost


@pytest.fixture
def setup(clock: FakeClock, pool: WorkerPool) -> Setup:
    return Setup(clock, pool)


def test_a_start_polls_the_targets_in_force_and_parks_the_rest(setup: Setup) -> None:
    a, b, gone, left = ledger(), ledger(), ledger(), ledger()
    polled, cost = setup.polled(config(A, B), {A.ident: a, B.ident: b, C.ident: gone,
                                               "/x/m": left}, {C.ident: START - 5})
    assert polled.poller is setup.made[-1]
    assert polled.poller.ledgers() == {A.ident: a, B.ident: b}
    assert polled.parked.ledgers() == {C.ident: gone, "/x/m": left}
    assert polled.parked.since() == {C.ident: START - 5, "/x/m": START + 50}
    assert polled.known() == {A.ident: a, B.ident: b, C.ident: gone, "/x/m": left}
    assert cost.synced[-1] == {A.ident, B.ident, C.ident, "/x/m"}
    # retuned to the config (settle 600, audits on), never rebased
    assert [(led.settle, led.audit, led.origin) for led in (a, b)] == [(600, True, START)] * 2
    assert (gone.settle, gone.audit) == (300, False)


def test_a_ledger_that_began_after_the_origins_day_counts_from_it(
        setup: Setup, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "exporter.accounting.state")
    late = ledger(START + 7200)
    setup.polled(config(A, origin=START + 1800), {A.ident: late})
    assert "1 targets began counting after accounting.origin's day" in caplog.text
    assert late.counts_from(START)


def test_a_reload_parks_gone_targets_keeps_the_rest_and_unparks_returning_ones(
        setup: Setup) -> None:
    a, b = ledger(), ledger()
    polled, cost = setup.polled(config(A, B), {A.ident: a, B.ident: b})
    first = polled.poller
    setup.now = START + 70
    polled.follow(setup.accounts, config(A), ALL, reloaded=True)
    assert polled.poller is not first
    assert polled.poller.ledgers() == {A.ident: a}
    assert polled.parked.since() == {B.ident: START + 70}
    assert polled.poller.status is first.status  # health carried
    setup.now = START + 90
    polled.follow(setup.accounts, config(A, B), ALL, reloaded=True)
    assert polled.poller.ledgers() == {A.ident: a, B.ident: b}  # b continues
    assert polled.parked.ledgers() == {}
    assert cost.synced[-1] == {A.ident, B.ident}


def test_follow_prices_with_the_accounts_list_prices_and_remakes_only_on_change(
        setup: Setup) -> None:
    cfg = config(A)
    polled, cost = setup.polled(cfg, {})
    first = polled.poller
    polled.follow(setup.accounts, cfg, ALL, reloaded=False)
    assert polled.poller is first  # same targets, not reloaded: the same poller
    assert cost.configured == [(cfg, Found.LISTED, Found.UNLISTED)]
    polled.follow(setup.accounts, cfg, ALL, reloaded=True)
    assert polled.poller is not first  # a reload always re-makes it
    setup.accounts.found = (B,)
    second = polled.poller
    polled.follow(setup.accounts, cfg, ALL, reloaded=False)
    assert polled.poller is not second
    assert polled.poller.targets == (A, B)


def test_discovery_changes_what_is_polled_only_when_it_found_a_change(setup: Setup) -> None:
    cfg = config(A)
    polled, cost = setup.polled(cfg, {})
    setup.accounts.found = (B,)
    polled.discover(setup.accounts, cfg, ALL, deadline=12.5)
    assert (polled.poller.targets, cost.configured) == ((A,), [])
    assert setup.accounts.asked == [("refresh", cfg, 12.5)]
    setup.accounts.changed = True
    polled.discover(setup.accounts, cfg, ALL, deadline=13.5)
    assert polled.poller.targets == (A, B)
    assert len(cost.configured) == 1
    assert setup.accounts.asked[1:] == [("refresh", cfg, 13.5), ("prices", cfg, None),
                                        ("effective", cfg, ALL)]
    first = polled.poller
    polled.discover(setup.accounts, cfg, ALL, deadline=14.5)  # a change that changes nothing
    assert polled.poller is first  # not a reload: the same poller


def test_discovered_targets_are_cut_to_this_shard(setup: Setup) -> None:
    cfg = config(A)
    polled, _ = setup.polled(cfg, {})
    found = tuple(Target(f"uminferapikey-d{i}", "m") for i in range(8))
    setup.accounts.found, setup.accounts.changed = found, True
    half = Shard(1, 2)
    polled.discover(setup.accounts, cfg, half, deadline=0.0)
    assert polled.poller.targets == (A, *(t for t in found if half.owns(t)))
    assert 0 < len(polled.poller.targets) - 1 < len(found)


@pytest.mark.parametrize(("reloaded", "calls_after"), [(True, 2), (False, 1)])
def test_only_a_reload_lifts_a_permanent_error_pause(
        setup: Setup, clock: FakeClock, reloaded: bool, calls_after: int) -> None:
    setup.api.failing[A.key] = ApiError("retcode", "RetCode 171", retcode=171, transient=False)
    polled, _ = setup.polled(config(A), {A.ident: Ledger(START, 3600, 600, audit=True)})
    polled.poller.cycle()
    assert setup.api.calls == 1
    setup.accounts.found = (B,)  # a target set that changed: the poller is re-made
    polled.follow(setup.accounts, config(A), ALL, reloaded=reloaded)
    clock.advance(60.0)
    [target, _] = polled.poller.cycle().targets
    assert dict(target.failures)["retcode"] == calls_after


def test_parked_ledgers_expire_after_the_retention_with_their_meters(setup: Setup) -> None:
    polled, cost = setup.polled(config(A), {A.ident: ledger(), B.ident: ledger()},
                                {B.ident: START})
    syncs = len(cost.synced)
    setup.now = START + RETENTION
    polled.expire()
    assert (set(polled.parked.ledgers()), len(cost.synced)) == ({B.ident}, syncs)
    setup.now = START + RETENTION + 1
    polled.expire()
    assert polled.parked.ledgers() == {}
    assert cost.synced[-1] == {A.ident}
    assert set(cost.spend.meters()) == {A.ident}

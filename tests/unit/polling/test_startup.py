"""The start of counting: the API's clock is learned first (each waiting target says why it
waits), a peer is asked once when that clock is known, and the loaded ledgers are rebased once
it is settled, by the API's time at the start, with state.max_backfill (none with an origin)."""

from __future__ import annotations

import email.utils
import logging
from collections.abc import Callable, Iterator
from typing import cast

import pytest

from exporter.accounting.handoff import Handoff
from exporter.accounting.ledger import Ledger
from exporter.accounting.state import GridOf
from exporter.api.clock import QUORUM, ApiClock
from exporter.config import AccountingConfig, Config, PollConfig, StateConfig, Target
from exporter.core.clock import Clock, FakeClock
from exporter.core.grid import Grid
from exporter.core.usage import Reading
from exporter.polling.pairing import Pairing
from exporter.polling.peers import Fetched
from exporter.polling.poller import Poller
from exporter.polling.startup import Startup
from exporter.polling.workers import WorkerPool
from tests.doubles import UsageDouble
from tests.pollers import make_poller

START = 1_700_006_400  # a period boundary for 1h periods
HOUR = 3600
A = Target("uminferapikey-a", "m")
ANSWER = Fetched("http://peer:9866/-/ledgers", cast(Handoff, object()), 0.25)


class Api(UsageDouble):
    """An API whose every clock sync tells its time in a Date header (``dated``), or fails."""

    def __init__(self, clock: FakeClock, api_clock: ApiClock) -> None:
        self.clock, self.api_clock = clock, api_clock
        self.dated = False
        self.syncs: list[float] = []

    def sync_clock(self, deadline: float) -> str | None:
        self.syncs.append(deadline)
        if not self.dated:
            return "connection refused"
        self.api_clock.observe(email.utils.formatdate(self.clock.time(), usegmt=True),
                               self.clock.monotonic())
        return None

    def get_usage(self, target: Target, start: int, end: int, deadline: float) -> Reading:
        raise AssertionError("no usage is read here")


class Peer(Pairing):
    """A pairing whose peer answers ``answer``; it keeps what each fetch was asked with."""

    def __init__(self, answer: Fetched | None) -> None:
        super().__init__()
        self.answer = answer
        self.asked: list[tuple[Config, int, Clock, Grid]] = []

    def fetch(self, config: Config, api_now: Callable[[], int], clock: Clock,
              grid_of: GridOf) -> Fetched | None:
        self.asked.append((config, api_now(), clock, grid_of(A.ident)))
        return self.answer


def config(origin: int | None = None, max_backfill: int = HOUR) -> Config:
    return Config(poll=PollConfig(interval=60, settle=600, test_period=HOUR),
                  state=StateConfig(max_backfill=max_backfill),
                  accounting=AccountingConfig(origin=origin), targets=(A,))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START + 10 * HOUR + 100.0)


@pytest.fixture
def pool() -> Iterator[WorkerPool]:
    workers = WorkerPool(1)
    yield workers
    workers.close()


class World:
    def __init__(self, clock: FakeClock, pool: WorkerPool, cfg: Config) -> None:
        self.clock, self.config = clock, cfg
        self.api_clock = ApiClock(clock)
        self.api = Api(clock, self.api_clock)
        self.loaded = {A.ident: Ledger(START, HOUR, 600)}
        self.startup = Startup(self.loaded, clock, self.api_clock)
        self.poller: Poller = make_poller(cfg, self.api, clock, pool, {})
        self.skipped: list[int] = []

    def ask(self, peer: Pairing) -> tuple[Fetched, Config] | None:
        return self.startup.ask(self.api, self.poller, self.config, peer, deadline=12.5)

    def rebase(self) -> None:
        self.startup.rebase(self.config, self.poller, self.skipped.append)


def test_until_the_api_answers_each_target_says_why_and_no_peer_is_asked(
        clock: FakeClock, pool: WorkerPool) -> None:
    world, peer = World(clock, pool, config()), Peer(ANSWER)
    assert world.ask(peer) is None
    assert world.api.syncs == [12.5]
    assert peer.asked == []
    assert world.poller.status.not_answered().message == (
        "the API has not answered yet (connection refused): counting begins at the first poll "
        "it answers")
    world.rebase()
    assert not world.startup.done


def test_a_peer_is_asked_once_when_the_apis_clock_is_known(
        clock: FakeClock, pool: WorkerPool) -> None:
    world, peer = World(clock, pool, config()), Peer(ANSWER)
    world.api.dated = True
    clock.advance(30.0)
    assert world.ask(peer) == (ANSWER, world.config)
    [(asked_config, api_now, asked_clock, grid)] = peer.asked
    assert (asked_config, api_now, asked_clock) == (world.config, int(clock.time()), clock)
    assert grid == world.config.grid("")
    assert world.ask(peer) is None  # once, whatever it answered
    assert len(peer.asked) == 1
    assert len(world.api.syncs) == 2  # the clock is still learned until the rebase


def test_a_peer_that_gives_nothing_is_no_answer(clock: FakeClock, pool: WorkerPool) -> None:
    world, peer = World(clock, pool, config()), Peer(None)
    world.api.dated = True
    assert world.ask(peer) is None
    assert len(peer.asked) == 1


def test_the_rebase_waits_for_a_settled_clock_and_uses_the_api_time_of_the_start(
        clock: FakeClock, pool: WorkerPool, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "exporter.polling.startup")
    world = World(clock, pool, config(max_backfill=HOUR))
    world.api.dated = True
    clock.advance(2 * HOUR)  # later answers: still the start's time that counts
    world.ask(Peer(None))
    world.rebase()
    assert not world.startup.done  # one answer: known, not settled
    for _ in range(QUORUM - 1):
        world.ask(Peer(None))
    world.rebase()
    assert world.startup.done
    # down from START to START + 10 h + 100 s: kept back to the hour before, 9 hours skipped
    assert world.skipped == [9 * HOUR]
    assert world.loaded[A.ident].skipped_seconds == 9 * HOUR
    assert [r.getMessage() for r in caplog.records] == [
        f"state is older than state.max_backfill: {9 * HOUR} seconds of usage skipped"]
    assert world.ask(Peer(ANSWER)) is None  # done: nothing more to learn or ask
    assert len(world.api.syncs) == QUORUM
    world.rebase()
    assert world.skipped == [9 * HOUR]  # once


def test_nothing_skipped_is_not_said(clock: FakeClock, pool: WorkerPool,
                                     caplog: pytest.LogCaptureFixture) -> None:
    world = World(clock, pool, config(max_backfill=11 * HOUR))
    world.api.dated = True
    for _ in range(QUORUM):
        world.ask(Peer(None))
    world.rebase()
    assert world.startup.done
    assert (world.skipped, caplog.records) == ([], [])


def test_with_an_origin_the_whole_downtime_is_caught_up(
        clock: FakeClock, pool: WorkerPool) -> None:
    world = World(clock, pool, config(origin=START - 2 * HOUR, max_backfill=HOUR))
    world.api.dated = True
    for _ in range(QUORUM):
        world.ask(Peer(None))
    world.rebase()
    assert world.startup.done
    assert world.skipped == []
    loaded = world.loaded[A.ident]
    assert loaded.audit  # retuned as the poller's ledgers are
    assert loaded.counts_from(START - 2 * HOUR)  # begun at the origin: its hours caught up

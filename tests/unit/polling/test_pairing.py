"""One replica's side of the pair: the terms a peer must share, when a peer is asked, which of
its ledgers are taken (and how they are made this replica's), and the document served."""

from __future__ import annotations

import dataclasses
import datetime
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import exporter.polling.pairing as pairing_module
from exporter.accounting.handoff import Handoff, Terms, fingerprint, parse
from exporter.accounting.ledger import Ledger, Read
from exporter.accounting.state import StateDocument
from exporter.config import AccountingConfig, Config, parse_config
from exporter.core.clock import FakeClock
from exporter.core.grid import DAY
from exporter.core.usage import Totals
from exporter.polling.accounts import grid_of
from exporter.polling.costing import Costing
from exporter.polling.pairing import Pairing, terms
from exporter.polling.peers import Fetched
from exporter.polling.polled import Polled
from exporter.polling.poller import Poller
from exporter.polling.seeding import Seeding
from exporter.polling.workers import WorkerPool
from tests.doubles import UsageDouble
from tests.pollers import make_poller

H = 3600
T0 = 1_699_891_200  # midnight in Asia/Shanghai: a provider day's start
PEER = "http://peer:9866/-/ledgers"


def config(origin: int = T0, peers: tuple[str, ...] = ("http://peer:9866",), *,
           accounts: bool = False, budgets: bool = False) -> Config:
    api = ({"accounts": [{"name": n, "endpoint": f"https://{n}.example/",
                          "public_key": f"pub-{n}", "private_key": "s"} for n in ("b", "a")]}
           if accounts else {"api": {"public_key": "pub", "private_key": "s"}})
    return parse_config({
        **api, "poll": {"settle": "10m", "interval": "1m"},
        "accounting": {"origin": rfc3339(origin)},
        "ha": {"peers": list(peers)} if peers else {},
        "budgets": [{"name": "d", "period": "daily", "tokens": 10}] if budgets else [],
        "targets": [{"key": k, "model": "m", **({"account": "a"} if accounts else {})}
                    for k in ("ka", "kb")]}, {}, ".")


def rfc3339(seconds: int) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def tok(n: int) -> Totals:
    return Totals(input_tokens=n, tokens=n)


def counted(hours: int, settle: int = 600) -> Ledger:
    """A ledger from T0 whose first ``hours`` hours are settled."""
    led = Ledger(T0, H, settle, audit=False)
    for h in range(hours):
        start = T0 + h * H
        led.record(Read(start, start + H - 1, (start,)), tok(5), start + H + settle)
    return led


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0 + 5 * H)


@pytest.fixture
def pool() -> Iterator[WorkerPool]:
    workers = WorkerPool(1)
    yield workers
    workers.close()


def test_terms_are_the_origin_the_settle_and_each_accounts_key_fingerprint() -> None:
    assert terms(config(accounts=True), T0 + 5) == Terms(T0 + 5, 600, (
        ("a", fingerprint("pub-a")), ("b", fingerprint("pub-b"))))
    assert terms(config(), T0) == Terms(T0, 600, (("", fingerprint("pub")),))


def test_a_peer_is_asked_only_with_peers_and_an_origin(
        clock: FakeClock, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    asked: list[dict[str, Any]] = []
    answer: list[Fetched | None] = [None]

    def fetch(ha: object, peer_terms: Terms, api_now: Callable[[], int], fetch_clock: object,
              *, replica: str, grid_of: object) -> Fetched | None:
        asked.append({"ha": ha, "terms": peer_terms, "now": api_now(), "clock": fetch_clock,
                      "replica": replica, "grid_of": grid_of})
        return answer[0]

    monkeypatch.setattr(pairing_module, "fetch", fetch)
    caplog.set_level(logging.WARNING, "exporter.polling.pairing")
    pairing = Pairing()
    grids = grid_of(config())
    assert pairing.fetch(config(peers=()), lambda: T0, clock, grids) is None
    unset = dataclasses.replace(config(), accounting=AccountingConfig(origin=None))
    assert pairing.fetch(unset, lambda: T0, clock, grids) is None
    assert asked == []
    cfg = config()
    assert pairing.fetch(cfg, lambda: T0 + 7, clock, grids) is None
    assert asked == [{"ha": cfg.ha, "terms": terms(cfg, T0), "now": T0 + 7, "clock": clock,
                      "replica": pairing.replica, "grid_of": grids}]
    assert [r.getMessage() for r in caplog.records] == [
        "no peer gave its ledgers: catching up from accounting.origin through the API "
        "(uminfer_catchup_remaining_seconds says how far it has to go)"]
    answer[0] = Fetched(PEER, Handoff(terms(cfg, T0), {}), 0.5)
    assert pairing.fetch(cfg, lambda: T0, clock, grids) is answer[0]
    assert len(caplog.records) == 1  # an answer is no warning
    assert len(pairing.replica) == 16 and pairing.replica != Pairing().replica


class Api(UsageDouble):
    def get_usage(self, *args: object) -> Any:
        raise AssertionError("nothing is read here")


def poller_of(cfg: Config, clock: FakeClock, pool: WorkerPool,
              ledgers: dict[str, Ledger]) -> Poller:
    return make_poller(cfg, Api(), clock, pool, ledgers)


def test_a_peers_ledgers_are_taken_where_they_are_newer_and_made_this_replicas(
        clock: FakeClock, pool: WorkerPool, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "exporter.polling.pairing")
    cfg = config(budgets=True)
    ka, kb = (t.ident for t in cfg.targets)
    own_b = counted(1)
    poller = poller_of(cfg, clock, pool, {kb: own_b})
    peer_a, peer_b, peer_x = counted(3, settle=300), counted(4, settle=300), counted(4)
    seeding = Seeding(horizon=lambda target, at: T0 - DAY)
    fetched = Fetched(PEER, Handoff(terms(cfg, T0), {ka: peer_a, kb: peer_b, "/x/m": peer_x}),
                      0.1234)
    taken = Pairing.take(fetched, cfg, config=cfg, poller=poller, seeding=seeding,
                         grid_of=grid_of(cfg))
    assert taken == 2
    assert poller.ledgers() == {ka: peer_a, kb: peer_b}  # not the target nobody polls
    assert [(led.settle, led.audit) for led in (peer_a, peer_b)] == [(600, True)] * 2
    assert peer_a.grid == cfg.grid("")
    assert seeding.pending() == [ka]  # a target that had no ledger is new: seeded
    assert [r.getMessage() for r in caplog.records] == [
        f"bootstrapped 2 of 2 targets from peer {PEER} in 0.123s (one call); the rest catch up "
        "from the API"]


def test_nothing_is_taken_for_a_config_reloaded_during_the_call(
        clock: FakeClock, pool: WorkerPool, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "exporter.polling.pairing")
    asked, now = config(), config()
    ka = asked.targets[0].ident
    poller = poller_of(now, clock, pool, {})
    fetched = Fetched(PEER, Handoff(terms(asked, T0), {ka: counted(3)}), 0.1)
    assert Pairing.take(fetched, asked, config=now, poller=poller, seeding=Seeding(),
                        grid_of=grid_of(now)) == 0
    assert poller.ledgers() == {}
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", f"the config was reloaded during the call to peer {PEER}: its ledgers are "
                    "not taken; catching up from the API")]


def test_the_document_holds_the_ledgers_that_count_from_the_origin(
        clock: FakeClock, pool: WorkerPool) -> None:
    cfg = config()
    ka, kb = (t.ident for t in cfg.targets)
    from_origin, earlier, parked = counted(2), Ledger(T0 - DAY, H, 600), counted(1)
    cost = Costing(cfg, StateDocument())
    polled = Polled(cfg, {ka: from_origin, kb: earlier, "/x/m": parked}, {},
                    make=lambda c, led: poller_of(c, clock, pool, led), cost=cost,
                    api_now=lambda: T0 + 5 * H)
    pairing = Pairing()
    doc = parse(pairing.document(cfg, polled, grid_of(cfg)))
    assert (doc.terms, doc.replica) == (terms(cfg, T0), pairing.replica)
    assert sorted(doc.ledgers) == [ka, "/x/m"]  # parked too; not one from before the origin
    assert doc.ledgers[ka].settled_totals() == tok(10)
    unset = parse(pairing.document(
        dataclasses.replace(cfg, accounting=AccountingConfig(origin=None)), polled, grid_of(cfg)))
    assert (unset.ledgers, unset.terms.origin) == ({}, 0)

"""Two replicas through the real Service, on paths operators take: a pair formed from a running
exporter that already has state, and a replica that restarts and takes its peer's ledgers.

Each scenario started as a reproduction of a defect (a pair that never agreed, a counter that
went down at a takeover); the peer call is in-process here (the document is the real one,
rendered, parsed and checked as over HTTP; tests/e2e/test_ha_e2e.py covers the wire)."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

import exporter.polling.pairing as pairing_module
from exporter.accounting.handoff import HandoffError, Terms, check, parse
from exporter.config import ApiConfig, Config, HaConfig, PollConfig, StateConfig, Target
from exporter.config.types import AccountingConfig
from exporter.core.grid import Grid
from exporter.polling.peers import Fetched
from exporter.polling.workers import WorkerPool
from exporter.service import ApiStack, Service
from tests.fakeapi import FakeApi, SkewClock, Use

IDENT = "org/k1/m"
PEERS = ("https://a.example", "https://b.example")


def config(state: Path, *, origin: int | None = None, period: int | None = None,
           settle: int = 600) -> Config:
    return Config(
        api=ApiConfig(endpoint="https://api.example", timeout=5, rate_limit=0),
        poll=PollConfig(interval=60, settle=settle, test_period=period,
                        permanent_error_retry=60, window_interval=10**9),
        windows=(), state=StateConfig(str(state), 86400), targets=(Target("k1", "m", "org"),),
        accounting=AccountingConfig(origin),
        ha=HaConfig(peers=PEERS if origin is not None else (), timeout=2.0))


class Pair:
    """Replicas by peer URL, each a real Service on the one fake API; the peer call is the
    document a replica serves, parsed and checked as ``peers.fetch`` does."""

    def __init__(self, api: FakeApi, clock: SkewClock, monkeypatch: pytest.MonkeyPatch) -> None:
        self.api, self.clock = api, clock
        self.replicas: dict[str, Service | None] = {}
        monkeypatch.setattr(pairing_module, "fetch", self._fetch)

    def start(self, url: str, cfg: Config) -> Service:
        svc = Service(cfg, self.clock, CollectorRegistry(), lambda: cfg,
                      connect=lambda _api: ApiStack(WorkerPool(1), self.api, self.api))
        self.api.observers.append(svc.api_clock)
        self.replicas[url] = svc
        return svc

    def stop(self, url: str) -> None:
        svc = self.replicas[url]
        assert svc is not None
        svc.stop()
        self.api.observers.remove(svc.api_clock)
        self.replicas[url] = None

    def _fetch(self, ha: HaConfig, terms: Terms, api_now: Callable[[], int], clock: object, *,
               replica: str, grid_of: Callable[[str], Grid]) -> Fetched | None:
        for url in ha.peers:
            peer = self.replicas.get(url)
            if peer is None:
                continue
            handoff = parse(peer.ledger_document())
            if handoff.replica == replica:
                continue
            try:
                check(handoff, terms, api_now(), grid_of)
            except HandoffError:
                continue
            return Fetched(url, handoff, 0.0)
        return None


def published(svc: Service, name: str) -> float | None:
    for line in svc.cache.body(False).decode().splitlines():
        if line.startswith(name + "{") and 'key_id="k1"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def truth(api: FakeApi, start: int, end: int) -> int:
    now = api.clock.api()
    return sum(u.tokens for u in api.uses[IDENT] if start <= u.ts <= end and u.visible_at <= now)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("origin_before", [2 * 86400 + 3 * 3600, 2 * 3600])
def test_a_pair_formed_from_a_running_exporter_with_state_converges_on_the_origin(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int, origin_before: int) -> None:
    """A runs alone (no origin) with state; then ``accounting.origin`` and ``ha.peers`` are
    added and B joins with the same config. Both end at the usage since the origin's day:
    A's ledger began at its first poll (with a baseline), and is caught up from the origin
    rather than kept (a later origin on the same day must not let the baseline through)."""
    rng = random.Random(seed)
    start = 1_700_000_000 + rng.randrange(86400)  # any time of day
    clock = SkewClock(start, 0.0)
    api = FakeApi(clock)
    api.uses[IDENT] = [Use(ts, ts, rng.randint(1, 9))
                       for ts in sorted(rng.sample(range(start - 4 * 86400, start), 300))]

    def use() -> None:
        now = int(clock.api())
        if rng.random() < 0.3:  # sparse
            api.uses[IDENT].append(Use(now - rng.randrange(60), now, rng.randint(1, 100)))

    pair = Pair(api, clock, monkeypatch)
    alone = pair.start(PEERS[0], config(tmp_path / "a.json"))
    for _ in range(60):
        use()
        alone.run_cycle()
        clock.advance(60)
    began_alone = published(alone, "uminfer_tokens_total")
    pair.stop(PEERS[0])

    origin = start - origin_before
    a = pair.start(PEERS[0], config(tmp_path / "a.json", origin=origin))
    b = pair.start(PEERS[1], config(tmp_path / "b.json", origin=origin))
    seen: list[float] = []
    for _ in range(90):
        use()
        a.run_cycle()
        b.run_cycle()
        value = published(a, "uminfer_tokens_total")
        if value is not None:
            seen.append(value)
        clock.advance(60)
    for _ in range(3):
        a.run_cycle()
        b.run_cycle()
        clock.advance(60)
    day = Grid("Asia/Shanghai").start(origin)
    expected = truth(api, day, int(clock.api()))
    assert published(a, "uminfer_tokens_total") == published(b, "uminfer_tokens_total") == expected
    assert published(a, "uminfer_settled_tokens_total") == published(
        b, "uminfer_settled_tokens_total")
    assert began_alone is not None and all(later >= began_alone for later in seen)
    assert seen == sorted(seen)


def test_a_replica_that_restarts_and_takes_its_peers_ledger_keeps_its_problem_counters(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A found usage that arrived after settle (an audit) before B joined; A restarts after
    10 minutes down and takes B's ledger, settled further: A's late-usage counter stays."""
    start = 1_700_000_000 - 1_700_000_000 % 3600
    clock = SkewClock(start, 0.0)
    api = FakeApi(clock)
    rng = random.Random(5)
    api.uses[IDENT] = [Use(ts, ts, rng.randint(1, 9)) for ts in range(start - 86400, start, 97)]
    pair = Pair(api, clock, monkeypatch)
    cfg = {url: config(tmp_path / f"{n}.json", origin=start - 3600, period=60, settle=120)
           for n, url in zip("ab", PEERS, strict=True)}

    def cycle(*replicas: Service) -> None:
        now = int(clock.api())
        api.uses[IDENT].append(Use(now - rng.randrange(30), now, rng.randint(1, 100)))
        for svc in replicas:
            svc.run_cycle()
        clock.advance(60)

    a = pair.start(PEERS[0], cfg[PEERS[0]])
    for _ in range(10):
        cycle(a)
    now = int(clock.api())
    api.uses[IDENT].append(Use(now - 200, now, 500))  # for a minute A has closed already
    b = pair.start(PEERS[1], cfg[PEERS[1]])
    for _ in range(10):
        cycle(a, b)
    before = published(a, "uminfer_late_tokens_after_settle_total")
    assert before is not None and before >= 500
    pair.stop(PEERS[0])
    for _ in range(10):
        cycle(b)
    a = pair.start(PEERS[0], cfg[PEERS[0]])
    taken = a._poller.ledgers()
    for _ in range(3):
        cycle(a, b)
    assert taken  # A had its ledger from its state
    after = published(a, "uminfer_late_tokens_after_settle_total")
    assert after is not None and after >= before

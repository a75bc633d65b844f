"""The whole service against a ground-truth API on a fake clock: what the ledger proof cannot draw.

``test_accounting_model`` drives one ledger. This drives the real ``Service`` (poller, API clock,
discovery, parking, reloads, the state document, cost) with a fake API behind the ``connect``
seam, on the grid it runs on in production (the provider's days), and draws what only the
service can get wrong:

- APIs that bucket time every way the issue names: exact totals with minute, hourly or daily
  labels; whole buckets counted where labelled; windows rounded outward to whole buckets;
  hourly or daily buckets, daily ones in UTC+8 or in a zone with daylight saving (started
  around its 23- or 25-hour day); the buckets changing at any step; usage dense or sparse (one
  use an hour per key);
- ``Date`` headers that lie: the start's one plain GET off by two days or two hours, and any
  answer off so (a stray node), besides the local clock off the API's by up to an hour and
  stepped by up to two hours either way at any moment;
- discovery listings that fail or leave keys out, at start and at any step;
- reloads at any step (mid-outage, mid-catch-up) that remove and re-add a static target and
  change settle; restarts (with the state, with it corrupt, without it), while listing fails or
  the API is down; ranges the API rejects for good while newer reads succeed; a price change.

Checked after every cycle, from what ``/metrics`` shows:

- once the API has answered, every polled target's counters are exported and, unless the
  API rejects a range of it, it is up: nothing waits for the API's buckets to be learnt;
- a counter never goes down: within a process, across parking and across restarts with state;
- no counter shows more than the usage the API has made visible;
- nothing is settled (or skipped) that the API's true clock has not passed by settle;
- ``uminfer_backfill_skipped_seconds_total`` only grows at a restart, never at a reload or a
  discovery change; ``uminfer_revisions_total`` stays 0 (the API never lowers usage here, so a
  revision would be invented by the exporter, e.g. by a clock step or a stray Date);
- cost grows by exactly the counter's growth times the price in force;

and at the end, once faults stop and a provider midnight and settle have passed: every counter
equals, exactly, the usage that became visible after its ledger's baseline was read, from the
provider day that baseline was read in (by the API's true clock), unless a range was given up
or a restart skipped backfill, which must then be reported.
"""

from __future__ import annotations

import json
import random
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from exporter.config import ApiConfig, Config, PollConfig, StateConfig, Target
from exporter.config.types import DiscoveryConfig, ModelPrice, PricingConfig
from exporter.core.grid import Grid
from exporter.polling.workers import WorkerPool
from exporter.service import ApiStack, Service
from exporter.simulator.buckets import BucketPolicy
from tests.fakeapi import DISCOVERED, FakeApi, SkewClock, Use

INTERVAL = 60
H, DAY = 3600, 86400
HISTORY_STEP = 1800  # one use per half hour in the days before the start
DRAIN_STEP = 1800  # once usage stops, time passes in bigger strides (a slow poll loop)
PROJECT = "org"
STATIC = ("s1", "s2")
_SAMPLE = re.compile(r'^(uminfer_\w+)\{([^}]*)\} (\S+)$')
_KEY = re.compile(r'key_id="([^"]*)"')


@dataclass(frozen=True)
class Scenario:
    steps: int
    zone: str
    before_midnight: int  # the run starts this long before a provider midnight
    settle: int
    skew: int
    p_step: float
    p_outage: float
    p_listing: float
    p_reload: float
    p_restart: float
    p_reject: float
    p_price: float
    max_backfill: int
    seed: int
    buckets: BucketPolicy | None = None
    change: tuple[int, BucketPolicy | None] | None = None  # at this step, the API buckets so
    history: bool = False  # nine days of usage before the start
    p_use: float = 0.5  # each key's chance of a use each step (1/60: one an hour)
    stray_start: int = 0  # the start's plain GET Date off by this much
    p_stray: float = 0.0  # any answer's Date off by two days or two hours


@dataclass
class Seen:
    """The harness's record of one target across the run."""

    counter: float = 0.0
    cost: Decimal = Decimal(0)


@dataclass
class World:
    """The simulated deployment: API, clock, state file, config, and what was published."""

    sc: Scenario
    tmp: Path
    rng: random.Random = field(init=False)
    clock: SkewClock = field(init=False)
    api: FakeApi = field(init=False)
    config: Config = field(init=False)
    seen: dict[str, Seen] = field(default_factory=dict)
    price: Decimal = Decimal(2)
    service: Service | None = None
    min_settle: int = 0
    first_cycle: bool = True  # since a start: the one time backfill may be skipped
    any_skip: bool = False  # a restart gave old time up: exactness is then an upper bound
    cycle_times: list[float] = field(default_factory=list)  # the API's true time at each cycle
    step_no: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.sc.seed)
        self.grid = Grid(self.sc.zone)
        # 2023-11-04/05: America/New_York's 25-hour day; Shanghai's days are all 24 hours.
        start = self.grid.end(1_699_142_400 + self.rng.randrange(2 * DAY)) + 1
        start -= self.sc.before_midnight
        self.clock = SkewClock(start, self.sc.skew)
        self.api = FakeApi(self.clock)
        self.api.buckets = self.sc.buckets
        if self.sc.p_stray:
            self.api.stray = lambda: (self.rng.choice([2 * DAY, -2 * DAY, 2 * H])
                                      if self.rng.random() < self.sc.p_stray else 0)
        if self.sc.history:
            for key in (*STATIC, *DISCOVERED):
                self.api.uses[f"{PROJECT}/{key}/m"] = [
                    Use(ts, ts, self.rng.randint(1, 100))
                    for ts in range(start - 9 * 86400, start - INTERVAL, HISTORY_STEP)]
        self.min_settle = self.sc.settle
        self.config = Config(
            api=ApiConfig(endpoint="http://127.0.0.1:9", timeout=5, rate_limit=0,
                          time_zone=self.sc.zone),
            poll=PollConfig(interval=INTERVAL, settle=self.sc.settle,
                            permanent_error_retry=INTERVAL),
            windows=(), state=StateConfig(str(self.tmp / "state.json"), self.sc.max_backfill),
            targets=tuple(Target(k, "m", PROJECT) for k in STATIC),
            discovery=DiscoveryConfig(projects=(PROJECT,), refresh=INTERVAL),
            pricing=PricingConfig(models=(ModelPrice("m", input=self.price * 1_000_000),)))
        self.start()

    # -- the deployment -----------------------------------------------------------------------

    def start(self) -> None:
        """A new process on the state file as it is."""
        self.service = Service(self.config, self.clock, CollectorRegistry(), lambda: self.config,
                               connect=lambda _api: ApiStack(WorkerPool(2), self.api, self.api))
        self.api.api_clock = self.service.api_clock
        if self.sc.stray_start:  # the start's plain GET answers from a node whose clock is off
            self.api.stray_answers, self.api.stray_offset = 1, self.sc.stray_start
        for ident in self.uncounted():  # never counted (no baseline saved): afresh
            del self.seen[ident]

    def restart(self) -> None:
        assert self.service is not None
        self.service.stop()
        what = self.rng.choice(["state", "state", "corrupt", "none"])
        path = Path(str(self.config.state.path))
        if what != "state":
            if what == "corrupt" and path.exists():
                path.write_text("{garbage")
            elif path.exists():
                path.unlink()
            # A fresh chain: counters (and cost) start afresh, from a new baseline.
            self.seen = {}
        self.start()
        self.first_cycle = True

    def reload(self) -> None:
        statics = tuple(Target(k, "m", PROJECT) for k in STATIC
                        if k == "s1" or self.rng.random() < 0.6)
        poll = self.config.poll
        if self.rng.random() < 0.5:
            # Settle only grows: usage later than a settle once in force is legitimately lost,
            # which would blur the exact truth checked at the end.
            settle = self.rng.choice([poll.settle, poll.settle + 60, 2 * poll.settle])
            poll = replace(poll, settle=settle)
        pricing = self.config.pricing
        if self.rng.random() < self.sc.p_price:
            self.price = Decimal(self.rng.randint(1, 9))
            pricing = PricingConfig(models=(ModelPrice("m", input=self.price * 1_000_000),))
        self.config = replace(self.config, targets=statics, poll=poll, pricing=pricing)
        assert self.service is not None
        assert self.service.reload() is None
        for ident in self.uncounted():  # removed before counting began: forgotten
            if ident not in {t.ident for t in statics} and ident.split("/")[1] in STATIC:
                del self.seen[ident]

    def uncounted(self) -> list[str]:
        """Targets the harness knows whose counting has not begun (no baseline in the state)."""
        path = Path(str(self.config.state.path))
        saved = json.loads(path.read_text())["targets"] if path.exists() else {}
        return [ident for ident in self.seen
                if ident not in saved or saved[ident]["ledger"].get("fresh", False)]

    # -- metrics ------------------------------------------------------------------------------

    def samples(self) -> Iterator[tuple[str, str, float]]:
        assert self.service is not None
        for line in self.service.cache.body(False).decode().splitlines():
            m = _SAMPLE.match(line)
            if m:
                yield m.group(1), m.group(2), float(m.group(3))

    def per_key(self, name: str) -> dict[str, float]:
        out = {}
        for metric, labels, value in self.samples():
            key = _KEY.search(labels)
            if metric == name and key:
                out[f"{PROJECT}/{key.group(1)}/m"] = value
        return out

    def given_up_by_reason(self, reason: str) -> float:
        return sum(value for metric, labels, value in self.samples()
                   if metric == "uminfer_given_up_seconds_by_reason_total"
                   and labels == f'reason="{reason}"')

    def skipped_seconds(self) -> float:
        assert self.service is not None
        value = self.service.metrics.backfill_skipped._value.get()
        return float(value)

    # -- one step -----------------------------------------------------------------------------

    def usage(self) -> None:
        now = int(self.clock.api())
        for key in (*STATIC, *DISCOVERED):
            if self.rng.random() < self.sc.p_use:
                ts = now - self.rng.randrange(INTERVAL)
                late = self.rng.choice([0, self.rng.randint(0, self.min_settle)])
                ident = f"{PROJECT}/{key}/m"
                self.api.uses.setdefault(ident, []).append(
                    Use(ts, ts + late, self.rng.randint(1, 100)))

    def step(self) -> None:
        rng, sc = self.rng, self.sc
        if rng.random() < sc.p_step:
            self.clock.skew += rng.choice([-7200, -3600, -900, 900, 3600, 7200])
        if rng.random() < sc.p_outage:
            self.api.down = not self.api.down
        if rng.random() < sc.p_listing:
            self.api.listing = rng.choice(["ok", "fail", "partial"])
            self.api.hidden = {k for k in DISCOVERED if rng.random() < 0.5}
        if rng.random() < sc.p_reject and not self.api.reject_before:
            # The API stops answering for what lies before today; today's reads still work.
            self.api.reject_before = self.grid.start(int(self.clock.api())) - rng.randint(0, 3 * H)
        if sc.change is not None and sc.change[0] == self.step_no:
            self.api.buckets = sc.change[1]  # the API's buckets change (a release, a region)
        self.step_no += 1
        if rng.random() < sc.p_restart:
            self.restart()
        if rng.random() < sc.p_reload:
            self.reload()
        self.usage()
        self.cycle()
        self.clock.advance(INTERVAL)

    def cycle(self) -> None:
        assert self.service is not None
        skipped = self.skipped_seconds()
        cycle_api_time = self.clock.api()
        self.cycle_times.append(cycle_api_time)
        self.service.run_cycle()
        if not self.first_cycle:
            assert self.skipped_seconds() == skipped, "backfill skipped outside a restart"
        self.any_skip = self.any_skip or self.skipped_seconds() > 0
        # A restart rebases once answers agree on the API's time (see api.clock).
        self.first_cycle = not self.service._startup.done
        self.check(cycle_api_time)

    def check(self, cycle_api_time: float) -> None:
        tokens, costs = self.per_key("uminfer_tokens_total"), self.per_key("uminfer_cost_total")
        assert sum(self.per_key("uminfer_revisions_total").values()) == 0, "invented revision"
        if not self.api.down and self.service is not None and self.service.api_clock.known:
            # The API answered this cycle: every polled target shows its counters at once, and
            # is up unless the API rejects a range of it (nothing waits for its buckets).
            polled = {t.ident for t in self.service._poller.targets}
            assert polled <= tokens.keys(), f"not exported: {polled - tokens.keys()}"
            if not self.sc.p_reject:
                ups = self.per_key("uminfer_up")
                assert all(ups[i] == 1 for i in polled), f"down: {ups}"
        # Nothing closes (or is skipped by a rebase) before the API's clock has passed it by
        # settle, whatever the local clock or a stray Date says.
        now = self.clock.api()
        assert self.service is not None
        with self.service._poller.locked():
            ledgers = self.service._poller.ledgers()
        for ident, led in ledgers.items():
            until = led.settled_until()  # before its origin: nothing settled yet
            # (A restart's rebase gives up what is older than max_backfill: that far at most.)
            latest = max(now - self.min_settle, now - self.sc.max_backfill)
            # (A range the API rejects for good is given up, and settled so.)
            assert until < led.origin or led.given_up or until <= latest + 2, (
                f"{ident} settled to {until}")
        for ident, value in tokens.items():
            seen = self.seen.setdefault(ident, Seen())
            assert value >= seen.counter, f"{ident} went down: {seen.counter} -> {value}"
            assert value <= self.api.visible(ident), f"{ident} counts more than exists"
            seen.cost += (Decimal(int(value)) - Decimal(int(seen.counter))) * self.price
            seen.counter = value
            assert costs.get(ident, 0.0) == pytest.approx(float(seen.cost), rel=1e-12, abs=1e-9)

    # -- the end ------------------------------------------------------------------------------

    def drain(self) -> None:
        """Faults stop; past a provider midnight and settle, every target is exact."""
        self.api.down, self.api.listing = False, "ok"
        self.api.stray, self.api.stray_answers = None, 0
        if {t.key for t in self.config.targets} != set(STATIC):
            self.config = replace(self.config, targets=tuple(Target(k, "m", PROJECT)
                                                             for k in STATIC))
            assert self.service is not None
            assert self.service.reload() is None
        last_use = int(self.clock.api())
        for _ in range(4):  # caught up, and a baseline for every target
            self.cycle()
            self.clock.advance(INTERVAL)
        settled_by = self.grid.end(last_use) + 1 + self.config.poll.settle
        while self.clock.api() < settled_by + DRAIN_STEP:
            self.cycle()
            self.clock.advance(DRAIN_STEP)
        self.cycle()
        settled = self.per_key("uminfer_settled_timestamp_seconds")
        assert len(settled) == len(STATIC) + len(DISCOVERED), f"not all polled: {settled}"
        assert all(value >= last_use for value in settled.values()), f"not settled: {settled}"
        self.exact()

    def exact(self) -> None:
        assert self.service is not None
        self.service.save_state()
        doc = json.loads(Path(str(self.config.state.path)).read_text())
        tokens = self.per_key("uminfer_tokens_total")
        given_up = self.per_key("uminfer_given_up_seconds_total")
        for ident, value in tokens.items():
            ledger = doc["targets"][ident]["ledger"]
            assert not ledger["fresh"] and ledger["began"] is not None, f"{ident}: no baseline"
            # Its baseline was read in a cycle, at that cycle's API time (an estimate that errs
            # low by the second a Date header rounds away), whatever the local clock or a stray
            # Date said; counting begins in that provider day.
            based_at = next((int(t) for t in self.cycle_times
                             if int(t) - 2 <= ledger["began"] <= int(t)), None)
            assert based_at is not None, f"{ident}: began {ledger['began']} at no cycle"
            origin = ledger["origin"]
            assert origin == self.grid.start(based_at), f"{ident}: origin {origin}, {based_at}"
            truth = sum(u.tokens for u in self.api.uses.get(ident, ())
                        if u.ts >= origin and u.visible_at > based_at)
            if given_up.get(ident, 0) or self.any_skip:
                assert value <= truth
            else:
                assert value == truth, f"{ident}: counted {value}, truth {truth}"


#: The APIs drawn (``zone``: daily buckets at that zone's midnights): exact timestamps without
#: labels (the oracle's own), exact totals labelled by the minute, hour or day, and hourly or
#: daily buckets counted whole where labelled or with windows rounded outward.
def policies(zone: str) -> tuple[BucketPolicy | None, ...]:
    return (None, BucketPolicy(60), BucketPolicy(H), BucketPolicy(zone=zone),
            BucketPolicy(H, 0, "buckets"), BucketPolicy(H, 0, "outward"),
            BucketPolicy(mode="buckets", zone=zone), BucketPolicy(mode="outward", zone=zone))


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    p = st.sampled_from([0.0, 0.02, 0.08])
    zone = draw(st.sampled_from(["Asia/Shanghai", "America/New_York"]))
    steps = draw(st.integers(20, 80))
    apis = st.sampled_from(policies(zone))
    return Scenario(
        steps=steps, zone=zone,
        # Mostly across a provider midnight, sometimes far from one.
        before_midnight=draw(st.integers(0, steps * INTERVAL) | st.integers(0, DAY)),
        settle=draw(st.sampled_from([0, 60, 600, 7200])),
        skew=draw(st.sampled_from([0, 3600, -3600]) | st.integers(-3600, 3600)),
        p_step=draw(p), p_outage=draw(p), p_listing=draw(st.sampled_from([0.0, 0.1, 0.3])),
        p_reload=draw(p), p_restart=draw(p), p_reject=draw(st.sampled_from([0.0, 0.0, 0.02])),
        p_price=draw(st.sampled_from([0.0, 0.5])),
        max_backfill=draw(st.sampled_from([300, 86400])),
        seed=draw(st.integers(0, 2**32 - 1)),
        buckets=draw(apis),
        change=draw(st.none() | st.tuples(st.integers(0, steps), apis)),
        history=draw(st.booleans()),
        p_use=draw(st.sampled_from([0.5, 1 / 60])),
        stray_start=draw(st.sampled_from([0, 0, 2 * DAY, 2 * H, -2 * DAY])),
        p_stray=draw(st.sampled_from([0.0, 0.0, 0.05])))


def run(sc: Scenario) -> None:
    with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as d:
        world = World(sc, Path(d))
        try:
            for _ in range(sc.steps):
                world.step()
            world.drain()
        finally:
            if world.service is not None:
                world.service.stop()


@settings(max_examples=35, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_the_service_under_skew_flaps_reloads_restarts_and_rejections(sc: Scenario) -> None:
    run(sc)

"""The three bucket and clock defects of "Count from the first poll", one scenario each, on the
real Service with a fake API and a fake clock (the scripts in shared/repro/buckets/ drove the
measure/believe/hold machinery these replace; their scenarios are kept here):

- R1: the API moves from minute to hourly buckets mid-run, windows counted as whole buckets or
  rounded outward;
- R3: one wrong ``Date`` at a restart (the start's plain GET answered by a stray node);
- R7: daily buckets at the local midnights of a zone with daylight saving, across its 25-hour
  day.

Each checks the promise scrape by scrape: every counter's increase equals the usage that became
visible in between, from the first poll on; no target is ever down.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from exporter.config import ApiConfig, Config, PollConfig, StateConfig, Target
from exporter.core.grid import Grid
from exporter.service import Service
from exporter.simulator.buckets import BucketPolicy, RangeMode
from tests.fakeapi import FakeApi, SkewClock, Use, running

H, DAY = 3600, 86400
TARGET = Target("k1", "m", "org")
IDENT = TARGET.ident
_TOKENS = re.compile(r'^uminfer_tokens_total\{[^}]*key_id="k1"[^}]*\} (\S+)$', re.M)
_UP = re.compile(r'^uminfer_up\{[^}]*key_id="k1"[^}]*\} (\S+)$', re.M)


def config(zone: str = "Asia/Shanghai", state: Path | None = None,
           max_backfill: int = DAY) -> Config:
    return Config(api=ApiConfig(endpoint="http://127.0.0.1:9", timeout=5, rate_limit=0,
                                time_zone=zone),
                  poll=PollConfig(interval=60, settle=120, window_interval=10**9),
                  windows=(), state=StateConfig(str(state) if state else None, max_backfill),
                  targets=(TARGET,))


def scrape(service: Service) -> tuple[float | None, float | None]:
    body = service.cache.body(False).decode()
    tokens, up = _TOKENS.search(body), _UP.search(body)
    return (float(tokens.group(1)) if tokens else None, float(up.group(1)) if up else None)


class Usage:
    """Sparse or dense usage at the API's time, and what became visible when."""

    def __init__(self, api: FakeApi, clock: SkewClock, seed: int) -> None:
        self.api, self.clock, self.rng = api, clock, random.Random(seed)

    def add(self, chance: float) -> None:
        now = int(self.clock.api())
        if self.rng.random() < chance:
            self.api.uses.setdefault(IDENT, []).append(
                Use(now - self.rng.randrange(60), now, self.rng.randint(1, 100)))

    def visible(self, after: float, until: float, since_ts: int) -> int:
        """Tokens timestamped from ``since_ts`` on that became visible in (after, until]."""
        return sum(u.tokens for u in self.api.uses.get(IDENT, ())
                   if u.ts >= since_ts and after < u.visible_at <= until)


def run_and_check(service: Service, clock: SkewClock, usage: Usage, cycles: int, chance: float,
                  before: tuple[float, float], change: tuple[int, BucketPolicy] | None = None
                  ) -> tuple[float, float]:
    """Poll ``cycles`` times, a minute apart, from the counter ``before`` scraped at an API
    time; after each, the counter must have grown by exactly the usage that became visible
    since the previous scrape. The last counter and when it was scraped."""
    previous, seen_at = before
    for i in range(cycles):
        if change is not None and change[0] == i:
            usage.api.buckets = change[1]
        usage.add(chance)
        service.run_cycle()
        now = clock.api()
        tokens, up = scrape(service)
        assert up == 1 and tokens is not None, f"cycle {i}: up {up}, tokens {tokens}"
        # Late usage from the day before counts too, but none of this test's is that late.
        since_ts = Grid(service.config.api.time_zone).start(int(seen_at)) - DAY
        assert tokens - previous == usage.visible(seen_at, now, since_ts), f"cycle {i}"
        previous, seen_at = tokens, now
        clock.advance(60)
    return previous, seen_at


@pytest.mark.parametrize("mode", ["outward", "buckets"])
@pytest.mark.parametrize("chance", [1.0, 1 / 60], ids=["dense", "one-an-hour"])
@pytest.mark.parametrize("start", [600, 3599, 16 * H - 300, 16 * H + 30, 50_000],
                         ids=["10m-past", "1s-before-hour", "5m-before-day", "30s-into-day",
                              "mid-hour"])
def test_r1_buckets_coarsening_mid_run_count_exactly_from_the_first_poll(
        mode: RangeMode, chance: float, start: int) -> None:
    # A day of history in minute buckets, then the API aggregates hourly (a release, a region):
    # on a grid of provider days no boundary ever falls inside a bucket of either width.
    t0 = 1_700_006_400 + start  # seconds after a UTC midnight; provider days start at 16:00
    clock = SkewClock(t0, 0)
    api = FakeApi(clock)
    api.buckets = BucketPolicy(60, 0, mode)
    usage = Usage(api, clock, seed=start)
    for ts in range(t0 - DAY, t0 - 60, 97):
        api.uses.setdefault(IDENT, []).append(Use(ts, ts, 5))
    with running(config(), clock, api) as service:
        service.run_cycle()  # the first poll: counters exported at once
        assert scrape(service) == (0, 1)
        first = clock.api()
        clock.advance(60)
        run_and_check(service, clock, usage, 150, chance, before=(0, first),
                      change=(30, BucketPolicy(H, 0, mode)))
        assert service.metrics.registry.get_sample_value(
            "uminfer_api_additivity_errors_total") == 0


@pytest.mark.parametrize(("stray", "max_backfill"), [(2 * DAY, DAY), (2 * H, H), (-2 * DAY, DAY)])
def test_r3_one_stray_date_at_a_restart_loses_nothing(tmp_path: Path, stray: int,
                                                      max_backfill: int) -> None:
    t0 = 1_700_006_400 + 16 * H - 1200  # 20 minutes before a provider midnight
    clock = SkewClock(t0, 0)
    api = FakeApi(clock)
    api.buckets = BucketPolicy(60)
    usage = Usage(api, clock, seed=3)
    cfg = config(state=tmp_path / "state.json", max_backfill=max_backfill)
    with running(cfg, clock, api) as service:
        service.run_cycle()
        first = clock.api()
        clock.advance(60)
        before = run_and_check(service, clock, usage, 10, 1.0, before=(0, first))
    clock.advance(60)  # a one-minute restart
    usage.add(1.0)  # used while the exporter was down: caught up, once
    api.stray_answers, api.stray_offset = 1, stray  # the start's plain GET: a stray node
    with running(cfg, clock, api) as service:
        # The first cycle reads by a clock it does not trust yet (nothing closes, nothing is
        # skipped, no counter moves past the truth); the next catches up, and from then on
        # every scrape is exact.
        tokens: float = before[0]
        for _ in range(2):
            usage.add(1.0)
            service.run_cycle()
            scraped, up = scrape(service)
            assert up == 1 and scraped is not None
            assert tokens <= scraped <= before[0] + usage.visible(before[1], clock.api(), 0)
            tokens = scraped
            clock.advance(60)
        assert tokens == before[0] + usage.visible(before[1], clock.api() - 60, 0)
        after = run_and_check(service, clock, usage, 70, 1.0, before=(tokens, clock.api() - 60))
        assert service.metrics.registry.get_sample_value(
            "uminfer_backfill_skipped_seconds_total") == 0
    # Everything that became visible since the last scrape before the restart, counted once.
    assert after[0] - before[0] == usage.visible(before[1], after[1], 0)


@pytest.mark.parametrize("mode", ["outward", "buckets"])
def test_r7_daily_buckets_in_a_zone_with_daylight_saving_count_exactly(mode: RangeMode
                                                                       ) -> None:
    # America/New_York, 2023-11-05: a 25-hour day, labelled at its local midnight; a gcd of
    # 23, 24 and 25 hours would be one hour. Start an hour before that day ends.
    zone = Grid("America/New_York")
    day_end = zone.end(1_699_200_000)  # in the 25-hour day (2023-11-05 16:00 UTC)
    clock = SkewClock(day_end - H, 0)
    api = FakeApi(clock)
    usage = Usage(api, clock, seed=7)
    api.buckets = BucketPolicy(mode=mode, zone="America/New_York")
    for day in range(9):  # nine days of history, one use a day
        ts = day_end - day * DAY - 7 * H
        api.uses.setdefault(IDENT, []).append(Use(ts, ts, 11))
    with running(config("America/New_York"), clock, api) as service:
        service.run_cycle()
        first = clock.api()
        clock.advance(60)
        run_and_check(service, clock, usage, 120, 1.0, before=(0, first))  # past midnight
        assert service.metrics.registry.get_sample_value("uminfer_api_bucket_seconds") == DAY
        ledger = service._poller.ledgers()[IDENT]
        assert ledger.origin == zone.start(day_end)  # the 25-hour day
        assert ledger.settled_until() == day_end  # closed whole: 90,000 seconds
        assert day_end - ledger.origin + 1 == 25 * H

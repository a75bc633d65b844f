"""The eight accounting defects found by trying to break the exporter (issue #11), one test each.

Each was first shown by a script in ``shared/repro/accounting/``; these are those scripts as
tests, on the real ledger, poller and service with a fake API and a fake clock. The model
proofs (``test_accounting_model``, ``test_service_model``) draw the same conditions at random;
these pin the reported cases.
"""

from __future__ import annotations

import re
from dataclasses import replace
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any

from exporter.accounting.ledger import Ledger
from exporter.config import ApiConfig, Config, PollConfig, StateConfig, Target, Window
from exporter.config.types import DiscoveryConfig, ModelPrice, PricingConfig
from exporter.core.usage import Totals
from exporter.service import Service
from tests.fakeapi import FakeApi, SkewClock, Use, running

T0 = 1_700_006_400  # on the hour
H = 3600
TARGET = Target("k1", "m", "org")


def config(tmp: Path | None = None, **changes: Any) -> Config:
    base = Config(api=ApiConfig(endpoint="http://127.0.0.1:9", timeout=5, rate_limit=0),
                  poll=PollConfig(interval=60, settle=600, test_period=H), windows=(),
                  state=StateConfig(str(tmp / "state.json") if tmp else None),
                  targets=(TARGET,))
    return replace(base, **changes)


def published(service: Service, key: str, name: str = "uminfer_tokens_total") -> float | None:
    for line in service.cache.body(False).decode().splitlines():
        if line.startswith(name + "{") and f'key_id="{key}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def use(api: FakeApi, ident: str, ts: float, tokens: int, late: int = 0) -> None:
    api.uses.setdefault(ident, []).append(Use(int(ts), int(ts) + late, tokens))


def cycles(service: Service, clock: SkewClock, n: int, step: float = 60) -> None:
    for _ in range(n):
        clock.advance(step)
        service.run_cycle()


def test_1_audits_run_whatever_settle_is_against_period() -> None:
    for period, settle in ((60, 600), (300, 3600), (3600, 600)):
        led = Ledger(T0, period, settle, audit=True)
        events = [(T0 + 10, T0 + 10, 7), (T0 + 20, T0 + period + settle + 30, 100)]
        audits = 0
        for now in range(T0, T0 + 6 * H, 60):
            for read in led.plan(now, 8):
                audits += read.kind == "audit"
                seen = sum(v for ts, vis, v in events
                           if read.start <= ts <= read.end and vis <= now)
                led.record(read, Totals(tokens=seen), now)
        assert (led.counters().tokens, led.late_after_settle.tokens) == (7, 100), (period, settle)
        assert 0 < audits <= 6 * H // max(settle, period) + 2  # gathered, not one per stretch


def test_2_a_restart_while_listing_fails_keeps_the_discovered_ledgers(tmp_path: Path) -> None:
    clock, ident = SkewClock(T0, 0), "org/d1/m"
    api = FakeApi(clock)
    cfg = config(tmp_path, targets=(), discovery=DiscoveryConfig(projects=("org",), refresh=60))
    with running(cfg, clock, api) as first:
        first.run_cycle()
        use(api, ident, clock.api() + 5, 10)
        cycles(first, clock, 2)
        assert published(first, "d1") == 10
    api.listing = "fail"
    with running(cfg, clock, api) as second:
        cycles(second, clock, 2)
        assert "org/d1/m" in Path(tmp_path / "state.json").read_text()
    api.listing = "ok"
    use(api, ident, clock.api(), 5)
    with running(cfg, clock, api) as third:
        cycles(third, clock, 2)
        assert published(third, "d1") == 15


def test_3_a_reload_during_an_outage_catches_up_all_of_it() -> None:
    clock = SkewClock(T0, 0)
    api = FakeApi(clock)
    with running(config(), clock, api) as service:
        service.run_cycle()
        for hour in range(30):
            use(api, TARGET.ident, clock.api() + 1800 + hour * H, 1)
        api.down = True
        cycles(service, clock, 30, step=H)
        assert service.reload() is None
        api.down = False
        cycles(service, clock, 40)
        assert published(service, "k1") == 30
        assert service.metrics.backfill_skipped._value.get() == 0


def test_4_new_usage_after_a_state_reset_is_priced(tmp_path: Path) -> None:
    clock = SkewClock(T0, 0)
    api = FakeApi(clock)
    price = PricingConfig(models=(ModelPrice("m", input=Decimal(1_000_000)),))  # 1 per token
    cfg = config(tmp_path, pricing=price)
    with running(cfg, clock, api) as first:
        first.run_cycle()
        use(api, TARGET.ident, clock.api() + 1, 1000)
        cycles(first, clock, 1)
        assert published(first, "k1", "uminfer_cost_total") == 1000
    (tmp_path / "state.json").write_text("{garbage")
    assert not (tmp_path / "state.json.cost.json").exists()  # one document, lost as one
    with running(cfg, clock, api) as second:
        cycles(second, clock, 1)
        use(api, TARGET.ident, clock.api() + 1, 600)
        cycles(second, clock, 1)
        assert published(second, "k1") == 600
        assert published(second, "k1", "uminfer_cost_total") == 600  # price x every increment


def test_5_a_clock_ahead_or_stepped_counts_every_on_time_token() -> None:
    for skew, step in ((900, 0), (-3600, 0), (0, 7200), (0, -7200)):
        clock = SkewClock(T0, skew)
        api = FakeApi(clock)
        with running(config(), clock, api) as service:
            service.run_cycle()
            for minute in range(4 * 60):
                use(api, TARGET.ident, clock.api() + 1, 1)  # after the start second
                if minute == 30:
                    clock.skew += step  # NTP steps the host's clock ...
                if minute == 31:
                    clock.skew -= step  # ... and back
                cycles(service, clock, 1)
            cycles(service, clock, 90)
            assert published(service, "k1") == 240, (skew, step)
            assert published(service, "k1", "uminfer_late_tokens_after_settle_total") == 0
            offset = service.api_clock.offset()
            assert offset is not None
            assert abs(offset + skew) < 2


def test_6_a_lowered_reading_is_not_hidden_by_a_catch_up_read() -> None:
    led = Ledger(T0, H, 600)
    (read,) = led.plan(T0 + 1000)
    led.record(read, Totals(tokens=100), T0 + 1000)  # A reads 100
    reads = led.plan(T0 + 2 * H + 700)  # an outage; A and B both settle now
    assert [r.start for r in reads][:2] == [T0, T0 + H]  # A is read alone
    led.record(reads[0], Totals(tokens=80), T0 + 2 * H + 700)  # the API lowered A to 80
    led.record(reads[1], Totals(tokens=50), T0 + 2 * H + 700)  # B has 50
    assert (led.counters().tokens, led.revisions) == (150, 1)


def test_7_a_backward_step_invents_no_revision_and_windows_keep_their_cadence() -> None:
    clock = SkewClock(T0 + 1200, 0)
    api = FakeApi(clock)
    cfg = config(windows=(Window("1h", H),),
                 poll=PollConfig(interval=60, settle=600, test_period=H, window_interval=300))
    with running(cfg, clock, api) as service:
        stamps = []
        for minute in range(65):
            use(api, TARGET.ident, clock.api() - 1, 1)
            if minute == 40:
                clock.skew -= 1800  # the host's clock steps back half an hour
            cycles(service, clock, 1)
            stamps.append(published(service, "k1", "uminfer_window_timestamp_seconds"))
        assert published(service, "k1", "uminfer_revisions_total") == 0
        moves = [(a, b) for a, b in pairwise(stamps) if b != a]
        assert len(moves) >= 12  # every window_interval, straight through the step
        assert all(a is None or (b is not None and b > a) for a, b in moves)


def test_8_one_listing_without_a_key_keeps_its_counter() -> None:
    clock, ident = SkewClock(T0, 0), "org/d2/m"
    api = FakeApi(clock)
    cfg = config(targets=(), discovery=DiscoveryConfig(projects=("org",), refresh=60))
    with running(cfg, clock, api) as service:
        service.run_cycle()
        use(api, ident, clock.api() + 1, 10)
        cycles(service, clock, 1)
        assert published(service, "d2") == 10
        api.listing, api.hidden = "partial", {"d2"}  # paging skipped it, or a hiccup
        cycles(service, clock, 1)
        assert published(service, "d2") == 10  # still polled, still there
        use(api, ident, clock.api() + 1, 5)
        api.listing = "ok"
        cycles(service, clock, 2)
        assert published(service, "d2") == 15


def test_the_repro_names_match() -> None:
    """Each defect of the issue has its test here (a guard against one being dropped)."""
    names = re.findall(r"^def test_(\d)_", Path(__file__).read_text(), re.M)
    assert names == [str(i) for i in range(1, 9)]

"""The poll cycle with a fake clock and an in-memory API: budgets, failures, windows."""

from __future__ import annotations

import email.utils
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest

from exporter.accounting.ledger import Ledger
from exporter.accounting.snapshot import TargetSnapshot
from exporter.api.buckets import BucketMeter
from exporter.api.clock import ApiClock
from exporter.api.errors import ApiError
from exporter.config import (
    AccountConfig,
    AccountingConfig,
    ApiConfig,
    BudgetConfig,
    Config,
    PollConfig,
    Target,
    Window,
)
from exporter.core.clock import FakeClock
from exporter.core.usage import Reading, Totals
from exporter.cost.budgets import BudgetTracker
from exporter.polling.poller import MAX_STRIKES, Poller
from exporter.polling.seeding import Seeding
from exporter.polling.workers import WorkerPool
from tests.doubles import UsageDouble
from tests.pollers import make_poller

START = 1_700_006_400  # a period boundary for 1h periods
A = Target("uminferapikey-a", "m")
B = Target("uminferapikey-b", "m")


class FakeApi(UsageDouble):
    """Usage of 1 token per second for every target, up to now; calls can be slow or fail."""

    def __init__(self, clock: FakeClock, seconds_per_call: float = 0.0) -> None:
        self.clock = clock
        self.now = clock.time  # the API's time, by default the fake clock's
        self.seconds_per_call = seconds_per_call
        self.calls: list[tuple[str, int, int, float]] = []
        self.sent: list[float] = []  # the monotonic time each call was made at
        self.failing: dict[str, ApiError] = {}

    def get_usage(self, target: Target, start: int, end: int, deadline: float) -> Reading:
        self.calls.append((target.key, start, end, deadline))
        self.sent.append(self.clock.monotonic())
        self.clock.advance(self.seconds_per_call)
        if target.key in self.failing:
            raise self.failing[target.key]
        seconds = max(0, min(end, int(self.now())) - start + 1)  # none in the future
        return Reading(Totals(seconds, 0, seconds, 0, 0))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START + 100.0)


@pytest.fixture
def pool() -> Iterator[WorkerPool]:
    workers = WorkerPool(1)  # one worker: the fake clock is advanced by one call at a time
    yield workers
    workers.close()


def config(*targets: Target, windows: tuple[Window, ...] = (), timeout: float = 10.0,
           window_interval: float = 60.0) -> Config:
    return Config(api=ApiConfig(timeout=timeout, rate_limit=0),
                  poll=PollConfig(interval=60, settle=600, test_period=3600,
                                  window_interval=window_interval),
                  windows=windows, targets=targets)


def ledgers(*targets: Target, origin: int = START) -> dict[str, Ledger]:
    return {t.ident: Ledger(origin, 3600, 600, audit=True) for t in targets}


def test_counts_exactly_from_origin(clock: FakeClock, pool: WorkerPool) -> None:
    api = FakeApi(clock)
    poller = make_poller(config(A), api, clock, pool, ledgers(A))
    snapshot = poller.cycle()
    assert snapshot.targets[0].counters.tokens == 101  # [START, START + 100]
    assert snapshot.targets[0].up


def test_slow_answers_do_not_starve_the_newest_period(clock: FakeClock, pool: WorkerPool) -> None:
    # Two open periods (just after a boundary) and answers that take 60% of the timeout: the
    # second call starts when the cycle's budget has 24 s left, yet gets a full 60 s.
    clock.advance(3600.0)
    began = clock.monotonic()
    api = FakeApi(clock, seconds_per_call=0.6 * 60)
    poller = make_poller(config(A, timeout=60.0), api, clock, pool, ledgers(A))
    snapshot = poller.cycle()
    assert [(s, e) for _, s, e, _ in api.calls] == [(START, START + 3599),
                                                   (START + 3600, START + 3700)]
    assert api.sent == [began, began + 36.0]
    # The first call may retry until the cycle's budget (60 s) ends; the second, started late,
    # until its own full timeout from when it was sent: 36 + 60, not the cycle's 60.
    assert [deadline for *_, deadline in api.calls] == [began + 60.0, began + 96.0]
    assert snapshot.targets[0].up


def test_a_read_sent_before_settling_and_answered_after_is_not_final(
        clock: FakeClock, pool: WorkerPool) -> None:
    # The first hour [START, START + 3599] settles at START + 4199 (end + settle 600). A read
    # sent one second before that may have missed usage that arrives in that second, so its
    # answer, however late it comes, must not close the hour.
    clock.advance(4098.0)  # wall time START + 4198
    api = FakeApi(clock, seconds_per_call=5.0)
    poller = make_poller(config(A, timeout=60.0), api, clock, pool, ledgers(A))
    [target] = poller.cycle().targets
    assert (api.calls[0][1], api.calls[0][2]) == (START, START + 3599)
    assert target.settled_until == START - 1  # nothing closed: the hour is read again
    clock.advance(60.0)
    [target] = poller.cycle().targets
    assert target.settled_until == START + 3599  # a read sent after START + 4199 closes it


def test_out_of_budget_reads_wait_for_the_next_cycle(clock: FakeClock, pool: WorkerPool) -> None:
    clock.advance(3600.0)
    api = FakeApi(clock, seconds_per_call=61.0)  # past the whole budget (max(interval, timeout))
    poller = make_poller(config(A, timeout=60.0), api, clock, pool, ledgers(A))
    snapshot = poller.cycle()
    assert len(api.calls) == 1  # the second open period is left for the next cycle
    assert snapshot.targets[0].up  # not a failure: nothing failed


def test_one_target_failing_leaves_the_other_alone(clock: FakeClock, pool: WorkerPool) -> None:
    api = FakeApi(clock)
    api.failing[B.key] = ApiError("retcode", "RetCode 150", retcode=150, transient=True)
    poller = make_poller(config(A, B), api, clock, pool, ledgers(A, B))
    a, b = poller.cycle().targets
    assert a.up and a.counters.tokens == 101
    assert not b.up and b.counters.tokens == 0
    assert dict(b.failures) == {"retcode": 1}
    del api.failing[B.key]
    clock.advance(60.0)
    a, b = poller.cycle().targets
    assert b.up and b.counters == a.counters  # caught up: the same usage as A


def test_permanent_error_is_retried_on_the_slow_cadence(clock: FakeClock, pool: WorkerPool) -> None:
    api = FakeApi(clock)
    api.failing[A.key] = ApiError("retcode", "RetCode 171", retcode=171, transient=False)
    poller = make_poller(config(A), api, clock, pool, ledgers(A))
    for _ in range(4):  # 4 minutes < permanent_error_retry (5m)
        poller.cycle()
        clock.advance(60.0)
    assert len(api.calls) == 1
    clock.advance(60.0)
    poller.cycle()
    assert len(api.calls) == 2


def test_windows_are_read_every_window_interval(clock: FakeClock, pool: WorkerPool) -> None:
    api = FakeApi(clock)
    w = Window("1h", 3600)
    cfg = config(A, windows=(w,), window_interval=120.0)
    poller = make_poller(cfg, api, clock, pool, ledgers(A))
    first = poller.cycle().targets[0]
    assert first.windows == ((w, Totals(3600, 0, 3600, 0, 0)),)
    assert first.windows_at == START + 100
    window_calls = [c for c in api.calls if c[2] - c[1] == 3599]
    clock.advance(60.0)
    poller.cycle()
    assert [c for c in api.calls if c[2] - c[1] == 3599] == window_calls  # not due yet
    clock.advance(60.0)
    assert poller.cycle().targets[0].windows_at == START + 220


@pytest.mark.parametrize(("lift", "calls_after"), [(True, 2), (False, 1)])
def test_carried_health_keeps_failures_and_lifts_pauses_only_on_reload(
        clock: FakeClock, pool: WorkerPool, lift: bool, calls_after: int) -> None:
    api = FakeApi(clock)
    api.failing[A.key] = ApiError("retcode", "RetCode 171", retcode=171, transient=False)
    first = make_poller(config(A), api, clock, pool, ledgers(A))
    first.cycle()
    successor = make_poller(config(A), api, clock, pool, first.ledgers())
    successor.carry_health(first, lift_pauses=lift)  # a reload lifts; a discovery change not
    clock.advance(60.0)
    [target] = successor.cycle().targets
    assert len(api.calls) == calls_after
    assert dict(target.failures)["retcode"] == calls_after  # never reset within a process


class Scripted(FakeApi):
    """A FakeApi whose answers a test scripts per read: an error to raise, or None to answer."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.script: list[Callable[[int, int], BaseException | None]] = []

    def get_usage(self, target: Target, start: int, end: int, deadline: float) -> Reading:
        for rule in self.script:
            error = rule(start, end)
            if error is not None:
                self.calls.append((target.key, start, end, deadline))
                raise error
        return super().get_usage(target, start, end, deadline)


def busy(_start: int, _end: int) -> ApiError:
    return ApiError("retcode", "RetCode 150 (service unavailable)", retcode=150, transient=True)


def records(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records
            if r.name in ("exporter.polling.poller", "exporter.polling.windowreads")]


def test_a_failure_is_logged_once_and_the_recovery_once(
        clock: FakeClock, pool: WorkerPool, caplog: pytest.LogCaptureFixture) -> None:
    api = Scripted(clock)
    api.script.append(busy)
    poller = make_poller(config(A), api, clock, pool, ledgers(A))
    caplog.set_level(logging.INFO, "exporter.polling.poller")
    for _ in range(3):
        [target] = poller.cycle().targets
        clock.advance(60.0)
    assert (target.up, target.last_success, dict(target.failures)) == (False, None, {"retcode": 3})
    api.script.clear()
    [target] = poller.cycle().targets
    assert (target.up, target.last_success) == (True, START + 100 + 180)
    assert poller.snapshot().generated_at == START + 100 + 180
    assert records(caplog) == [
        ("WARNING", "target /uminferapikey-a/m failing: RetCode 150 (service unavailable)"),
        ("INFO", "target /uminferapikey-a/m recovered")]


def test_a_bug_costs_one_cycle_is_logged_and_retried_at_once(
        clock: FakeClock, pool: WorkerPool, caplog: pytest.LogCaptureFixture) -> None:
    api = Scripted(clock)
    api.script.append(lambda s, e: RuntimeError("boom"))
    poller = make_poller(config(A, B), api, clock, pool, ledgers(A, B))
    [a, b] = poller.cycle().targets
    assert (a.up, dict(a.failures), b.up, dict(b.failures)) == (False, {"internal": 1}, False,
                                                                {"internal": 1})
    assert records(caplog)[:2] == [
        ("ERROR", "internal error polling target /uminferapikey-a/m"),
        ("WARNING", "target /uminferapikey-a/m failing: internal error (see log)")]
    api.script.clear()
    clock.advance(1.0)  # a bug is transient: no pause for permanent errors
    assert poller.cycle().targets[0].up


def test_a_range_the_api_keeps_rejecting_is_given_up_after_max_strikes(
        clock: FakeClock, pool: WorkerPool, caplog: pytest.LogCaptureFixture) -> None:
    # A settled hour was never read (the exporter was down); the API rejects reading it
    # (transiently, every time) while the newer hours read fine.
    clock.advance(7200.0)  # wall time START + 7300
    api = Scripted(clock)
    api.script.append(lambda s, e: busy(s, e) if s == START else None)
    poller = make_poller(config(A), api, clock, pool, ledgers(A))
    for _ in range(MAX_STRIKES - 1):
        [target] = poller.cycle().targets
        clock.advance(60.0)
    assert (target.given_up, target.settled_until, target.up) == ((), START - 1, False)
    [target] = poller.cycle().targets
    assert target.given_up == (("retcode", 3600),)
    assert target.settled_until == START + 3599  # the rest is counted from there on
    assert [c[1:3] for c in api.calls].count((START, START + 3599)) == MAX_STRIKES
    assert ("ERROR", f"target /uminferapikey-a/m: gave up [{START}, {START + 3599}] after 5 "
            "failed reads (RetCode 150 (service unavailable)); 3600 seconds of usage are not "
            "counted") in records(caplog)
    clock.advance(60.0)
    api.calls.clear()
    assert poller.cycle().targets[0].up
    assert all(start > START + 3599 for _, start, _, _ in api.calls)  # never read again


def test_an_audit_the_api_keeps_rejecting_is_dropped_after_max_strikes(
        clock: FakeClock, pool: WorkerPool, caplog: pytest.LogCaptureFixture) -> None:
    # The first hour is counted and closed; then the API rejects every read starting there,
    # which from now on only its audit makes. Audits count nothing: after MAX_STRIKES the
    # audit is dropped, not retried every cycle for ever.
    api = Scripted(clock)
    poller = make_poller(config(A), api, clock, pool, ledgers(A))
    clock.advance(3600.0 + 700.0)
    assert poller.cycle().targets[0].settled_until == START + 3599
    api.script.append(lambda s, e: busy(s, e) if s == START else None)
    rejected = []
    for _ in range(3 * 60):  # due two settles after it closed, ready an hour after that
        clock.advance(60.0)
        api.calls.clear()
        poller.cycle()
        rejected += [c[1:3] for c in api.calls if c[1] == START]
    assert len(rejected) == MAX_STRIKES and len(set(rejected)) == 1
    [(_, end)] = set(rejected)
    assert ("ERROR", f"target /uminferapikey-a/m: dropped the audit of [{START}, {end}] after 5 "
            "failed reads (RetCode 150 (service unavailable)); usage that arrived there after "
            "it settled is not reported") in records(caplog)
    [target] = poller.cycle().targets
    assert target.up and target.given_up == ()  # nothing counted was lost


def test_failed_window_reads_leave_the_target_up_and_are_logged_once(
        clock: FakeClock, pool: WorkerPool, caplog: pytest.LogCaptureFixture) -> None:
    w = Window("1h", 3600)
    api = Scripted(clock)
    timeout = ApiError("timeout", "no answer within 10.0s", transient=True)
    api.script.append(lambda s, e: timeout if e - s == 3599 else None)
    poller = make_poller(config(A, windows=(w,), window_interval=60.0), api, clock, pool,
                         ledgers(A))
    for _ in range(2):
        [target] = poller.cycle().targets
        clock.advance(60.0)
    assert (target.up, dict(target.failures), target.windows) == (True, {"timeout": 2}, ())
    api.script[0] = lambda s, e: RuntimeError("bug") if e - s == 3599 else None
    [target] = poller.cycle().targets
    assert dict(target.failures) == {"timeout": 2, "internal": 1}
    api.script.clear()
    clock.advance(60.0)
    [target] = poller.cycle().targets
    assert target.windows == ((w, Totals(3600, 0, 3600, 0, 0)),)
    api.script.append(lambda s, e: timeout if e - s == 3599 else None)
    clock.advance(60.0)
    poller.cycle()  # after a success, the same failure is news again
    assert records(caplog) == [
        ("WARNING", "target /uminferapikey-a/m: window gauges not read: no answer within 10.0s"),
        ("ERROR", "internal error reading windows of target /uminferapikey-a/m"),
        ("WARNING", "target /uminferapikey-a/m: window gauges not read: no answer within 10.0s")]


def test_a_new_target_counts_from_its_first_read(clock: FakeClock, pool: WorkerPool) -> None:
    # One token a second: the first read [START, START + 100] is the baseline, counted never.
    poller = Poller(config(A), FakeApi(clock), clock, pool, {}, ApiClock.trusting(clock))
    [target] = poller.cycle().targets
    ledger = poller.ledgers()[A.ident]
    assert (ledger.origin, ledger.audit, ledger.baseline.tokens) == (START, True, 101)
    assert target.up and target.counters == Totals()  # exported at once, at zero
    clock.advance(60.0)
    [target] = poller.cycle().targets
    assert target.counters.tokens == 60  # (START, START + 160]: what appeared since


@pytest.mark.parametrize("same", [True, False])
def test_window_gauges_are_carried_only_when_the_windows_did_not_change(
        clock: FakeClock, pool: WorkerPool, same: bool) -> None:
    w = Window("1h", 3600)
    api = FakeApi(clock)
    first = make_poller(config(A, windows=(w,)), api, clock, pool, ledgers(A))
    first.cycle()
    windows = (w,) if same else (Window("2h", 7200),)
    successor = make_poller(config(A, windows=windows), api, clock, pool, first.ledgers())
    successor.carry_health(first, lift_pauses=True)
    [target] = successor.snapshot().targets
    if same:
        assert (target.windows, target.windows_at) == (((w, Totals(3600, 0, 3600, 0, 0)),),
                                                       START + 100)
    else:
        assert (target.windows, target.windows_at) == ((), None)
        calls = len(api.calls)
        successor.cycle()  # and the new windows are read at once, not a window_interval later
        assert any(e - s == 7199 for _, s, e, _ in api.calls[calls:])


def test_before_the_api_has_told_its_time_a_target_waits_and_says_why(
        clock: FakeClock, pool: WorkerPool, caplog: pytest.LogCaptureFixture) -> None:
    api = FakeApi(clock)
    api_clock = ApiClock(clock)  # no answer has carried a Date yet
    poller = Poller(config(A), api, clock, pool, {}, api_clock)
    [target] = poller.cycle().targets
    assert target == TargetSnapshot(target=A, failures=(("network", 1),))
    assert api.calls == [] and poller.ledgers() == {}
    assert not poller.awaiting_baseline()  # nothing answered: nothing to wait for
    assert records(caplog) == [
        ("WARNING", "target /uminferapikey-a/m failing: the API has not answered yet: counting "
         "begins at the first poll it answers")]
    clock.advance(1.0)  # transient: tried again next cycle, no pause
    api_clock.observe("Tue, 14 Nov 2023 22:13:20 GMT", clock.monotonic())  # 1_700_000_000
    told = clock.monotonic()
    api.now = lambda: 1_700_000_000 + clock.monotonic() - told  # the API's own clock
    [target] = poller.cycle().targets
    # Up and exported at once; one Date settles nothing, so its first answer waits to become
    # the baseline until answers agree on the API's time.
    ledger = poller.ledgers()[A.ident]
    assert target.up and target.counters == Totals()
    assert (ledger.fresh, ledger.origin) == (True, 1_699_999_200)  # the hour holding that Date
    assert poller.awaiting_baseline()
    clock.advance(30.0)
    for _ in range(2):  # two more answers agree: the first answer becomes the baseline
        api_clock.observe("Tue, 14 Nov 2023 22:13:51 GMT", clock.monotonic())
    [target] = poller.cycle().targets
    # By the agreed clock the first answer was sent at 1_700_000_001 (the later Dates say the
    # API's clock runs a second ahead of the first): inside the read, which ended a second
    # before, within the Date header's rounding.
    assert not ledger.fresh and ledger.began == 1_700_000_001
    assert not poller.awaiting_baseline()
    # The first read reached past the estimate (REACH) and held all the API had then; the
    # API's own clock has run 30 s since: 30 new seconds of usage.
    assert target.counters.tokens == 30


class NoFutureApi(FakeApi):
    """An API that refuses, for good, a window ending after its own time."""

    retcode = 230

    def get_usage(self, target: Target, start: int, end: int, deadline: float) -> Reading:
        if end > self.now():
            self.calls.append((target.key, start, end, deadline))
            raise ApiError("retcode", f"RetCode {self.retcode}: EndTime in the future",
                           retcode=self.retcode, http_status=200)
        return super().get_usage(target, start, end, deadline)


@pytest.mark.parametrize("retcode", [220, 230])  # a parameter missing, or invalid
def test_an_api_refusing_a_first_read_into_its_future_is_asked_without_it(
        clock: FakeClock, pool: WorkerPool, caplog: pytest.LogCaptureFixture,
        retcode: int) -> None:
    # One Date: the time is not agreed, so the first read reaches past it; this API refuses
    # that for good. The target is not paused as for a permanent error: the next poll asks
    # without reaching, and counting begins.
    api = NoFutureApi(clock)
    api.retcode = retcode
    api_clock = ApiClock(clock)
    api_clock.observe("Tue, 14 Nov 2023 22:13:20 GMT", clock.monotonic())  # 1_700_000_000
    told = clock.monotonic()
    api.now = lambda: 1_700_000_000 + clock.monotonic() - told
    poller = Poller(config(A), api, clock, pool, {}, api_clock)
    [target] = poller.cycle().targets
    assert not target.up and api.calls[-1][2] == 1_700_000_000 + 60  # REACH past its time
    assert dict(target.failures) == {"retcode": 1}
    assert records(caplog) == [
        ("WARNING", f"target /uminferapikey-a/m failing: RetCode {retcode}: EndTime in the "
         "future (a read reaching 60 s past the API's time as estimated; asked again without)")]
    clock.advance(1.0)
    for _ in range(3):  # answers come to agree on the API's time
        api_clock.observe(email.utils.formatdate(api.now(), usegmt=True), clock.monotonic())
    [target] = poller.cycle().targets
    assert target.up and not poller.ledgers()[A.ident].fresh
    clock.advance(10.0)
    [target] = poller.cycle().targets
    assert target.counters.tokens == 10


class Shortfall(FakeApi):
    """Reads made long after their range ended (audits) answer 3 tokens fewer."""

    def get_usage(self, target: Target, start: int, end: int, deadline: float) -> Reading:
        reading = super().get_usage(target, start, end, deadline)
        if end + 1200 <= self.now():
            return Reading(reading.totals - Totals(3, 0, 3, 0, 0))
        return reading


def test_an_audit_below_its_parts_is_counted_once_by_the_meters_observer(
        clock: FakeClock, pool: WorkerPool, caplog: pytest.LogCaptureFixture) -> None:
    """The ledger says by how much an audit came out short; the bucket meter's observer (the
    self-metrics) counts it: one owner, no diffing of ledger fields."""
    class Observer:
        def __init__(self) -> None:
            self.errors: list[int] = []

        def additivity_error(self, excess_tokens: int) -> None:
            self.errors.append(excess_tokens)

        def off_grid(self) -> None:
            pass

    observer = Observer()
    meter = BucketMeter(observer)
    poller = Poller(config(A), Shortfall(clock), clock, pool, ledgers(A),
                    ApiClock.trusting(clock), buckets=meter)
    for _ in range(4 * 60):  # four hours of polls: the first hours are audited
        poller.cycle()
        clock.advance(60)
    led = poller.ledgers()[A.ident]
    assert observer.errors and all(excess == 3 for excess in observer.errors)
    assert [r.getMessage() for r in caplog.records if r.name == "exporter.api.buckets"] == [
        "target /uminferapikey-a/m: one read over settled periods returned 3 tokens fewer than "
        "the sum of their final readings; likely cause: windows rounded outward to buckets that "
        "straddle a midnight of api.time_zone, or usage lowered after it settled (counters may "
        "be too high by that much)"]  # said once, naming the target
    assert led.additivity_errors == len(observer.errors)


class Buggy(FakeApi):
    """A FakeApi whose reads of a given target raise a bug (not an ApiError) where a rule on
    the read's range says so."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.bugs: dict[str, Callable[[int, int], bool]] = {}

    def get_usage(self, target: Target, start: int, end: int, deadline: float) -> Reading:
        bug = self.bugs.get(target.key)
        if bug is not None and bug(start, end):
            self.calls.append((target.key, start, end, deadline))
            raise RuntimeError("bug")
        return super().get_usage(target, start, end, deadline)


def test_a_bug_in_one_targets_count_reads_costs_that_target_only(clock: FakeClock,
                                                                 pool: WorkerPool) -> None:
    api = Buggy(clock)
    api.bugs[B.key] = lambda _s, _e: True
    poller = make_poller(config(A, B), api, clock, pool, ledgers(A, B))
    a, b = poller.cycle().targets  # the cycle ends and snapshots every target
    assert (a.up, a.counters.tokens, dict(a.failures)) == (True, 101, {})
    assert (b.up, b.counters.tokens, dict(b.failures)) == (False, 0, {"internal": 1})
    del api.bugs[B.key]
    clock.advance(60.0)
    a, b = poller.cycle().targets
    assert b.up and b.counters == a.counters and dict(b.failures) == {"internal": 1}


def test_a_bug_in_one_targets_window_reads_is_internal_and_leaves_it_counting(
        clock: FakeClock, pool: WorkerPool) -> None:
    w = Window("1h", 3600)
    api = Buggy(clock)
    api.bugs[B.key] = lambda s, e: e - s == 3599
    poller = make_poller(config(A, B, windows=(w,)), api, clock, pool, ledgers(A, B))
    a, b = poller.cycle().targets
    assert (a.up, a.windows, dict(a.failures)) == (True, ((w, Totals(3600, 0, 3600, 0, 0)),), {})
    assert (b.up, b.counters.tokens, b.windows, dict(b.failures)) == (True, 101, (),
                                                                      {"internal": 1})


def test_after_a_bug_in_the_window_reads_the_budget_seed_is_still_read(
        clock: FakeClock, pool: WorkerPool) -> None:
    seeding = Seeding(horizon=BudgetTracker((BudgetConfig("m", "monthly", tokens=1),)).horizon)
    seeding.begin(A.ident)  # a new target: its month so far, up to START, is read once
    api = Buggy(clock)
    api.bugs[A.key] = lambda s, e: e - s == 3599
    poller = Poller(config(A, windows=(Window("1h", 3600),)), api, clock, pool, ledgers(A),
                    ApiClock.trusting(clock), seeding=seeding)
    [target] = poller.cycle().targets
    assert dict(target.failures) == {"internal": 1}
    assert any(e - s == 86_399 for _, s, e, _ in api.calls)  # whole UTC days: the seed's


class BrokenSeeding(Seeding):
    def plan(self, target: Target, origin: int, settled_before: int) -> list[tuple[int, int]]:
        raise RuntimeError("bug")


def test_a_bug_in_the_budget_seed_read_is_logged_and_costs_nothing_else(
        clock: FakeClock, pool: WorkerPool, caplog: pytest.LogCaptureFixture) -> None:
    seeding = BrokenSeeding(horizon=BudgetTracker((BudgetConfig("m", "monthly",
                                                                tokens=1),)).horizon)
    poller = Poller(config(A, B), FakeApi(clock), clock, pool, ledgers(A, B),
                    ApiClock.trusting(clock), seeding=seeding)
    a, b = poller.cycle().targets
    assert (a.up, dict(a.failures), b.up, dict(b.failures)) == (True, {}, True, {})
    assert sorted(records(caplog)) == [
        ("ERROR", "internal error reading the budget seed of target /uminferapikey-a/m"),
        ("ERROR", "internal error reading the budget seed of target /uminferapikey-b/m")]


# --- the edges of a cycle's count reads ---


def spans(api: FakeApi) -> list[tuple[int, int]]:
    return [(start, end) for _, start, end, _ in api.calls]


def test_a_cycle_whose_budget_is_spent_exactly_makes_no_further_read(
        clock: FakeClock, pool: WorkerPool) -> None:
    clock.advance(3600.0)  # two open periods
    api = FakeApi(clock, seconds_per_call=60.0)  # the first call spends the budget, to the tick
    poller = make_poller(config(A, timeout=60.0), api, clock, pool, ledgers(A))
    poller.cycle()
    assert spans(api) == [(START, START + 3599)]


def test_a_failed_read_before_the_budget_runs_out_still_fails_the_cycle(
        clock: FakeClock, pool: WorkerPool) -> None:
    clock.advance(3600.0)
    api = Scripted(clock)

    def slow_failure(start: int, end: int) -> ApiError | None:
        if start != START:
            return None
        clock.advance(61.0)
        return busy(start, end)

    api.script.append(slow_failure)
    poller = make_poller(config(A, timeout=60.0), api, clock, pool, ledgers(A))
    [target] = poller.cycle().targets
    assert spans(api) == [(START, START + 3599)]  # the newest is left for the next cycle
    assert (target.up, dict(target.failures)) == (False, {"retcode": 1})


def test_after_a_transient_failure_only_the_newest_read_is_tried(
        clock: FakeClock, pool: WorkerPool) -> None:
    clock.advance(7200.0)  # one hour settling, two open: three reads
    api = Scripted(clock)
    api.script.append(lambda s, e: busy(s, e) if s == START else None)
    poller = make_poller(config(A), api, clock, pool, ledgers(A))
    poller.cycle()
    assert spans(api) == [(START, START + 3599), (START + 7200, START + 7300)]


def test_a_catch_up_reads_at_most_eight_ranges_a_cycle_the_newest_among_them(
        clock: FakeClock, pool: WorkerPool) -> None:
    clock.advance(10 * 86400.0)  # ten days down: ten day-long reads and the newest hour
    api = FakeApi(clock)
    poller = make_poller(config(A), api, clock, pool, ledgers(A))
    poller.cycle()
    now = START + 10 * 86400 + 100
    assert spans(api) == [*((START + d * 86400, START + (d + 1) * 86400 - 1) for d in range(7)),
                          (now - 100, now)]


def test_a_ledger_whose_origin_is_still_ahead_reads_nothing_and_is_up(
        clock: FakeClock, pool: WorkerPool) -> None:
    api = FakeApi(clock)
    poller = make_poller(config(A), api, clock, pool, ledgers(A, origin=START + 3600))
    [target] = poller.cycle().targets
    assert api.calls == []
    assert (target.up, target.failures, target.counters) == (True, (), Totals())


def test_a_range_that_reads_once_starts_its_strikes_over(
        clock: FakeClock, pool: WorkerPool) -> None:
    clock.advance(3600.0)  # the first hour settles 600 s after its end: read for 8 more cycles
    api = Scripted(clock)
    rejecting = [True]
    api.script.append(lambda s, e: busy(s, e) if s == START and rejecting[0] else None)
    poller = make_poller(config(A), api, clock, pool, ledgers(A))
    for cycle in range(2 * MAX_STRIKES - 2):
        rejecting[0] = cycle != MAX_STRIKES - 1  # answered once, in the fifth cycle
        [target] = poller.cycle().targets
        clock.advance(60.0)
    assert target.given_up == ()  # never MAX_STRIKES failures in a row


def test_every_range_the_api_keeps_rejecting_is_given_up_in_the_same_cycle(
        clock: FakeClock, pool: WorkerPool) -> None:
    clock.advance(3 * 86400.0)  # three settled days, one read each, and the newest hour
    api = Scripted(clock)
    rejected = (START, START + 86400)
    bad = ApiError("retcode", "RetCode 230 (invalid parameter)", retcode=230, transient=False)
    api.script.append(lambda s, e: bad if s in rejected else None)
    cfg = config(A)
    cfg = replace(cfg, poll=replace(cfg.poll, permanent_error_retry=30.0))  # one cycle's pause
    poller = make_poller(cfg, api, clock, pool, ledgers(A))
    for _ in range(MAX_STRIKES):
        [target] = poller.cycle().targets
        clock.advance(60.0)
    assert target.given_up == (("retcode", 2 * 86400),)


def test_the_snapshot_carries_the_ledgers_revisions_and_late_usage(
        clock: FakeClock, pool: WorkerPool) -> None:
    led = ledgers(A)
    led[A.ident].revisions, led[A.ident].late_after_settle = 2, Totals(tokens=3)
    poller = make_poller(config(A), FakeApi(clock), clock, pool, led)
    [target] = poller.snapshot().targets
    assert (target.revisions, target.late_after_settle) == (2, Totals(tokens=3))


# --- a shared origin: counters exported once every second from it was read ---


def test_with_an_origin_counters_are_exported_only_once_caught_up_and_again_after_adopting(
        clock: FakeClock, pool: WorkerPool, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "exporter.polling.poller")
    clock.advance(10 * 86400.0)  # ten days from the origin: two cycles of catch-up
    cfg = replace(config(A), accounting=AccountingConfig(origin=START))
    poller = make_poller(cfg, FakeApi(clock), clock, pool, {})
    [target] = poller.cycle().targets
    assert (target.target, target.up, target.counting, target.catchup_remaining, target.settled,
            target.settled_until) == (A, False, False, 3 * 86400 + 101, None, None)
    assert target.counters.tokens == 7 * 86400 + 101  # seven days and the newest read
    assert records(caplog) == []
    assert poller.ledgers()[A.ident].audit  # late usage is measured from the origin on
    clock.advance(60.0)
    [target] = poller.cycle().targets
    assert (target.target, target.up, target.counting, target.catchup_remaining) == (
        A, True, True, 0)
    closed = 10 * 86400 - 3600  # the last hour closes 600 s after its end, not yet
    assert target.settled == Totals(closed, 0, closed, 0, 0)
    assert target.counters.tokens == 10 * 86400 + 161
    caught_up = ("INFO", "target /uminferapikey-a/m caught up from the origin: counters "
                 "exported from now on")
    clock.advance(60.0)
    poller.cycle()
    assert records(caplog) == [caught_up]  # once
    poller.adopt(A.ident, poller.ledgers()[A.ident].settled())  # a peer's settled ledger
    [target] = poller.snapshot().targets
    assert (target.up, target.counting, target.catchup_remaining) == (False, False, None)
    clock.advance(60.0)
    [target] = poller.cycle().targets
    assert (target.up, target.counting, target.catchup_remaining) == (True, True, 0)
    assert records(caplog) == [caught_up, caught_up]


def test_without_an_origin_no_catch_up_is_exported_nor_said(
        clock: FakeClock, pool: WorkerPool, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "exporter.polling.poller")
    poller = make_poller(config(A), FakeApi(clock), clock, pool, ledgers(A))
    [target] = poller.cycle().targets
    assert (target.up, target.counting, target.catchup_remaining, target.settled) == (
        True, True, None, None)
    assert target.settled_until == START - 1
    assert records(caplog) == []


def test_a_reload_keeps_what_was_said_so_the_recovery_is_said_too(
        clock: FakeClock, pool: WorkerPool, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "exporter.polling.poller")
    api = Scripted(clock)
    api.script.append(busy)
    first = make_poller(config(A), api, clock, pool, ledgers(A))
    first.cycle()
    successor = make_poller(config(A), api, clock, pool, first.ledgers())
    successor.carry_health(first, lift_pauses=True)
    api.script.clear()
    clock.advance(60.0)
    assert successor.cycle().targets[0].up
    assert records(caplog) == [
        ("WARNING", "target /uminferapikey-a/m failing: RetCode 150 (service unavailable)"),
        ("INFO", "target /uminferapikey-a/m recovered")]


def test_a_held_first_answer_is_awaited_while_the_target_fails(
        clock: FakeClock, pool: WorkerPool) -> None:
    api = Scripted(clock)
    api_clock = ApiClock(clock)
    api_clock.observe(email.utils.formatdate(clock.time(), usegmt=True), clock.monotonic())
    poller = Poller(config(A), api, clock, pool, {}, api_clock)
    assert poller.cycle().targets[0].up and poller.awaiting_baseline()  # one Date: held
    api.script.append(busy)
    clock.advance(60.0)
    assert not poller.cycle().targets[0].up
    assert poller.awaiting_baseline()  # down, yet its first answer still waits


def test_one_target_is_polled_as_a_cycle_would_and_a_bug_is_swallowed(
        clock: FakeClock, pool: WorkerPool) -> None:
    api = Buggy(clock)
    poller = make_poller(config(A, B), api, clock, pool, ledgers(A, B))
    assert poller.targets == (A, B)
    poller.poll_target(B, clock.monotonic() + 60)
    assert [key for key, *_ in api.calls] == [B.key]  # only B
    api.bugs[A.key] = lambda _s, _e: True
    poller.poll_target(A, clock.monotonic() + 60)  # never raises
    a, b = poller.snapshot().targets
    assert (a.up, dict(a.failures), b.up, b.counters.tokens) == (False, {"internal": 1}, True, 101)


def test_the_lock_it_lends_is_the_one_its_polls_take(clock: FakeClock, pool: WorkerPool) -> None:
    poller = make_poller(config(A), FakeApi(clock), clock, pool, ledgers(A))
    with poller.locked():
        taken: list[bool] = []
        thread = threading.Thread(target=lambda: taken.append(poller.awaiting_baseline()))
        thread.start()
        thread.join(0.2)
        assert thread.is_alive()  # waits for the lock held here
    thread.join(5.0)
    assert taken == [False]


# --- what a step's failure stops, and what the log keeps of a bug ---


def window_calls(api: FakeApi) -> list[tuple[int, int]]:
    return [(s, e) for s, e in spans(api) if e - s == 3599]


def test_a_failing_or_paused_target_reads_no_windows(clock: FakeClock, pool: WorkerPool) -> None:
    api = Scripted(clock)
    denied = ApiError("retcode", "RetCode 171", retcode=171, transient=False)
    api.script.append(lambda s, e: denied if e - s != 3599 else None)  # count reads only
    poller = make_poller(config(A, windows=(Window("1h", 3600),)), api, clock, pool, ledgers(A))
    poller.cycle()  # fails: the windows would only fail too
    clock.advance(60.0)
    poller.cycle()  # paused by the permanent error
    assert len(api.calls) == 1 and window_calls(api) == []


def test_a_bug_in_the_count_reads_skips_the_windows_and_logs_its_traceback(
        clock: FakeClock, pool: WorkerPool, caplog: pytest.LogCaptureFixture) -> None:
    api = Buggy(clock)
    api.bugs[A.key] = lambda s, e: e - s != 3599
    poller = make_poller(config(A, windows=(Window("1h", 3600),)), api, clock, pool, ledgers(A))
    poller.cycle()
    assert window_calls(api) == []
    [bug] = [r for r in caplog.records if r.getMessage().startswith("internal error polling")]
    assert bug.exc_info is not None and str(bug.exc_info[1]) == "bug"


def test_a_bug_in_the_window_or_seed_reads_is_logged_with_its_traceback(
        clock: FakeClock, pool: WorkerPool, caplog: pytest.LogCaptureFixture) -> None:
    seeding = BrokenSeeding(horizon=BudgetTracker((BudgetConfig("m", "monthly",
                                                                tokens=1),)).horizon)
    api = Buggy(clock)
    api.bugs[A.key] = lambda s, e: e - s == 3599
    poller = Poller(config(A, windows=(Window("1h", 3600),)), api, clock, pool, ledgers(A),
                    ApiClock.trusting(clock), seeding=seeding)
    poller.cycle()
    assert [(r.getMessage(), str(r.exc_info[1]) if r.exc_info else None)
            for r in caplog.records if r.levelno == logging.ERROR] == [
        ("internal error reading windows of target /uminferapikey-a/m", "bug"),
        ("internal error reading the budget seed of target /uminferapikey-a/m", "bug")]


def test_an_outage_of_every_read_strikes_no_range(clock: FakeClock, pool: WorkerPool) -> None:
    clock.advance(7200.0)  # three reads a cycle, all failing: the API is down, no range is bad
    api = Scripted(clock)
    api.script.append(busy)
    poller = make_poller(config(A), api, clock, pool, ledgers(A))
    for _ in range(MAX_STRIKES + 1):
        [target] = poller.cycle().targets
        clock.advance(60.0)
    assert (target.given_up, target.settled_until) == ((), START - 1)


def test_nothing_closes_while_the_apis_time_is_not_settled(
        clock: FakeClock, pool: WorkerPool) -> None:
    clock.advance(4200.0)  # the first hour settled a second ago, by the local clock
    api_clock = ApiClock(clock)
    api_clock.observe(email.utils.formatdate(clock.time(), usegmt=True), clock.monotonic())
    poller = Poller(config(A), FakeApi(clock), clock, pool, ledgers(A), api_clock)
    [target] = poller.cycle().targets
    assert target.up and target.settled_until == START - 1  # one Date settles nothing


class Labelled(FakeApi):
    """Hourly buckets on the half hour: each answer labels its usage half an hour before its
    range begins, a bucket straddling the grid's line."""

    def get_usage(self, target: Target, start: int, end: int, deadline: float) -> Reading:
        reading = super().get_usage(target, start, end, deadline)
        return Reading(reading.totals, (start - 1800,))


def test_every_answer_tells_the_bucket_meter_its_range_and_labels(
        clock: FakeClock, pool: WorkerPool) -> None:
    meter = BucketMeter()
    poller = Poller(config(A, windows=(Window("1h", 3600),)), Labelled(clock), clock, pool,
                    ledgers(A), ApiClock.trusting(clock), buckets=meter)
    [target] = poller.cycle().targets
    assert meter.off_grid == 1  # the count read from the grid's line; the window's is not on it
    assert (target.up, target.failures, target.windows_at) == (True, (), START + 100)


class Settling(FakeApi):
    """Answers that carry the API's Date, as the real client's do: they settle its clock."""

    def __init__(self, clock: FakeClock, api_clock: ApiClock) -> None:
        super().__init__(clock)
        self.api_clock = api_clock
        self.dated = False

    def get_usage(self, target: Target, start: int, end: int, deadline: float) -> Reading:
        if self.dated:
            for _ in range(2):
                self.api_clock.observe(email.utils.formatdate(self.clock.time(), usegmt=True),
                                       self.clock.monotonic())
        return super().get_usage(target, start, end, deadline)


def test_the_answer_that_settles_the_apis_time_makes_the_held_one_the_baseline(
        clock: FakeClock, pool: WorkerPool) -> None:
    api_clock = ApiClock(clock)
    api_clock.observe(email.utils.formatdate(clock.time(), usegmt=True), clock.monotonic())
    api = Settling(clock, api_clock)
    poller = Poller(config(A), api, clock, pool, {}, api_clock)
    poller.cycle()  # one Date: the first answer is held
    ledger = poller.ledgers()[A.ident]
    assert ledger.fresh
    clock.advance(60.0)
    api.dated = True  # this cycle's answer settles the time
    [target] = poller.cycle().targets
    assert (ledger.fresh, ledger.began, ledger.baseline.tokens) == (False, START + 100, 101)
    assert target.up and target.counters.tokens == 60


class TickingClock(FakeClock):
    """A host where ``tick`` seconds pass at every look at the monotonic clock (a busy one)."""

    tick = 0.0

    def monotonic(self) -> float:
        self.advance(self.tick)
        return super().monotonic()


@pytest.mark.parametrize(("tick", "taken"), [
    (0.0, True),  # sent at the read's first and last second: the period's very start
    (1.0, True),  # sent a second after the read's end: within the Date header's rounding
    (2.0, False),  # later: the read may have missed usage from before the baseline
])
def test_a_first_answer_is_the_baseline_only_if_sent_within_its_read(
        pool: WorkerPool, tick: float, taken: bool) -> None:
    clock = TickingClock(START)  # the first second of a period
    poller = make_poller(config(A), FakeApi(clock), clock, pool, {})
    clock.tick = tick
    [target] = poller.cycle().targets
    ledger = poller.ledgers()[A.ident]
    assert target.up and ledger.fresh is not taken
    assert poller.awaiting_baseline() is not taken
    assert poller.status.counting_since({A.ident}) == (ledger.began if taken else None)
    assert tick or ledger.began == START


def test_counting_since_is_the_origin_of_a_ledger_that_counts_from_it(
        clock: FakeClock, pool: WorkerPool) -> None:
    poller = make_poller(config(A), FakeApi(clock), clock, pool, ledgers(A))
    poller.cycle()
    assert poller.status.counting_since({A.ident}) == START


def test_a_refusal_the_reach_did_not_cause_is_the_same_problem_not_news(
        clock: FakeClock, pool: WorkerPool, caplog: pytest.LogCaptureFixture) -> None:
    class Refusing(FakeApi):
        def get_usage(self, target: Target, start: int, end: int, deadline: float) -> Reading:
            self.calls.append((target.key, start, end, deadline))
            raise ApiError("retcode", "RetCode 230: EndTime invalid", retcode=230,
                           http_status=200, transient=False)

    api_clock = ApiClock(clock)
    api_clock.observe(email.utils.formatdate(clock.time(), usegmt=True), clock.monotonic())
    cfg = config(A)
    cfg = replace(cfg, poll=replace(cfg.poll, permanent_error_retry=30.0))
    poller = Poller(cfg, Refusing(clock), clock, pool, {}, api_clock)
    for _ in range(2):
        [target] = poller.cycle().targets
        clock.advance(60.0)
    assert dict(target.failures) == {"retcode": 2}
    assert records(caplog) == [
        ("WARNING", "target /uminferapikey-a/m failing: RetCode 230: EndTime invalid (a read "
         "reaching 60 s past the API's time as estimated; asked again without)")]


def test_a_carried_poller_may_poll_targets_its_predecessor_did_not(
        clock: FakeClock, pool: WorkerPool) -> None:
    first = make_poller(config(A), FakeApi(clock), clock, pool, ledgers(A))
    first.cycle()
    successor = make_poller(config(A, B), FakeApi(clock), clock, pool, ledgers(A, B))
    successor.carry_health(first, lift_pauses=True)
    a, b = successor.snapshot().targets
    assert a.up and (b.up, b.failures) == (False, ())


def test_with_an_origin_a_target_not_counting_yet_still_shows_its_failures(
        clock: FakeClock, pool: WorkerPool) -> None:
    cfg = replace(config(A), accounting=AccountingConfig(origin=START))
    waiting = Poller(cfg, FakeApi(clock), clock, pool, {}, ApiClock(clock))  # no Date yet
    [target] = waiting.cycle().targets
    assert (target.target, target.counting, target.failures) == (A, False, (("network", 1),))
    api = Scripted(clock)
    api.script.append(busy)
    failing = make_poller(cfg, api, clock, pool, {})
    [target] = failing.cycle().targets
    assert (target.target, target.up, target.counting, target.failures) == (
        A, False, False, (("retcode", 1),))


def test_a_new_ledger_begins_its_budget_seed(clock: FakeClock, pool: WorkerPool) -> None:
    seeding = Seeding(horizon=lambda _target, _now: START - 20 * 86400)  # 20 days: 3 polls
    poller = Poller(config(A), FakeApi(clock), clock, pool, {}, ApiClock.trusting(clock),
                    seeding=seeding)
    poller.cycle()
    assert seeding.pending() == [A.ident]


def test_each_accounts_targets_count_on_its_own_days(clock: FakeClock, pool: WorkerPool) -> None:
    west = Target("uminferapikey-w", "m", account="west")
    cfg = Config(accounts=(AccountConfig("east", ApiConfig(timeout=10, rate_limit=0)),
                           AccountConfig("west", ApiConfig(timeout=10, rate_limit=0,
                                                           time_zone="America/New_York"))),
                 poll=PollConfig(interval=60, settle=600), targets=(west,))
    poller = make_poller(cfg, FakeApi(clock), clock, pool, {})
    poller.cycle()
    assert poller.ledgers()[west.ident].grid.zone == "America/New_York"


def test_a_window_read_on_its_own_is_said_by_the_pollers_status(
        clock: FakeClock, pool: WorkerPool, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "exporter.polling.poller")
    hour, half = Window("1h", 3600), Window("30m", 1800)
    poller = make_poller(config(A, windows=(hour, half)), FakeApi(clock), clock, pool,
                         ledgers(A))
    [target] = poller.cycle().targets  # answers without rows: 30 minutes are read alone
    assert target.failures == () and [w for w, _ in target.windows] == [hour, half]
    [(level, said)] = records(caplog)
    assert level == "INFO" and said == (
        "window 30m is read with a call of its own, not summed from the widest window's answer: "
        "the API's answers carry no Usages rows that add up to their totals")

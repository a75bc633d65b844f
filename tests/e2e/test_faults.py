"""Every fault the API can throw, at once, against one exporter process: one target per fault.

The scenario runs once per module: usage before the faults, usage during them, then recovery.
Each case is a parametrized test over what was observed, so a failure names its fault.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest
import requests

from exporter.core.usage import Totals
from exporter.simulator import Fault, FaultKind
from tests import fleet
from tests.harness import Series, parse_metrics

pytestmark = pytest.mark.e2e

TIMEOUT = 1.5  # api.timeout; the timeout cases sit just beyond it
RATE = 2000.0  # api.rate_limit: high enough not to pace, but adaptive (0 would disable AIMD)
BEFORE, DURING = Totals(100, 20, 120, 3, 1), Totals(7, 5, 12, 2, 0)
PROMPT = 0.5  # seconds a scrape may take while everything upstream is failing


@dataclass(frozen=True)
class Case:
    """A fault, the reason it must be counted under, and what the API-call metric must show.

    ``expect`` is "fail" (up 0, counters hold), "hold" (accepted as no usage: up 1, counters
    hold), "count" (lenient: counted while the fault lasts, up 1) or "eventually" (slow:
    counted while the fault lasts, up not judged).
    """

    name: str
    fault: Fault
    expect: str = "fail"
    reason: str | None = None
    call: tuple[str, str] | None = None  # (outcome, retcode) of uminfer_api_requests_total

    @property
    def key(self) -> str:
        return f"k-{self.name}"


def _http(status: int) -> Case:
    fault = Fault(FaultKind.HTTP, status=status, retry_after=1.0)
    return Case(f"http_{status}", fault, reason="http", call=("http", "none"))


def _retcode(code: int) -> Case:
    return Case(f"retcode_{code}", Fault(FaultKind.RETCODE, retcode=code), reason="retcode",
                call=("retcode", str(code)))


def _garbage(name: str, fault: Fault) -> Case:
    return Case(name, fault, reason="invalid_response", call=("invalid_response", "none"))


CASES = (
    *(_http(status) for status in (429, 500, 502, 503, 504)),
    Case("timeout_drop", Fault(FaultKind.TIMEOUT, delay=TIMEOUT + 0.5, then="drop"),
         reason="timeout", call=("timeout", "none")),
    Case("timeout_answer_late", Fault(FaultKind.TIMEOUT, delay=TIMEOUT + 0.2, then="answer"),
         reason="timeout", call=("timeout", "none")),
    Case("reset", Fault(FaultKind.RESET), reason="network", call=("network", "none")),
    Case("close", Fault(FaultKind.CLOSE), reason="network", call=("network", "none")),
    *(_retcode(code) for code in (110, 130, 150, 153, 161, 171, 172, 230, 299, 2317)),
    _garbage("malformed", Fault(FaultKind.MALFORMED)),
    *(_garbage(f"wrong_type_{g}", Fault(FaultKind.WRONG_TYPE, garbage=g))
      for g in ("string", "float", "bool")),
    _garbage("negative", Fault(FaultKind.NEGATIVE)),
    # Hostile: usage JSON nested 10,000 deep (was a RecursionError counted as "internal").
    _garbage("crafted_nested", Fault(FaultKind.CRAFTED, status=200, body='{"RetCode": 0, '
             '"Data": {"InTotal": ' + "[" * 10_000 + "]" * 10_000 + "}}")),
    _garbage("absurd", Fault(FaultKind.ABSURD)),
    # Data {} parses as "no usage in this interval" (a success); the ledger keeps its higher
    # earlier reading and re-reads the interval until it settles, so nothing is lost.
    Case("empty_data", Fault(FaultKind.EMPTY_DATA), expect="hold"),
    Case("usages_object", Fault(FaultKind.USAGES_OBJECT), expect="count"),
    Case("string_retcode", Fault(FaultKind.STRING_RETCODE), expect="count"),
    Case("string_counts", Fault(FaultKind.STRING_COUNTS), expect="count"),
    # Answers in 30% of the timeout. A target's reads share one cycle deadline, and up to three
    # open periods are re-read per cycle here, so slower answers would starve the newest period
    # until the older ones settle; up may still flap on an audit read, counts must be exact.
    Case("slow_within_timeout", Fault(FaultKind.LATENCY, delay=0.3 * TIMEOUT),
         expect="eventually"),
)
CONTROL = "k-control"  # never faulted: the others' trouble must not touch it


@dataclass
class Observed:
    """What the scenario saw; the tests judge it."""

    during: dict[Series, float] = field(default_factory=dict)
    after: dict[Series, float] = field(default_factory=dict)
    scrape_seconds: list[float] = field(default_factory=list)
    rate_low: float = RATE
    rate_after: float = 0.0
    fault_seconds: float = 0.0
    retcode_calls: dict[int, int] = field(default_factory=dict)
    status_calls: dict[int, int] = field(default_factory=dict)
    alive: bool = False
    truth: dict[str, Totals] = field(default_factory=dict)


def _scrape(url: str, seen: Observed) -> dict[Series, float]:
    began = time.monotonic()
    response = requests.get(f"{url}/metrics", timeout=5)
    seen.scrape_seconds.append(time.monotonic() - began)
    response.raise_for_status()
    return parse_metrics(response.text)


def _until(check: object, seconds: float) -> None:
    """Wait until ``check()`` is true or time runs out; the tests judge what was reached."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not check():  # type: ignore[operator]
        time.sleep(0.2)


def _rate(samples: dict[Series, float]) -> float:
    return samples.get(("uminfer_api_rate_limit_requests_per_second", frozenset()), RATE)


def _settled_during(url: str, seen: Observed) -> bool:
    samples = _scrape(url, seen)
    seen.rate_low = min(seen.rate_low, _rate(samples))
    seen.during = samples  # the latest look is what the tests judge
    for case in CASES:
        got = fleet.counters(samples, case.key)
        up = fleet.value(samples, "uminfer_up", case.key)
        if case.expect == "fail" and not (
                up == 0 and fleet.value(samples, "uminfer_target_failures_total", case.key,
                                        reason=case.reason or "") and got == BEFORE):
            return False
        if case.expect in ("count", "eventually") and got != BEFORE + DURING:
            return False
    return True


def _recovered(url: str, seen: Observed) -> bool:
    samples = _scrape(url, seen)
    keys = [case.key for case in CASES] + [CONTROL]
    done = all(fleet.counters(samples, k) == BEFORE + DURING
               and fleet.value(samples, "uminfer_up", k) == 1 for k in keys)
    seen.after = samples
    return done


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Observed:
    """Run the scenario once: baseline, every fault at once, recovery."""
    seen = Observed()
    keys = [case.key for case in CASES] + [CONTROL]
    with fleet.simulator() as sim:
        config = fleet.fleet_config(sim.url, keys, api={"timeout": f"{int(TIMEOUT * 1000)}ms",
                                                        "rate_limit": RATE})
        with fleet.exporter(tmp_path_factory.mktemp("faults"), config) as child:
            for key in keys:
                fleet.add_usage(sim, key, BEFORE)
            _until(lambda: all(fleet.counters(child.metrics(), k) == BEFORE for k in keys), 10)
            sim.reset_stats()
            began = time.monotonic()
            rules = [sim.faults.add(case.fault, key=case.key) for case in CASES]
            for key in keys:
                fleet.add_usage(sim, key, DURING)
            _until(lambda: _settled_during(child.url, seen), 12)
            time.sleep(1.5)  # a few more cycles under fire: counters must still hold
            _settled_during(child.url, seen)
            seen.fault_seconds = time.monotonic() - began
            stats = sim.stats()
            print(f"fault phase {seen.fault_seconds:.1f}s, rate low {seen.rate_low}, "
                  f"by retcode {stats.by_retcode}, by status {stats.by_status}")
            seen.retcode_calls, seen.status_calls = dict(stats.by_retcode), dict(stats.by_status)
            for rule in rules:
                sim.faults.remove(rule)
            _until(lambda: _recovered(child.url, seen), 12)
            seen.rate_after = _rate(seen.after)
            seen.truth = {k: fleet.as_totals(sim.store.truth(fleet.PROJECT, k, fleet.MODEL, 0,
                                                              int(time.time()) + 1))
                          for k in keys}
            assert child.process is not None
            seen.alive = child.process.poll() is None
            child.stop()
    return seen


def test_every_fault_kind_is_exercised() -> None:
    """LATENCY through the slow case; every other kind directly."""
    assert {case.fault.kind for case in CASES} == set(FaultKind)
    assert len({case.key for case in CASES}) == len(CASES)


def test_process_stays_up_and_scrapes_stay_prompt(observed: Observed) -> None:
    assert observed.alive
    assert observed.scrape_seconds and max(observed.scrape_seconds) < PROMPT, \
        max(observed.scrape_seconds)


def test_control_target_is_untouched(observed: Observed) -> None:
    assert fleet.counters(observed.during, CONTROL) == BEFORE + DURING
    assert fleet.value(observed.during, "uminfer_up", CONTROL) == 1


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_fault_during(observed: Observed, case: Case) -> None:
    got = fleet.counters(observed.during, case.key)
    up = fleet.value(observed.during, "uminfer_up", case.key)
    if case.expect == "eventually":
        assert got == BEFORE + DURING
        return
    if case.expect == "count":
        assert (got, up) == (BEFORE + DURING, 1)
        assert not any(name == "uminfer_target_failures_total" and ("key_id", case.key) in lbl
                       and value for (name, lbl), value in observed.during.items())
        return
    assert got == BEFORE  # bad data never moves a counter, not even for a cycle
    if case.expect == "hold":
        assert up == 1
        return
    assert up == 0
    assert (fleet.value(observed.during, "uminfer_target_failures_total", case.key,
                        reason=case.reason or "") or 0) >= 1
    assert case.call is not None
    outcome, retcode = case.call
    series = ("uminfer_api_requests_total",
              frozenset({"outcome": outcome, "retcode": retcode}.items()))
    assert observed.during.get(series, 0) >= 1


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_recovery_catches_up_exactly(observed: Observed, case: Case) -> None:
    assert observed.truth[case.key] == BEFORE + DURING
    assert fleet.counters(observed.after, case.key) == observed.truth[case.key]
    assert fleet.value(observed.after, "uminfer_up", case.key) == 1


@pytest.mark.parametrize("throttle", [153, 429])
def test_throttling_backs_off_instead_of_retrying_harder(observed: Observed,
                                                         throttle: int) -> None:
    calls = (observed.retcode_calls if throttle == 153 else observed.status_calls).get(throttle, 0)
    # One target, ~1 s cycles: backoff (and Retry-After) allow about one or two calls a cycle;
    # retrying harder would make dozens.
    assert 1 <= calls <= 3 * observed.fault_seconds, (calls, observed.fault_seconds)
    assert observed.rate_low <= RATE / 2  # the shared rate was halved at least once
    assert observed.rate_after > observed.rate_low  # and climbs back additively on success

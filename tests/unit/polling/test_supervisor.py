"""The supervised poll loop: a failing stage is counted and logged once, the loop goes on,
and /-/healthy turns 503 when cycles stop finishing."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import pytest
import requests
from prometheus_client import CollectorRegistry, Counter

from exporter.accounting.snapshot import Snapshot
from exporter.config import Config, ConfigError, parse_config
from exporter.core.clock import FakeClock, SystemClock
from exporter.metrics.exposition import ExpositionCache
from exporter.metrics.selfmetrics import SelfMetrics
from exporter.polling.supervisor import STAGES, STALE_FACTOR, Heartbeat, StageGuard, loaded, pause
from exporter.service import Service
from exporter.simulator import SimulatorServer
from exporter.web.server import Endpoints, MetricsServer
from tests.conftest import StartSimulator
from tests.fleet import SECOND_BUCKETS


def _counter() -> tuple[CollectorRegistry, Counter]:
    registry = CollectorRegistry()
    return registry, Counter("uminfer_poll_errors", "h", ["stage"], registry=registry)


def _boom() -> int:
    raise KeyError("boom")


def test_every_stage_is_exported_at_zero() -> None:
    registry, counter = _counter()
    StageGuard(counter)
    assert {s: registry.get_sample_value("uminfer_poll_errors_total", {"stage": s})
            for s in STAGES} == dict.fromkeys(STAGES, 0.0)


def test_an_error_is_counted_every_time_and_logged_once_per_kind(
        caplog: pytest.LogCaptureFixture) -> None:
    registry, counter = _counter()
    guard = StageGuard(counter)
    caplog.set_level(logging.DEBUG, logger="exporter")
    results = [guard.run("cost", _boom, -1) for _ in range(3)]
    assert results == [-1, -1, -1]
    assert registry.get_sample_value("uminfer_poll_errors_total", {"stage": "cost"}) == 3
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    debugs = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(errors) == 1 and "KeyError in the poll loop's cost stage" in errors[0].getMessage()
    assert len(debugs) == 1 and debugs[0].exc_info is not None
    guard.run("publish", _boom, -1)  # another stage is another kind
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 2


def test_heartbeat_goes_stale_after_the_documented_multiple() -> None:
    clock = FakeClock()
    beat = Heartbeat(clock)
    clock.advance(STALE_FACTOR * (60 + 10))  # interval 60 s, timeout 10 s
    assert beat.fresh(60, 10)
    clock.advance(1)
    assert not beat.fresh(60, 10)
    beat.beat()
    assert beat.fresh(60, 10)


@pytest.mark.parametrize(("healthy", "status"), [(True, 200), (False, 503)])
def test_healthy_endpoint_follows_the_heartbeat(healthy: bool, status: int) -> None:
    endpoints = Endpoints(cache=ExpositionCache(), registry=CollectorRegistry(),
                          ready=threading.Event(), reload=lambda: None,
                          healthy=lambda: healthy)
    server = MetricsServer("127.0.0.1", 0, endpoints)
    server.start()
    try:
        answer = requests.get(f"http://127.0.0.1:{server.port}/-/healthy", timeout=5)
    finally:
        server.close()
    assert answer.status_code == status


class BrokenCache(ExpositionCache):
    """Publishing always fails, as a rendering bug would."""

    def publish(self, snapshot: Snapshot) -> None:
        raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")


@pytest.fixture
def sim(start_simulator: StartSimulator) -> SimulatorServer:
    return start_simulator({"pub": "private-key-123"}, buckets=SECOND_BUCKETS)


def _config(url: str) -> Config:
    return parse_config({"api": {"endpoint": url, "public_key": "pub",
                                 "private_key": "private-key-123", "timeout": "2s"},
                         "poll": {"interval": "1s", "settle": "20s"},
                         "windows": [], "targets": [{"key": "k", "model": "m"}]}, {}, "/")


def test_a_failing_stage_costs_the_stage_not_the_loop(sim: SimulatorServer) -> None:
    config = _config(sim.url)
    registry = CollectorRegistry()
    service = Service(config, SystemClock(), registry, lambda: config)
    service.cache = BrokenCache()
    loop = threading.Thread(target=service.run)
    loop.start()
    try:
        for _ in range(50):
            if (registry.get_sample_value("uminfer_poll_errors_total",
                                          {"stage": "publish"}) or 0) >= 2:
                break
            threading.Event().wait(0.1)
        assert loop.is_alive()
        assert service.healthy()
    finally:
        service.stop()
        loop.join(5)
    assert (registry.get_sample_value("uminfer_poll_errors_total", {"stage": "publish"}) or 0) >= 2
    assert registry.get_sample_value("uminfer_poll_errors_total", {"stage": "poll"}) == 0
    assert not service.ready.is_set()  # nothing was published, so not ready


def test_self_metrics_with_known_labels_start_at_zero() -> None:
    # So increase() alerts (UminferStateNotSaved, UminferApiThrottled) see the first event.
    registry = CollectorRegistry()
    SelfMetrics(registry)
    for outcome in ("success", "error"):
        assert registry.get_sample_value("uminfer_state_writes_total", {"outcome": outcome}) == 0
    for outcome, retcode in (("success", "0"), ("retcode", "153"), ("network", "none")):
        assert registry.get_sample_value("uminfer_api_requests_total",
                                         {"outcome": outcome, "retcode": retcode}) == 0


@pytest.mark.parametrize(("interval", "elapsed", "aligned_now", "want"), [
    (60.0, 12.5, None, 47.5),           # an interval after the last cycle started
    (60.0, 75.0, None, 0.0),            # an overrun starts the next cycle at once
    (60.0, 12.5, 1_800_000_015.0, 45.0),  # the API's next multiple of the interval
    (60.0, 75.0, 1_800_000_020.0, 40.0),  # aligned even after an overrun
    (30.0, 0.0, 1_800_000_000.0, 30.0),   # on a multiple: a whole interval, never 0
])
def test_the_pause_ends_an_interval_on_or_at_the_api_clocks_multiple(
        interval: float, elapsed: float, aligned_now: float | None, want: float) -> None:
    assert pause(interval, elapsed, aligned_now) == pytest.approx(want)


def test_watched_gauges_read_their_sources_at_scrape_time_and_nan_while_unknown() -> None:
    registry = CollectorRegistry()
    metrics = SelfMetrics(registry)
    source: dict[str, float | None] = {"offset": None, "bucket": None}
    metrics.watch(clock_offset=lambda: source["offset"],
                  bucket=lambda: None if source["bucket"] is None else int(source["bucket"]),
                  rate=lambda: 2.5, seeding=lambda: 3, targets=lambda: 7)

    def value(name: str) -> float | None:
        return registry.get_sample_value(name)

    assert value("uminfer_api_clock_offset_seconds") != value("uminfer_api_clock_offset_seconds")
    assert value("uminfer_api_bucket_seconds") != value("uminfer_api_bucket_seconds")  # NaN
    source.update(offset=0.0, bucket=86400)
    assert value("uminfer_api_clock_offset_seconds") == 0.0  # known and exact: not NaN
    assert value("uminfer_api_bucket_seconds") == 86400
    source.update(offset=-1.5, bucket=0)
    assert value("uminfer_api_clock_offset_seconds") == -1.5
    assert value("uminfer_api_bucket_seconds") != value("uminfer_api_bucket_seconds")
    assert value("uminfer_api_rate_limit_requests_per_second") == 2.5
    assert (value("uminfer_budget_seeding_targets"), value("uminfer_targets")) == (3, 7)
    metrics.reloaded(True, 1_700_000_000.0)
    metrics.reloaded(False, 1_700_000_100.0)
    assert value("uminfer_config_last_reload_successful") == 0
    assert value("uminfer_config_last_reload_success_timestamp_seconds") == 1_700_000_000.0


def test_a_reload_is_the_config_or_one_line_saying_why_not(caplog: pytest.LogCaptureFixture
                                                           ) -> None:
    config = parse_config({"api": {"public_key": "p", "private_key": "s"},
                           "targets": [{"key": "k", "model": "m"}]}, {}, ".")
    assert loaded(lambda: config) is config

    def invalid() -> Config:
        raise ConfigError(["poll.interval: must be positive", "targets: required"])

    assert loaded(invalid) == "poll.interval: must be positive; targets: required"

    def buggy() -> Config:
        raise KeyError("secret-looking-detail")

    with caplog.at_level(logging.DEBUG, logger="exporter.service"):
        why = loaded(buggy)
    assert why == "unexpected KeyError while loading the config (traceback at debug level)"
    assert "secret-looking-detail" not in why  # the reason reaches HTTP replies: no details
    [debug] = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert (debug.getMessage(), debug.exc_info is not None) == (
        "traceback of the failed config load", True)
    assert debug.exc_info is not None and debug.exc_info[1] is not None
    assert str(debug.exc_info[1]) == "'secret-looking-detail'"


def _raising(error: Exception) -> Callable[[], int]:
    def work() -> int:
        raise error
    return work


def test_the_error_line_names_the_kind_the_stage_and_a_short_printable_message(
        caplog: pytest.LogCaptureFixture) -> None:
    _, counter = _counter()
    guard = StageGuard(counter)
    caplog.set_level(logging.DEBUG, logger="exporter.service")
    error = ValueError("bad\nvalue\x1b[31m" + "x" * 300)
    guard.run("state", _raising(error), 0)
    error_line, debug_line = caplog.records
    shown = "bad?value?[31m" + "x" * 186  # the first 200 characters, unprintable ones as ?
    assert (error_line.levelname, error_line.getMessage()) == (
        "ERROR", f"unexpected ValueError in the poll loop's state stage: {shown}; the loop goes "
                 "on (counted in uminfer_poll_errors_total, traceback at debug level)")
    assert (debug_line.levelname, debug_line.getMessage()) == (
        "DEBUG", "traceback of the ValueError in the state stage")
    assert debug_line.exc_info is not None and debug_line.exc_info[1] is error


def test_an_error_without_a_message_says_so(caplog: pytest.LogCaptureFixture) -> None:
    _, counter = _counter()
    caplog.set_level(logging.ERROR, logger="exporter.service")
    StageGuard(counter).run("keys", _raising(RuntimeError()), 0)
    assert caplog.records[0].getMessage().startswith(
        "unexpected RuntimeError in the poll loop's keys stage: (no message); the loop goes on")

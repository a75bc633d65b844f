"""The Service's wiring, in process on a fake API and a fake clock: the loop's pause, overruns
and catch-all, a reload accepted or rejected (its metrics and lines), what a reload changes
(clients, state path, shard, pauses) and the peer document."""

from __future__ import annotations

import email.utils
import json
import logging
import socket
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from exporter.accounting.handoff import parse
from exporter.accounting.snapshot import Snapshot
from exporter.api.errors import ApiError
from exporter.config import (
    AccountingConfig,
    ApiConfig,
    BudgetConfig,
    Config,
    ConfigError,
    DiscoveryConfig,
    PollConfig,
    StateConfig,
    Target,
)
from exporter.core.usage import Reading, Totals
from exporter.polling.sharding import Shard
from exporter.polling.supervisor import STAGES
from exporter.polling.workers import WorkerPool
from exporter.service import ApiStack, Service
from exporter.simulator.buckets import BucketPolicy
from tests.fakeapi import FakeApi, SkewClock, Use

T0 = 1_700_006_400  # on the hour
H = 3600
TARGET = Target("k1", "m", "org")


def config(**changes: object) -> Config:
    base = Config(api=ApiConfig(endpoint="http://127.0.0.1:9", timeout=5, rate_limit=0),
                  poll=PollConfig(interval=60, settle=600, test_period=H), windows=(),
                  targets=(TARGET,))
    return replace(base, **changes)  # type: ignore[arg-type]


class Paused(FakeApi):
    """A fake API that refuses ``refused`` keys with a permanent error (a wrong key)."""

    def __init__(self, clock: SkewClock) -> None:
        super().__init__(clock)
        self.refused: set[str] = set()
        self.reads: list[str] = []

    def get_usage(self, target: Target, start: int, end: int, deadline: float) -> Reading:
        self.reads.append(target.key)
        if target.key in self.refused:
            self._answer()
            raise ApiError("retcode", "RetCode 171: signature invalid", retcode=171,
                           transient=False)
        return super().get_usage(target, start, end, deadline)


class World:
    """A Service on ``cfg`` and a fake API; every connect (start or new accounts) counted."""

    def __init__(self, cfg: Config, load: Callable[[], Config] | None = None,
                 shard: Shard | None = None) -> None:
        self.clock = SkewClock(T0, 0)
        self.api = Paused(self.clock)
        self.registry = CollectorRegistry()
        self.connected: list[ApiConfig] = []
        self.closed: list[WorkerPool] = []
        self.config = cfg
        self.service = Service(cfg, self.clock, self.registry, load or (lambda: self.config),
                               connect=self._connect, shard=shard)
        self.api.api_clock = self.service.api_clock

    def _connect(self, api: ApiConfig) -> ApiStack:
        self.connected.append(api)
        pool = WorkerPool(1)
        stack = ApiStack(pool, self.api, self.api)
        original = pool.close

        def close() -> None:
            self.closed.append(pool)
            original()
        pool.close = close  # type: ignore[method-assign]
        return stack

    def value(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


@pytest.fixture
def worlds() -> Iterator[list[World]]:
    made: list[World] = []
    yield made
    for world in made:
        world.service.save_state = lambda: True  # type: ignore[method-assign]
        world.service.stop()


def world(worlds: list[World], cfg: Config, **kw: object) -> World:
    made = World(cfg, **kw)  # type: ignore[arg-type]
    worlds.append(made)
    return made


class Wake:
    """Stands in for the loop's wake event: keeps each pause and stops after ``cycles``."""

    def __init__(self, service: Service, cycles: int = 1) -> None:
        self.service, self.cycles, self.pauses = service, cycles, list[float]()

    def wait(self, timeout: float) -> bool:
        self.pauses.append(timeout)
        if len(self.pauses) >= self.cycles:
            self.service.stopping.set()
        return False

    def clear(self) -> None:
        pass

    def set(self) -> None:
        pass


def run_loop(w: World, cycle: Callable[[], None], cycles: int = 1) -> list[float]:
    wake = Wake(w.service, cycles)
    w.service._wake = wake  # type: ignore[assignment]
    w.service.run_cycle = cycle  # type: ignore[method-assign]
    w.service.run()
    return wake.pauses


# --- the loop ---


def test_the_loop_says_what_it_polls_and_pauses_an_interval_after_each_start(
        worlds: list[World], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "exporter.service")
    w = world(worlds, config(poll=PollConfig(interval=60.5, settle=600, test_period=H)))
    assert run_loop(w, lambda: w.clock.advance(12.5)) == [48.0]
    assert [r.getMessage() for r in caplog.records] == ["polling 1 targets every 60.5s"]
    assert w.value("uminfer_poll_overruns_total") == 0


@pytest.mark.parametrize(("took", "overruns", "pause"), [(60.0, 0, 0.0), (61.0, 1, 0.0)])
def test_a_cycle_longer_than_the_interval_is_an_overrun(
        worlds: list[World], took: float, overruns: int, pause: float) -> None:
    w = world(worlds, config())
    assert run_loop(w, lambda: w.clock.advance(took)) == [pause]
    assert w.value("uminfer_poll_overruns_total") == overruns


def test_with_an_origin_and_the_apis_clock_the_pause_ends_on_its_next_multiple(
        worlds: list[World]) -> None:
    w = world(worlds, config(accounting=AccountingConfig(origin=T0)))
    assert run_loop(w, lambda: w.clock.advance(5)) == [55.0]  # the API's clock not known yet
    w.clock.advance(17)
    w.service.api_clock.observe(email.utils.formatdate(w.clock.api(), usegmt=True),
                                w.clock.monotonic())
    w.service.stopping.clear()
    [pause] = run_loop(w, lambda: w.clock.advance(5))
    assert pause == 60 - w.service.api_clock.now() % 60
    assert pause != 55.0
    plain = world(worlds, config())
    plain.service.api_clock.observe(email.utils.formatdate(plain.clock.api(), usegmt=True),
                                    plain.clock.monotonic())
    plain.clock.advance(17)
    assert run_loop(plain, lambda: plain.clock.advance(5)) == [55.0]  # no origin: not aligned


def test_an_error_escaping_a_cycle_is_counted_under_loop_and_the_loop_goes_on(
        worlds: list[World]) -> None:
    w = world(worlds, config())

    def broken() -> None:
        raise RuntimeError("bug")

    assert run_loop(w, broken, cycles=2) == [60.0, 60.0]
    assert w.value("uminfer_poll_errors_total", stage="loop") == 2
    assert w.service.healthy()


# --- reloads ---


def test_a_rejected_reload_keeps_the_config_and_says_why(
        worlds: list[World], caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> Config:
        raise ConfigError(["targets: required"])

    w = world(worlds, config(), load=broken)
    started = w.value("uminfer_config_last_reload_success_timestamp_seconds")
    assert started == w.clock.time()
    w.clock.advance(30)
    caplog.set_level(logging.INFO, "exporter.service")
    assert w.service.reload() == "targets: required"
    assert w.service.config is w.config
    assert w.value("uminfer_config_last_reload_successful") == 0
    assert w.value("uminfer_config_last_reload_success_timestamp_seconds") == started
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("ERROR", "config reload rejected, keeping the old config: targets: required")]


def test_an_accepted_reload_is_in_force_counted_and_said(
        worlds: list[World], caplog: pytest.LogCaptureFixture) -> None:
    w = world(worlds, config())
    w.service.run_cycle()
    w.config = config(targets=(TARGET, Target("k2", "m", "org")))
    w.clock.advance(30)
    caplog.set_level(logging.INFO, "exporter.service")
    assert w.service.reload() is None
    assert w.service.config is w.config
    assert w.value("uminfer_config_last_reload_successful") == 1
    assert w.value("uminfer_config_last_reload_success_timestamp_seconds") == w.clock.time()
    assert [r.getMessage() for r in caplog.records if r.name == "exporter.service"] == [
        "config reloaded: 2 targets"]
    assert w.connected == [w.config.api]  # the same account: the same clients


def test_a_reload_with_other_api_settings_connects_anew_and_closes_the_old(
        worlds: list[World]) -> None:
    w = world(worlds, config())
    w.config = config(api=replace(w.config.api, timeout=9))
    assert w.service.reload() is None
    assert w.connected == [config().api, w.config.api]
    assert len(w.closed) == 1


def test_a_reload_writes_the_state_where_the_new_config_says(
        worlds: list[World], tmp_path: Path) -> None:
    w = world(worlds, config(state=StateConfig(str(tmp_path / "one.json"))))
    w.service.run_cycle()
    assert (tmp_path / "one.json").exists()
    w.config = config(state=StateConfig(str(tmp_path / "two.json")))
    assert w.service.reload() is None
    assert (tmp_path / "two.json").exists()


def test_a_changed_origin_is_said(worlds: list[World],
                                  caplog: pytest.LogCaptureFixture) -> None:
    w = world(worlds, config(accounting=AccountingConfig(origin=T0)))
    caplog.set_level(logging.WARNING, "exporter.service")
    w.config = config(accounting=AccountingConfig(origin=T0 + H))
    assert w.service.reload() is None
    w.config = config(accounting=AccountingConfig(origin=T0 + H))
    assert w.service.reload() is None  # unchanged: nothing said
    assert [r.getMessage() for r in caplog.records] == [
        f"accounting.origin changed from {T0} to {T0 + H} (what that does to counters: "
        "docs/deployment.md)"]


def test_a_reload_cuts_discovered_targets_to_the_shard(worlds: list[World]) -> None:
    shard = Shard(0, 2)
    discovery = DiscoveryConfig(projects=("org",), refresh=60)
    w = world(worlds, config(targets=(), discovery=discovery), shard=shard)
    w.service.run_cycle()
    w.config = config(targets=(), discovery=replace(discovery, refresh=120))
    assert w.service.reload() is None
    polled = {t.key for t in w.service._polled.poller.targets}
    assert polled == {k for k in ("d1", "d2", "d3")
                      if shard.owns(Target(k, "m", "org"))}
    assert polled  # the shard owns some: the cut is seen
    shown = w.service.cache.shown().discovery  # what the reload published
    assert shown is not None and (shown.keys, shown.targets) == (3, 3)  # all found, then cut


def test_only_a_reload_lifts_the_pause_of_a_permanent_error(worlds: list[World]) -> None:
    w = world(worlds, config())
    w.api.refused.add(TARGET.key)
    w.service.run_cycle()
    assert w.api.reads == [TARGET.key]
    w.api.refused.clear()  # the operator fixed the key
    w.clock.advance(60)
    w.service.run_cycle()
    assert w.api.reads == [TARGET.key]  # paused: not read again at once
    assert w.service.reload() is None  # the same config: the pause ends
    w.clock.advance(60)
    w.service.run_cycle()
    assert w.api.reads[1:] == [TARGET.key]


# --- the peer document ---


def test_the_peer_document_is_this_configs(worlds: list[World]) -> None:
    w = world(worlds, config(accounting=AccountingConfig(origin=T0)))
    for _ in range(4):
        w.service.run_cycle()
        w.clock.advance(60)
    doc = parse(w.service.ledger_document())
    assert (doc.terms.origin, doc.terms.settle) == (T0, 600)
    assert list(doc.ledgers) == [TARGET.ident]


# --- the cycle's stages ---


def _boom(*_args: Any, **_kwargs: Any) -> Any:
    raise RuntimeError("bug")


class Recorder:
    """Stands in for one call of the cycle: records that it ran, and raises when told to."""

    def __init__(self, result: object = None, fail: bool = False) -> None:
        self.result, self.fail, self.calls = result, fail, 0
        self.args: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        self.args.append((args, kwargs))
        if self.fail:
            raise RuntimeError("bug")
        return self.result


CALLS = ("ask", "take", "rebase", "discovery", "keys", "poll", "cost", "state", "publish",
         "hold")
# a peer's ledgers are taken, and loaded ledgers rebased (before and after the poll), in the
# clock stage; a snapshot held (state not saved) is published
STAGE_OF = {"ask": "clock", "take": "clock", "rebase": "clock", "hold": "publish"}


def stages(w: World, failing: str) -> dict[str, Recorder]:
    """Every stage of ``w``'s cycle replaced by a recorder; ``failing`` raises."""
    s = w.service
    poller, snapshot = s._polled.poller, s._polled.poller.snapshot()
    fetched = object()
    calls = {"ask": Recorder((fetched, w.config)), "take": Recorder(),
             "discovery": Recorder(), "keys": Recorder(), "poll": Recorder(snapshot),
             "cost": Recorder(snapshot), "state": Recorder(failing != "hold"),
             "publish": Recorder(), "rebase": Recorder(), "hold": Recorder()}
    for name, recorder in calls.items():
        recorder.fail = name == failing
    s._startup.ask = calls["ask"]  # type: ignore[method-assign]
    s._pairing.take = calls["take"]  # type: ignore[method-assign]
    s._polled.discover = calls["discovery"]  # type: ignore[method-assign]
    s._accounts.refresh_keys = calls["keys"]  # type: ignore[method-assign]
    poller.cycle = calls["poll"]  # type: ignore[method-assign]
    s._priced = calls["cost"]  # type: ignore[method-assign]
    s.save_state = calls["state"]  # type: ignore[method-assign]
    s.cache.publish = calls["publish"]  # type: ignore[method-assign]
    s._startup.rebase = calls["rebase"]  # type: ignore[method-assign]
    s.cache.hold = calls["hold"]  # type: ignore[method-assign]
    return calls


@pytest.mark.parametrize("failing", CALLS)
def test_a_failing_stage_is_counted_under_its_name_and_the_rest_still_run(
        worlds: list[World], failing: str) -> None:
    # Under one of STAGES, each exported at 0 from the start: a label of its own would
    # appear at 1, and increase() (UminferPollLoopErrors) would never see that first error.
    w = world(worlds, config())
    calls = stages(w, failing)
    w.service.run_cycle()
    counted = {stage: w.value("uminfer_poll_errors_total", stage=stage) for stage in STAGES}
    times = 2 if failing == "rebase" else 1  # before and after the poll
    assert counted == {stage: float(times * (stage == STAGE_OF.get(failing, failing)))
                       for stage in STAGES}
    ran = {name for name, recorder in calls.items() if recorder.calls}
    skipped = {"ask": {"take", "hold"},  # nothing fetched: nothing to take
               "poll": {"cost", "state", "publish", "hold"},  # nothing polled: nothing more
               "state": {"publish"}, "hold": {"publish"}}  # not saved: held, not published
    assert ran == set(CALLS) - skipped.get(failing, {"hold"})


def test_each_stage_is_handed_what_is_in_force(worlds: list[World]) -> None:
    w = world(worlds, config())
    calls = stages(w, "")
    s = w.service
    poller = s._polled.poller
    w.service.run_cycle()
    [(ask, _)] = calls["ask"].args
    assert ask[:4] == (s._api.client, poller, w.config, s._pairing)
    assert ask[4] == w.clock.monotonic() + w.config.longest_timeout()  # the deadline
    [(take_args, take)] = calls["take"].args
    assert take_args == calls["ask"].result
    assert (take["config"], take["poller"], take["seeding"]) == (w.config, poller,
                                                                 s._cost.seeding)
    assert take["grid_of"](TARGET.ident) == w.config.grid("")
    [(first, _), (second, _)] = calls["rebase"].args
    assert first[:2] == second[:2] == (w.config, poller)
    first[2](5)  # what a rebase skips is counted
    assert w.value("uminfer_backfill_skipped_seconds_total") == 5


def test_a_cycles_duration_is_its_poll_to_its_publish(worlds: list[World]) -> None:
    w = world(worlds, config())
    calls = stages(w, "")
    snapshot = calls["poll"].result
    calls["poll"].result = None

    def slow_poll() -> object:
        w.clock.advance(7)
        return snapshot
    w.service._polled.poller.cycle = slow_poll  # type: ignore[assignment]
    w.service.run_cycle()
    assert w.value("uminfer_poll_duration_seconds_sum") == 7


def test_stop_says_whether_the_state_was_saved(worlds: list[World], tmp_path: Path) -> None:
    saved = World(config(state=StateConfig(str(tmp_path / "state.json"))))
    assert saved.service.stop() is True
    failed = World(config(state=StateConfig(str(tmp_path / "missing" / "state.json"))))
    failed.service.run_cycle()
    assert failed.service.stop() is False


def test_without_the_cost_stage_the_counters_are_still_published(worlds: list[World]) -> None:
    w = world(worlds, config())
    w.service._priced = _boom  # type: ignore[method-assign]
    w.service.run_cycle()
    assert w.service.cache.shown().targets[0].target == TARGET
    assert w.value("uminfer_poll_errors_total", stage="cost") == 1


def test_a_failing_state_stage_holds_what_was_published(worlds: list[World]) -> None:
    w = world(worlds, config())
    w.service.save_state = _boom  # type: ignore[method-assign]
    held: list[Snapshot] = []
    w.service.cache.hold = held.append  # type: ignore[assignment]
    w.service.run_cycle()
    [snapshot] = held
    assert [t.target for t in snapshot.targets] == [TARGET]  # this cycle's, health and all
    assert not w.service.ready.is_set()


def test_each_state_write_is_counted_by_outcome(worlds: list[World], tmp_path: Path) -> None:
    w = world(worlds, config(state=StateConfig(str(tmp_path / "state.json"))))
    w.clock.advance(30)
    assert w.service.save_state()
    assert w.value("uminfer_state_writes_total", outcome="success") == 1
    assert w.value("uminfer_state_last_write_success_timestamp_seconds") == w.clock.time()
    (tmp_path / "state.json").unlink()
    (tmp_path / "state.json").mkdir()  # a directory in its place: the write fails
    w.clock.advance(30)
    assert not w.service.save_state()
    assert w.value("uminfer_state_writes_total", outcome="error") == 1
    assert w.value("uminfer_state_last_write_success_timestamp_seconds") == w.clock.time() - 30


def test_ready_once_no_target_waits_for_its_baseline_or_from_the_third_cycle(
        worlds: list[World]) -> None:
    w = world(worlds, config())
    w.service._polled.poller.awaiting_baseline = lambda: True  # type: ignore[method-assign]
    for _ in range(2):
        w.service.run_cycle()
    assert not w.service.ready.is_set()
    w.service.run_cycle()
    assert w.service.ready.is_set()
    at_once = world(worlds, config())
    at_once.service._polled.poller.awaiting_baseline = lambda: False  # type: ignore[method-assign]
    at_once.service.run_cycle()
    assert at_once.service.ready.is_set()


def test_the_bucket_meter_reports_to_the_services_metrics(worlds: list[World]) -> None:
    w = world(worlds, config())
    w.service.buckets.additivity_error(TARGET.ident, Totals(tokens=5))
    assert w.value("uminfer_api_additivity_errors_total") == 1


def test_the_default_stack_retries_a_refused_call_with_jittered_backoff() -> None:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]  # closed again below: nothing listens there
    clock = SkewClock(T0, 0)
    cfg = config(api=ApiConfig(endpoint=f"http://127.0.0.1:{port}", public_key="p",
                               private_key="s", timeout=2, rate_limit=0))
    service = Service(cfg, clock, CollectorRegistry(), lambda: cfg)  # the real client
    try:
        began = clock.monotonic()
        with pytest.raises(ApiError) as caught:
            service._api.client.get_usage(TARGET, T0, T0 + 59, began + 30)
    finally:
        service.stop()
    assert caught.value.category == "network"
    assert clock.monotonic() > began + 1  # it waited between attempts


def test_a_restart_keeps_when_each_parked_ledger_was_parked(tmp_path: Path) -> None:
    state = StateConfig(str(tmp_path / "state.json"))
    other = Target("k2", "m", "org")
    first = World(config(state=state, targets=(TARGET, other)))
    first.service.run_cycle()
    first.clock.advance(600)  # parked later than the next start's clock reads at its load
    first.config = config(state=state)
    assert first.service.reload() is None  # k2 parked now
    parked_at = int(first.service.api_clock.now())
    assert first.service.stop()
    second = World(config(state=state))
    assert second.service.stop()
    saved = json.loads((tmp_path / "state.json").read_text())
    assert {ident: entry.get("parked_at") for ident, entry in saved["targets"].items()} == {
        TARGET.ident: None, other.ident: parked_at}


def test_the_api_bucket_gauge_shows_what_the_pollers_answers_told(worlds: list[World]) -> None:
    w = world(worlds, config())
    w.api.buckets = BucketPolicy(60)
    for ts in range(T0 - H, T0 + 10 * 60, 97):
        w.api.uses.setdefault(TARGET.ident, []).append(Use(ts, ts, 5))
    for _ in range(10):
        w.service.run_cycle()
        w.clock.advance(60)
    assert w.value("uminfer_api_bucket_seconds") == 60


def test_the_seeding_gauge_counts_the_pollers_new_targets(worlds: list[World]) -> None:
    w = world(worlds, config(budgets=(BudgetConfig("d", "daily", tokens=10),)))
    assert w.value("uminfer_budget_seeding_targets") == 0
    w.service.run_cycle()
    assert w.value("uminfer_budget_seeding_targets") == 1  # its new ledger's seed is due

"""The landing page's "Now" paragraphs in process: each sentence an operator reads, built from a
hand-made snapshot, poll status and self-metrics (the real process: tests/e2e/test_landing.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge

from exporter.accounting.snapshot import Snapshot, TargetSnapshot
from exporter.config import Config, Target
from exporter.metrics.exposition import ExpositionCache
from exporter.web.landing import SHOWN_DOWN, Landing
from tests.configs import parsed

NOT_YET = ("<p>Counting has not begun: it begins at the first answer of the API "
           "(uminfer_up is 0 until then).</p>")
NO_BUCKETS = "<p>The API's time buckets are not measured yet (they are, from its answers).</p>"
NO_STATE = "<p>No state file (state.path): counters start at zero at every start.</p>"


class Shown(ExpositionCache):
    """An exposition cache that shows a given snapshot (nothing is rendered)."""

    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__()
        self._snapshot = snapshot

    def shown(self) -> Snapshot:
        return self._snapshot


@dataclass
class Status:
    """Poll status: fixed reasons and start of counting; records what it was asked."""

    why: dict[str, str] = field(default_factory=dict)
    since: int | None = None
    asked: list[set[str]] = field(default_factory=list)

    def reasons(self) -> dict[str, str]:
        return self.why

    def counting_since(self, targets: set[str]) -> int | None:
        self.asked.append(targets)
        return self.since


def target(key: str, up: bool) -> TargetSnapshot:
    return TargetSnapshot(Target(key, "m", "p"), up=up)


EMPTY = Snapshot()


def now(snapshot: Snapshot = EMPTY, status: Status | None = None,
        registry: CollectorRegistry | None = None, config: Config | None = None) -> str:
    chosen = config or parsed(poll={"interval": "1500ms"})
    landing = Landing(Shown(snapshot), lambda: status or Status(),
                      registry or CollectorRegistry(), lambda: chosen)
    return landing.now()


def test_before_the_first_cycle_every_sentence_says_not_yet() -> None:
    assert now() == ("<p>Polling 1 targets every 1.5 s: the first poll cycle has not "
                     "finished yet.</p>" + NOT_YET + NO_BUCKETS + NO_STATE)


def test_all_up_is_counted_without_a_list() -> None:
    page = now(Snapshot((target("a", True), target("b", True))))
    assert page.startswith("<p>Polling 2 targets every 1.5 s: 2 up, 0 down.</p>" + NOT_YET)


def test_each_down_target_is_named_with_its_reason_escaped() -> None:
    status = Status({"p/b/m": "refused <403> & more"})
    page = now(Snapshot((target("a", True), target("b", False), target("c", False))), status)
    assert page.startswith("<p>Polling 3 targets every 1.5 s: 1 up, 2 down.</p>"
                           "<ul><li>p/b/m: refused &lt;403&gt; &amp; more</li>"
                           "<li>p/c/m: failing</li></ul>" + NOT_YET)


def test_past_the_shown_down_targets_the_rest_are_counted() -> None:
    down = [target(f"k{i:02}", False) for i in range(SHOWN_DOWN + 2)]
    page = now(Snapshot(tuple(down)))
    assert SHOWN_DOWN == 20
    assert page.count("<li>") == SHOWN_DOWN + 1
    assert f"<li>p/k{SHOWN_DOWN - 1:02}/m: failing</li><li>and 2 more</li></ul>" in page
    assert f"p/k{SHOWN_DOWN:02}/m" not in page


def test_exactly_the_shown_down_targets_need_no_more() -> None:
    page = now(Snapshot(tuple(target(f"k{i:02}", False) for i in range(SHOWN_DOWN))))
    assert page.count("<li>") == SHOWN_DOWN
    assert "more</li>" not in page
    assert f"<li>p/k{SHOWN_DOWN - 1:02}/m: failing</li></ul>" in page


def test_counting_since_is_a_utc_time_of_the_shown_targets() -> None:
    status = Status(since=1_700_000_000)
    page = now(Snapshot((target("a", True), target("b", False))), status)
    assert status.asked == [{"p/a/m", "p/b/m"}]
    assert ("<p>Counting since 2023-11-14 22:13:20 UTC: the counters (uminfer_*_total) hold the "
            "usage since then; the window gauges (uminfer_window_*) hold whole trailing "
            "windows, usage from before that included, so they may be far larger.</p>") in page


def gauges(**values: float) -> CollectorRegistry:
    registry = CollectorRegistry()
    for name, value in values.items():
        Gauge(name, "A self-metric.", registry=registry).set(value)
    return registry


def test_buckets_and_counting_periods() -> None:
    assert "<p>The API's time buckets are 3600 s.</p>" in now(
        registry=gauges(uminfer_api_bucket_seconds=3600))
    assert "<p>The API's time buckets are 60 s; counting runs on periods of 300 s.</p>" in now(
        registry=gauges(uminfer_api_bucket_seconds=60, uminfer_accounting_period_seconds=300))
    assert "<p>The API's time buckets are 60 s.</p>" in now(
        registry=gauges(uminfer_api_bucket_seconds=60,
                        uminfer_accounting_period_seconds=float("nan")))
    assert NO_BUCKETS in now(registry=gauges(uminfer_api_bucket_seconds=float("nan"),
                                             uminfer_accounting_period_seconds=300))


def test_budget_seeding_is_told_only_while_it_runs() -> None:
    assert "seeding" not in now(registry=gauges(uminfer_budget_seeding_targets=0))
    assert ("<p>Budget seeding in progress: 3 targets' usage from their budgets' period start is "
            "still being read; their budgets show less until it is done.</p>") in now(
        registry=gauges(uminfer_budget_seeding_targets=3))


def state_registry(saved: float | None, failed: int) -> CollectorRegistry:
    registry = gauges() if saved is None else \
        gauges(uminfer_state_last_write_success_timestamp_seconds=saved)
    writes = Counter("uminfer_state_writes", "Writes.", ["outcome"], registry=registry)
    writes.labels("success").inc(5)
    if failed:
        writes.labels("error").inc(failed)
    return registry


def test_the_state_file_is_named_escaped_with_when_it_was_saved() -> None:
    config = parsed(state={"path": "/var/lib/<u>&s.json"})
    assert now(registry=state_registry(1_700_000_000, 0), config=config).endswith(
        "<p>State file /var/lib/&lt;u&gt;&amp;s.json: saved at 2023-11-14 22:13:20 UTC.</p>")
    assert now(registry=state_registry(None, 0), config=config).endswith(
        "<p>State file /var/lib/&lt;u&gt;&amp;s.json: not saved yet.</p>")


def test_failed_state_writes_are_counted_and_the_alert_named() -> None:
    config = parsed(state={"path": "/s.json"})
    assert now(registry=state_registry(None, 2), config=config).endswith(
        "<p>State file /s.json: not saved yet. 2 writes failed since the start; while it cannot "
        "be written, /metrics holds the counted numbers (the alert UminferStateNotSaved).</p>")


def test_times_are_utc_whatever_the_hosts_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Kolkata")  # +05:30, no summer time
    time.tzset()
    try:
        page = now(Snapshot((target("a", True),)), Status(since=1_700_000_000))
    finally:
        monkeypatch.undo()
        time.tzset()
    assert "<p>Counting since 2023-11-14 22:13:20 UTC:" in page

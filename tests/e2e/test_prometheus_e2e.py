"""End to end through a real Prometheus: every CONTRACT metric arrives, counters equal the truth."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from exporter.core.clock import SystemClock
from exporter.core.usage import Totals
from exporter.simulator import EventStore, SimulatorServer
from tests.fleet import SECOND_BUCKETS
from tests.harness import Exporter, wait_for
from tests.prom import Prometheus, Result, scraped_exporter, values
from tests.tools import require_tool

pytestmark = pytest.mark.e2e

PUBLIC, PRIVATE = "e2e-public", "e2e-private"  # test credentials of the loopback simulator
CHAT = {"project": "org-e2e", "key": "uminferapikey-e2e-chat", "model": "deepseek-ai/DeepSeek-V3"}
IMAGE = {"project": "", "key": "uminferapikey-e2e-image", "model": "black-forest-labs/FLUX.1"}
BROKEN = {"project": "org-e2e", "key": "uminferapikey-e2e-denied", "model": "Qwen/Qwen3-8B"}
COUNTERS = {name: f"uminfer_{name}_total" for name in Totals.NAMES}
WINDOWS = {name: f"uminfer_window_{name}" for name in Totals.NAMES}
DEADLINE = 30.0


def admin(simulator: SimulatorServer, method: str, path: str, body: Any = None,
          **params: str) -> Any:
    """Call the simulator's admin API."""
    response = requests.request(method, f"{simulator.url}_sim/{path}", json=body, params=params,
                                timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


@dataclass
class Stack:
    """The simulator (no traffic of its own), the exporter polling it, Prometheus scraping it."""

    simulator: SimulatorServer
    exporter: Exporter
    prometheus: Prometheus
    started: int  # a Unix second at which the exporter was already counting

    def inject(self, target: dict[str, str], *usage: dict[str, int]) -> None:
        """Add usage events (ts, delay, counts) for ``target``."""
        admin(self.simulator, "POST", "usage", [{**target, **event} for event in usage])

    def truth(self, target: dict[str, str]) -> dict[str, int]:
        """All usage the API holds for ``target`` since ``started``, once all of it is visible."""
        answer: dict[str, Any] = {}

        def settled() -> bool:
            answer.update(admin(self.simulator, "GET", "truth", start=str(self.started),
                                end=str(int(time.time()) + 60), **target))
            return bool(answer["visible"] == answer["total"])

        wait_for(settled, DEADLINE, f"all usage of {target['key']} to be visible")
        total: dict[str, int] = answer["total"]
        return total


def exporter_config(endpoint: str, state: Path) -> dict[str, Any]:
    """Poll every second, settle after 5 s, windows refreshed every poll."""
    def target(spec: dict[str, str], **labels: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"key": spec["key"], "model": spec["model"]}
        entry |= {"project": spec["project"]} if spec["project"] else {}
        return entry | ({"labels": labels} if labels else {})
    return {
        "api": {"endpoint": endpoint, "public_key": PUBLIC, "private_key": PRIVATE,
                "timeout": "2s", "rate_limit": 0},
        "poll": {"interval": "1s", "settle": "5s", "test_period": "60s"},
        "advanced": {"window_interval": "1s"},
        "state": {"path": str(state)},
        "windows": ["1h", "24h"],
        "targets": [target(CHAT, team="search"), target(IMAGE), target(BROKEN)],
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One shared stack for the module: starting Prometheus is the slow part."""
    workdir = tmp_path_factory.mktemp("prometheus-e2e")
    with SimulatorServer(EventStore(), {PUBLIC: PRIVATE}, SystemClock(),
                         buckets=SECOND_BUCKETS) as simulator:
        # IAM denies the third key: a permanent RetCode, so it is down from the first poll.
        admin(simulator, "POST", "faults", {"kind": "retcode", "retcode": 299,
                                            "key": BROKEN["key"]})
        config = exporter_config(simulator.url, workdir / "state.json")
        with scraped_exporter(workdir, config) as (exporter, prometheus, started):
            yield Stack(simulator, exporter, prometheus, started)


def series_labels(prometheus: Prometheus, metric: str) -> list[dict[str, str]]:
    """Label sets of ``metric`` in Prometheus, without the scrape's job and instance."""
    found = prometheus.series(metric)
    return [{k: v for k, v in s.items() if k not in ("__name__", "job", "instance")}
            for s in found]


def target_labels(spec: dict[str, str], **extra: str) -> dict[str, str]:
    """The labels Prometheus stores; an empty project_id is no label at all."""
    labels = {"key_id": spec["key"], "model": spec["model"], **extra}
    return labels | ({"project_id": spec["project"]} if spec["project"] else {})


def test_every_contract_metric_arrives_with_its_labels(stack: Stack) -> None:
    prom = stack.prometheus
    prom.wait_query("uminfer_window_tokens", DEADLINE)
    chat, image = target_labels(CHAT, team="search"), target_labels(IMAGE)
    broken = target_labels(BROKEN)
    for metric in (*COUNTERS.values(), "uminfer_up", "uminfer_revisions_total",
                   "uminfer_late_tokens_after_settle_total"):
        assert sorted(map(sorted_items, series_labels(prom, metric))) == \
            sorted(map(sorted_items, [chat, image, broken])), metric
    for metric in ("uminfer_last_success_timestamp_seconds", "uminfer_settled_timestamp_seconds",
                   "uminfer_window_timestamp_seconds"):
        assert chat in series_labels(prom, metric), metric
    for metric in WINDOWS.values():
        found = series_labels(prom, metric)
        for window in ("1h", "24h"):
            assert chat | {"window": window} in found, metric
            assert image | {"window": window} in found, metric
    build = series_labels(prom, "uminfer_exporter_build_info")
    assert {"version", "python_version"} <= set(build[0])
    assert {"outcome", "retcode"} <= set(series_labels(prom, "uminfer_api_requests_total")[0])
    for metric in ("uminfer_api_request_duration_seconds_bucket",
                   "uminfer_poll_duration_seconds_bucket", "uminfer_poll_overruns_total",
                   "uminfer_targets", "uminfer_api_rate_limit_requests_per_second",
                   "uminfer_backfill_skipped_seconds_total", "uminfer_state_writes_total",
                   "uminfer_config_last_reload_successful",
                   "uminfer_config_last_reload_success_timestamp_seconds"):
        assert prom.series(metric), metric
    assert values(prom.query("uminfer_targets")) != {}
    assert list(values(prom.query("uminfer_targets")).values()) == [3]


def sorted_items(labels: dict[str, str]) -> list[tuple[str, str]]:
    """A label set in a comparable form."""
    return sorted(labels.items())


def is_only(want: float) -> Callable[[Result], bool]:
    """A check that a query returned exactly one series, with value ``want``."""
    return lambda result: list(values(result).values()) == [want]


def wait_for_totals(stack: Stack, spec: dict[str, str], names: dict[str, str],
                    expected: dict[str, int], **extra: str) -> None:
    """Wait until every metric in ``names`` shows ``expected`` for the target in Prometheus."""
    selector = ", ".join(f'{k}="{v}"' for k, v in {"key_id": spec["key"], **extra}.items())
    for field, metric in names.items():
        want = float(expected[field])
        result = stack.prometheus.wait_query(f"{metric}{{{selector}}}", DEADLINE, is_only(want))
        assert list(values(result).values()) == [want]


def test_counters_and_windows_equal_the_simulators_ground_truth(stack: Stack) -> None:
    now = int(time.time())
    stack.inject(CHAT, {"ts": now, "input_tokens": 1200, "output_tokens": 300, "requests": 7},
                 {"ts": now, "input_tokens": 5, "output_tokens": 1, "requests": 1})
    first = stack.truth(CHAT)
    assert first["tokens"] == 1506  # the simulator holds exactly what was injected
    wait_for_totals(stack, CHAT, COUNTERS, first)
    # More usage, part of it late (visible 3 s after its time, inside settle): counted once.
    now = int(time.time())
    stack.inject(CHAT, {"ts": now, "delay": 3, "input_tokens": 400, "output_tokens": 90,
                        "requests": 2},
                 {"ts": now, "input_tokens": 10, "output_tokens": 10, "requests": 1})
    second = stack.truth(CHAT)  # waits until the late event is visible
    assert second["tokens"] == first["tokens"] + 510
    wait_for_totals(stack, CHAT, COUNTERS, second)
    for window in ("1h", "24h"):  # all of it is recent, so both windows hold all of it
        wait_for_totals(stack, CHAT, WINDOWS, second, window=window)


def test_default_project_image_target_equals_ground_truth(stack: Stack) -> None:
    now = int(time.time())
    stack.inject(IMAGE, {"ts": now, "input_tokens": 60, "requests": 2, "image_generations": 3},
                 {"ts": now, "input_tokens": 30, "requests": 1, "image_generations": 1})
    truth = stack.truth(IMAGE)
    assert (truth["image_generations"], truth["output_tokens"]) == (4, 0)
    wait_for_totals(stack, IMAGE, COUNTERS, truth)
    wait_for_totals(stack, IMAGE, WINDOWS, truth, window="24h")


def test_denied_target_is_down_with_its_reason(stack: Stack) -> None:
    prom = stack.prometheus
    down = prom.wait_query(f'uminfer_up{{key_id="{BROKEN["key"]}"}}', DEADLINE)
    assert list(values(down).values()) == [0]
    failures = prom.wait_query(f'uminfer_target_failures_total{{key_id="{BROKEN["key"]}"}} > 0',
                               DEADLINE)
    assert {dict(labels)["reason"] for labels in values(failures)} == {"retcode"}
    assert min(values(failures).values()) >= 1
    calls = values(prom.wait_query('uminfer_api_requests_total{retcode="299"}', DEADLINE))
    assert [dict(labels)["outcome"] for labels in calls] == ["retcode"]
    assert values(prom.query(f'uminfer_tokens_total{{key_id="{BROKEN["key"]}"}}')) != {}


def live_metrics(stack: Stack) -> str:
    """The exporter's /metrics as Prometheus scrapes it."""
    response = requests.get(f"{stack.exporter.url}/metrics", timeout=5)
    response.raise_for_status()
    return response.text


def test_live_metrics_pass_promtool_check_metrics(stack: Stack) -> None:
    text = live_metrics(stack)
    assert "uminfer_target_failures_total{" in text  # the failure families are in the sample
    result = subprocess.run([require_tool("promtool"), "check", "metrics"], input=text,
                            capture_output=True, text=True, timeout=30, check=False)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_help_texts_are_sentences_that_name_their_unit(stack: Stack) -> None:
    for family in text_string_to_metric_families(live_metrics(stack)):
        help_text = family.documentation
        assert help_text[:1].isupper(), family.name
        assert help_text.endswith("."), family.name
        if family.name.endswith("_seconds"):
            assert "second" in help_text.lower(), family.name

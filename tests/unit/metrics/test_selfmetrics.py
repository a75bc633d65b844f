"""The exporter's own metrics: names, HELP texts, buckets and the series known from the start
(a golden file), and what each recording method adds."""

from __future__ import annotations

import math
import platform
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from exporter import __version__
from exporter.metrics.selfmetrics import SelfMetrics
from tests.paths import TESTS

GOLDEN = TESTS / "golden" / "selfmetrics.txt"


def exposition(registry: CollectorRegistry) -> str:
    """The registry as /metrics shows it: without ``*_created`` (cli disables them), the build
    info's versions spelt as placeholders (they change with every release)."""
    text = generate_latest(registry).decode()
    build = f'python_version="{platform.python_version()}",version="{__version__}"'
    assert build in text
    text = text.replace(build, 'python_version="PYTHON",version="VERSION"')
    return "".join(line + "\n" for line in text.splitlines() if "_created" not in line)


def test_a_fresh_registry_matches_the_golden_file() -> None:
    # What an operator reads (names, HELP, buckets) and the series exported from 0 so that
    # increase() and alerts see the first event.
    registry = CollectorRegistry()
    SelfMetrics(registry)
    assert exposition(registry) == GOLDEN.read_text()


def test_self_metrics_register_into_the_registry_given_only() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    SelfMetrics(first)
    metrics = SelfMetrics(second)  # a second registry: no duplicate names
    assert metrics.registry is second
    metrics.observe_call("success", "0", 0.2)
    assert first.get_sample_value("uminfer_api_requests_total",
                                  {"outcome": "success", "retcode": "0"}) == 0


def test_a_call_counts_by_outcome_and_retcode_and_its_duration_in_its_bucket() -> None:
    registry = CollectorRegistry()
    metrics = SelfMetrics(registry)
    metrics.observe_call("retcode", "171", 0.3)
    metrics.observe_call("retcode", "171", 0.05)
    metrics.observe_call("success", "0", 7.0)
    value = registry.get_sample_value
    assert value("uminfer_api_requests_total", {"outcome": "retcode", "retcode": "171"}) == 2
    assert value("uminfer_api_requests_total", {"outcome": "success", "retcode": "0"}) == 1
    assert value("uminfer_api_request_duration_seconds_count") == 3
    assert value("uminfer_api_request_duration_seconds_sum") == 7.35
    assert value("uminfer_api_request_duration_seconds_bucket", {"le": "0.05"}) == 1
    assert value("uminfer_api_request_duration_seconds_bucket", {"le": "0.25"}) == 1
    assert value("uminfer_api_request_duration_seconds_bucket", {"le": "0.5"}) == 2
    assert value("uminfer_api_request_duration_seconds_bucket", {"le": "5.0"}) == 2
    assert value("uminfer_api_request_duration_seconds_bucket", {"le": "10.0"}) == 3


def test_additivity_errors_count_once_each_and_sum_their_excess() -> None:
    registry = CollectorRegistry()
    metrics = SelfMetrics(registry)
    metrics.additivity_error(40)
    metrics.additivity_error(2)
    assert registry.get_sample_value("uminfer_api_additivity_errors_total") == 2
    assert registry.get_sample_value("uminfer_api_additivity_excess_tokens_total") == 42


def test_each_off_grid_label_counts_one() -> None:
    registry = CollectorRegistry()
    metrics = SelfMetrics(registry)
    metrics.off_grid()
    metrics.off_grid()
    assert registry.get_sample_value("uminfer_api_labels_off_grid_total") == 2


def test_a_reload_sets_success_and_only_a_good_one_its_time() -> None:
    registry = CollectorRegistry()
    metrics = SelfMetrics(registry)
    value = registry.get_sample_value
    metrics.reloaded(False, 1_700_000_000.0)  # rejected before any success: no time yet
    assert value("uminfer_config_last_reload_successful") == 0
    assert value("uminfer_config_last_reload_success_timestamp_seconds") == 0
    metrics.reloaded(True, 1_700_000_100.0)
    assert value("uminfer_config_last_reload_successful") == 1
    assert value("uminfer_config_last_reload_success_timestamp_seconds") == 1_700_000_100.0
    metrics.reloaded(False, 1_700_000_200.0)
    assert value("uminfer_config_last_reload_successful") == 0
    assert value("uminfer_config_last_reload_success_timestamp_seconds") == 1_700_000_100.0


def test_watched_gauges_read_each_source_at_scrape_time() -> None:
    registry = CollectorRegistry()
    metrics = SelfMetrics(registry)
    source: dict[str, Any] = {
        "offset": None, "bucket": None, "rate": 2.5, "seeding": 3, "targets": 7}
    metrics.watch(clock_offset=lambda: source["offset"],
                  bucket=lambda: source["bucket"], rate=lambda: source["rate"],
                  seeding=lambda: source["seeding"], targets=lambda: source["targets"])

    def value(name: str) -> float:
        got = registry.get_sample_value(name)
        assert got is not None, name
        return got

    assert math.isnan(value("uminfer_api_clock_offset_seconds"))  # no answer yet
    assert math.isnan(value("uminfer_api_bucket_seconds"))  # no bucket fits yet
    assert value("uminfer_api_rate_limit_requests_per_second") == 2.5
    assert value("uminfer_budget_seeding_targets") == 3
    assert value("uminfer_targets") == 7
    source.update(offset=-1.5, bucket=3600, rate=0.5, seeding=0, targets=9)
    assert value("uminfer_api_clock_offset_seconds") == -1.5
    assert value("uminfer_api_bucket_seconds") == 3600
    assert value("uminfer_api_rate_limit_requests_per_second") == 0.5
    assert value("uminfer_budget_seeding_targets") == 0
    assert value("uminfer_targets") == 9
    source.update(offset=0.0, bucket=0)
    assert value("uminfer_api_clock_offset_seconds") == 0.0  # known, and exactly 0: not NaN
    assert math.isnan(value("uminfer_api_bucket_seconds"))  # 0: none fits


def test_poll_loop_errors_are_counted_by_stage() -> None:
    # Rules and the dashboard read the stage label (README: the poll loop's stages).
    registry = CollectorRegistry()
    metrics = SelfMetrics(registry)
    metrics.poll_errors.labels("publish").inc()
    assert registry.get_sample_value("uminfer_poll_errors_total", {"stage": "publish"}) == 1

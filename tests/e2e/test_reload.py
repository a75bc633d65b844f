"""Hot reload on POST /-/reload and SIGHUP: validated first, applied whole, counters kept."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import requests
from prometheus_client import CollectorRegistry

from exporter.config import Config, parse_config
from exporter.core.clock import SystemClock
from exporter.core.usage import Totals
from exporter.service import Service
from exporter.simulator import Fault, FaultKind
from tests import fleet
from tests.harness import Series, wait_for

pytestmark = pytest.mark.e2e

KEEP, GONE, NEW = "k-keep", "k-gone", "k-new"
USAGE = Totals(40, 10, 50, 2, 0)
OK = "uminfer_config_last_reload_successful"
STAMP = "uminfer_config_last_reload_success_timestamp_seconds"


def _global(samples: dict[Series, float], name: str) -> float | None:
    return samples.get((name, frozenset()))


def test_post_reload_applies_before_answering_and_keeps_what_stays(tmp_path: Path) -> None:
    with fleet.simulator() as sim:
        # One permanent failure before the first success: a failure counter to carry over.
        sim.faults.add(Fault(FaultKind.RETCODE, retcode=299), key=KEEP, times=1)
        with fleet.exporter(tmp_path, fleet.fleet_config(sim.url, [KEEP, GONE])) as child:
            # Counting begins at each target's first successful poll: use after it.
            wait_for(lambda: all(fleet.value(child.metrics(), "uminfer_up", key) == 1
                                 for key in (KEEP, GONE)), 10, "both targets up")
            for key in (KEEP, GONE):
                fleet.add_usage(sim, key, USAGE)
            wait_for(lambda: fleet.counters(child.metrics(), KEEP) == USAGE
                     and fleet.counters(child.metrics(), GONE) == USAGE, 10, "baseline counted")
            before = child.metrics()
            assert fleet.value(before, "uminfer_target_failures_total", KEEP,
                               reason="retcode") == 1

            child.write_config(fleet.fleet_config(sim.url, [KEEP, NEW]))
            answer = requests.post(f"{child.url}/-/reload", timeout=10)
            assert (answer.status_code, answer.text) == (200, "config reloaded\n")
            now = child.metrics()  # no waiting: the reload answered after applying
            assert fleet.counters(now, GONE) is None
            assert not any(("key_id", GONE) in labels for _, labels in now)
            assert fleet.counters(now, NEW) == Totals()
            assert fleet.counters(now, KEEP) == USAGE
            assert fleet.value(now, "uminfer_target_failures_total", KEEP, reason="retcode") == 1
            assert fleet.value(now, "uminfer_up", KEEP) == 1
            assert _global(now, OK) == 1
            assert (_global(now, STAMP) or 0) > (_global(before, STAMP) or 0)
            assert _global(now, "uminfer_targets") == 2

            # The new target begins counting at its first successful poll: use after it (else
            # the usage is in its baseline, usage from before counting began).
            wait_for(lambda: fleet.value(child.metrics(), "uminfer_up", NEW) == 1, 10,
                     "the new target up")
            fleet.add_usage(sim, NEW, USAGE)
            fleet.add_usage(sim, KEEP, USAGE)
            wait_for(lambda: fleet.counters(child.metrics(), NEW) == USAGE
                     and fleet.counters(child.metrics(), KEEP) == USAGE + USAGE, 10,
                     "the new target counted from zero, the kept one continuing")

            child.config_path.write_text("api: {timeout: soon}\ntargets: [{key: x}]\n")
            refused = requests.post(f"{child.url}/-/reload", timeout=10)
            assert refused.status_code == 500
            assert "api.timeout" in refused.text and "targets[0].model" in refused.text
            assert _global(child.metrics(), OK) == 0
            assert "config reload rejected, keeping the old config" in child.log()
            fleet.add_usage(sim, KEEP, USAGE)  # the old config keeps running
            wait_for(lambda: fleet.counters(child.metrics(), KEEP) == USAGE + USAGE + USAGE, 10,
                     "the old config still polling")
            assert fleet.counters(child.metrics(), NEW) == USAGE
            assert child.stop() == 0


def test_sighup_switches_endpoint_and_keys(tmp_path: Path) -> None:
    with (fleet.simulator() as first, fleet.simulator() as second,
          fleet.exporter(tmp_path, fleet.fleet_config(first.url, [KEEP])) as child):
        # Two endpoints of one backend: the same usage is visible through both.
        fleet.add_usage(second, KEEP, USAGE, ts=fleet.add_usage(first, KEEP, USAGE))
        wait_for(lambda: fleet.counters(child.metrics(), KEEP) == USAGE, 10, "counted")

        child.write_config(fleet.fleet_config(second.url, [KEEP], api={"rate_limit": 7}))
        child.signal(signal.SIGHUP)
        wait_for(lambda: _global(child.metrics(),
                                 "uminfer_api_rate_limit_requests_per_second") == 7,
                 10, "the new rate limit")
        first.reset_stats()
        fleet.add_usage(second, KEEP, USAGE)
        wait_for(lambda: fleet.counters(child.metrics(), KEEP) == USAGE + USAGE, 10,
                 "usage read from the new endpoint")
        assert first.stats().usage_calls == ()

        child.write_config(fleet.fleet_config(second.url, [KEEP],
                                              api={"private_key": "not-the-key"}))
        child.signal(signal.SIGHUP)
        wait_for(lambda: (fleet.value(child.metrics(), "uminfer_target_failures_total",
                                      KEEP, reason="retcode") or 0) >= 1, 10,
                 "the wrong private key in force (RetCode 171)")
        assert "RetCode 171" in child.log()

        child.config_path.write_text("targets: [\n")
        child.signal(signal.SIGHUP)
        wait_for(lambda: _global(child.metrics(), OK) == 0, 10, "the bad YAML refused")
        assert child.process is not None and child.process.poll() is None
        assert child.stop() == 0


def _config(endpoint: str, keys: list[str], concurrency: int, rate: float) -> Config:
    raw = fleet.fleet_config(endpoint, keys, api={"max_concurrency": concurrency,
                                                  "rate_limit": rate,
                                                  "private_key": fleet.PRIVATE},
                             # One read per target per cycle (no settling periods, no
                             # audits), so the cycle times below compare like with like.
                             poll={"settle": "0s"})
    return parse_config(raw, {}, ".")


def test_concurrency_and_rate_limit_changes_take_effect() -> None:
    """In process: the pool is rebuilt, so a cycle of slow calls runs wider after a reload."""
    keys = [f"k-{i}" for i in range(8)]
    with fleet.simulator() as sim:
        sim.faults.set_latency(0.2)
        narrow, wide = _config(sim.url, keys, 1, 50), _config(sim.url, keys, 8, 100)
        configs = iter([wide])
        registry = CollectorRegistry()
        service = Service(narrow, SystemClock(), registry, lambda: next(configs))
        service.run_cycle()  # the first cycle also reads the (empty) windows: warm-up
        began = time.monotonic()
        service.run_cycle()
        serial = time.monotonic() - began
        assert service.reload() is None
        assert registry.get_sample_value("uminfer_api_rate_limit_requests_per_second") == 100
        began = time.monotonic()
        service.run_cycle()
        parallel = time.monotonic() - began
        service.stop()
        assert serial >= len(keys) * 0.2  # one at a time
        # Eight at a time: about one call's latency (two across an hour boundary).
        assert parallel < serial / 2, (serial, parallel)


def test_reload_keeps_running_config_when_loader_fails() -> None:
    """In process: a rejected reload reports why and changes nothing."""
    with fleet.simulator() as sim:
        config = _config(sim.url, [KEEP], 2, 0)

        def broken() -> Config:
            return parse_config({"targets": []}, {}, ".")

        registry = CollectorRegistry()
        service = Service(config, SystemClock(), registry, broken)
        reason = service.reload()
        assert reason is not None and "targets" in reason
        assert service.config is config
        assert registry.get_sample_value(OK) == 0
        service.stop()


def test_reload_reshapes_metrics_at_once() -> None:
    """In process: a new ``metrics`` section is in force on the body published by the reload."""
    with fleet.simulator() as sim:
        raw = fleet.fleet_config(sim.url, [KEEP], api={"private_key": fleet.PRIVATE},
                                 windows=["1h"], advanced={"window_interval": "1s"})
        plain = parse_config(raw, {}, ".")
        shaped = parse_config({**raw, "metrics": {"semconv": "otel-genai",
                                                  "disable": ["windows"]}}, {}, ".")
        registry = CollectorRegistry()
        service = Service(plain, SystemClock(), registry, lambda: shaped)
        service.run_cycle()
        before = service.cache.body(compressed=False).decode()
        assert "uminfer_window_tokens{" in before and "gen_ai_" not in before
        assert service.reload() is None
        after = service.cache.body(compressed=False).decode()
        assert "uminfer_window_tokens{" not in after
        assert "gen_ai_client_token_usage_sum{" in after
        assert 'uminfer_exporter_series{family="gen_ai_client_token_usage"} 4\n' in after
        service.stop()

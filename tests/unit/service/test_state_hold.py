"""While the state file cannot be written, /metrics holds still instead of showing counters a
restart would take back; it resumes, exactly, once the file can be written again."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from exporter.config import ApiConfig, Config, PollConfig, StateConfig, Target
from exporter.core.clock import SystemClock
from exporter.service import Service
from exporter.simulator import Event, EventStore, SimulatorServer
from exporter.simulator.usage import Usage
from tests.fleet import SECOND_BUCKETS
from tests.harness import parse_metrics

TARGET = Target("uminferapikey-a", "m", "org")


def tokens(service: Service) -> float | None:
    samples = parse_metrics(service.cache.body(compressed=False).decode())
    return next((v for (name, _), v in samples.items() if name == "uminfer_tokens_total"), None)


def test_unwritable_state_holds_metrics_then_resumes(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    state = tmp_path / "not-yet" / "state.json"  # its directory does not exist yet
    store = EventStore()
    with SimulatorServer(store, {"pub": "priv"}, SystemClock(), buckets=SECOND_BUCKETS) as sim:
        config = Config(
            api=ApiConfig(endpoint=sim.url, public_key="pub", private_key="priv", timeout=5,
                          rate_limit=0),
            poll=PollConfig(interval=1, settle=0, test_period=3600), windows=(),
            state=StateConfig(path=str(state)), targets=(TARGET,))
        service = Service(config, SystemClock(), CollectorRegistry(), lambda: config)
        with caplog.at_level(logging.ERROR, logger="exporter"):
            service.run_cycle()  # the first read: counting begins
            store.add(Event(int(time.time()), 0, "org", TARGET.key, TARGET.model,
                            Usage(5, 5, 10, 1, 0)))
            service.run_cycle()
        assert not service.ready.is_set()
        assert tokens(service) is None  # nothing published that a restart could take back
        assert len([r for r in caplog.records if "state not saved" in r.message]) == 1

        state.parent.mkdir()
        service.run_cycle()
        assert service.ready.is_set()
        assert tokens(service) == 10
        assert state.exists()
        service.stop()

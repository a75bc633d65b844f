"""kill -9 and restart: counters continue from the state file, downtime usage is counted once."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from exporter.core.usage import Totals
from exporter.simulator import SimulatorServer
from tests.e2e.test_integration import (
    CHAT,
    FLAKY,
    PRIVATE,
    add,
    config,
    counters,
    simulator,  # noqa: F401 (fixture)
    wait_counters,
)
from tests.harness import Exporter, wait_for

pytestmark = pytest.mark.e2e


def launch(tmp_path: Path, sim: SimulatorServer, state: Path) -> Exporter:
    exporter = Exporter(tmp_path, config(sim.url, state), env={"IT_PRIVATE_KEY": PRIVATE})
    exporter.start()
    exporter.wait_ready()
    return exporter


def test_kill_9_mid_cycle_then_restart_continues_exactly(
        tmp_path: Path, simulator: SimulatorServer) -> None:  # noqa: F811 (fixture)
    state = tmp_path / "state.json"
    first = launch(tmp_path, simulator, state)
    try:
        before = Totals(100, 20, 120, 3, 0)
        add(simulator, CHAT, before, ts=int(time.time()))
        wait_counters(first, CHAT, before)
        # Slow API: every cycle is now mostly calls in flight, so the kill lands mid-cycle.
        simulator.faults.set_latency(0.4)
        time.sleep(0.6)
        seen = counters(first, CHAT)
        first.signal(signal.SIGKILL)
        assert first.process is not None
        first.process.wait(5)
    finally:
        first.kill()
    simulator.faults.set_latency(0.0)

    down = Totals(7, 5, 12, 1, 0)  # usage while nothing was polling
    add(simulator, CHAT, down, ts=int(time.time()))
    other = Totals(1, 1, 2, 1, 0)
    add(simulator, FLAKY, other, ts=int(time.time()))
    assert json.loads(state.read_text())["version"] >= 1

    second = launch(tmp_path, simulator, state)
    try:
        assert counters(second, CHAT).dominates(seen)  # never below what a scraper saw
        wait_counters(second, CHAT, before + down)
        wait_counters(second, FLAKY, other)
        assert second.stop() == 0
    finally:
        second.kill()


def test_restart_without_state_starts_at_zero(
        tmp_path: Path, simulator: SimulatorServer) -> None:  # noqa: F811 (fixture)
    exporter = Exporter(tmp_path, config(simulator.url), env={"IT_PRIVATE_KEY": PRIVATE})
    exporter.start()
    try:
        exporter.wait_ready()
        add(simulator, CHAT, Totals(5, 5, 10, 1, 0), ts=int(time.time()))
        wait_counters(exporter, CHAT, Totals(5, 5, 10, 1, 0))
        assert exporter.stop() == 0
        exporter.start()
        exporter.wait_ready()
        wait_for(lambda: counters(exporter, CHAT) == Totals(), 5, "counters back at zero")
        assert exporter.stop() == 0
    finally:
        exporter.kill()


def test_corrupt_state_is_moved_aside_and_counting_starts_fresh(
        tmp_path: Path, simulator: SimulatorServer) -> None:  # noqa: F811 (fixture)
    state = tmp_path / "state.json"
    state.write_text('{"version": 1, "targets": {"x": ')  # a torn write from some other tool
    exporter = launch(tmp_path, simulator, state)
    try:
        assert list(tmp_path.glob("state.json.corrupt-*"))
        assert "starting from zero" in exporter.log()
        assert counters(exporter, CHAT) == Totals()
        assert exporter.stop() == 0
        assert json.loads(state.read_text())["version"] >= 1
    finally:
        exporter.kill()

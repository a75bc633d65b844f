"""The real exporter process against the simulator on loopback: exact counts, faults, lifecycle."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from exporter.core.clock import SystemClock
from exporter.core.usage import Totals
from exporter.simulator import Event, EventStore, Fault, FaultKind, SimulatorServer
from tests.fleet import SECOND_BUCKETS, as_totals, sim_usage
from tests.harness import Exporter, wait_for

pytestmark = pytest.mark.e2e

PUBLIC, PRIVATE = "it-public", "it-private-secret-0123456789"
CHAT = ("uminferapikey-chat", "deepseek-ai/DeepSeek-V3")
FLAKY = ("uminferapikey-flaky", "Qwen/Qwen2.5-72B-Instruct")
DENIED = ("uminferapikey-denied", "flux-dev")
PROJECT = "org-it"
SETTLE, PERIOD = 4, 10
QUANTITIES = {
    "uminfer_input_tokens_total": "input_tokens", "uminfer_output_tokens_total": "output_tokens",
    "uminfer_tokens_total": "tokens", "uminfer_requests_total": "requests",
    "uminfer_image_generations_total": "image_generations",
}


def config(endpoint: str, state: Path | None = None) -> dict[str, Any]:
    """A fast-polling config for the three test targets."""
    cfg: dict[str, Any] = {
        "api": {"endpoint": endpoint, "public_key": PUBLIC, "private_key": "${IT_PRIVATE_KEY}",
                "timeout": "2s", "rate_limit": 0},
        "poll": {"interval": "1s", "settle": f"{SETTLE}s", "test_period": f"{PERIOD}s"},
        "advanced": {"window_interval": "1s", "permanent_error_retry": "2s"},
        "windows": ["1m"],
        "targets": [{"project": PROJECT, "key": k, "model": m} for k, m in (CHAT, FLAKY, DENIED)],
    }
    if state is not None:
        cfg["state"] = {"path": str(state)}
    return cfg


@pytest.fixture(autouse=True)
def _reap_exporters() -> Iterator[None]:
    """Kill any exporter a failed test left running."""
    yield
    for exporter in list(_running):
        exporter.kill()
    _running.clear()


_running: list[Exporter] = []


@pytest.fixture
def simulator() -> Iterator[SimulatorServer]:
    """An empty simulator (no random traffic): the tests decide every event."""
    with SimulatorServer(EventStore(), {PUBLIC: PRIVATE}, SystemClock(),
                         buckets=SECOND_BUCKETS) as sim:
        yield sim


def start_exporter(tmp_path: Path, sim: SimulatorServer, *args: str,
                   state: Path | None = None) -> Exporter:
    exporter = Exporter(tmp_path, config(sim.url, state), *args,
                        env={"IT_PRIVATE_KEY": PRIVATE})
    _running.append(exporter.start())
    exporter.wait_ready()
    return exporter


def add(sim: SimulatorServer, target: tuple[str, str], totals: Totals, ts: int,
        visible_at: float | None = None) -> None:
    key, model = target
    sim.store.add(Event(ts, ts if visible_at is None else visible_at, PROJECT, key, model,
                        sim_usage(totals)))


def counters(exporter: Exporter, target: tuple[str, str]) -> Totals:
    samples = exporter.metrics()
    labels = frozenset({"project_id": PROJECT, "key_id": target[0], "model": target[1]}.items())
    return Totals(**{f: int(samples[(n, labels)]) for n, f in QUANTITIES.items()})


def gauge(exporter: Exporter, name: str, target: tuple[str, str], **extra: str) -> float | None:
    return exporter.value(name, project_id=PROJECT, key_id=target[0], model=target[1], **extra)


def wait_counters(exporter: Exporter, target: tuple[str, str], expected: Totals,
                  timeout: float = 20.0) -> None:
    wait_for(lambda: counters(exporter, target) == expected, timeout,
             lambda: f"counters of {target} == {expected}; last {counters(exporter, target)}")


def origin(exporter: Exporter, target: tuple[str, str]) -> int:
    """The first second the exporter counts: settled timestamp + 1 before anything settles."""
    settled = gauge(exporter, "uminfer_settled_timestamp_seconds", target)
    assert settled is not None
    return int(settled) + 1


def test_counts_on_time_and_late_usage_exactly_once(tmp_path: Path,
                                                   simulator: SimulatorServer) -> None:
    exporter = start_exporter(tmp_path, simulator)
    start = origin(exporter, CHAT)
    add(simulator, CHAT, Totals(999, 1, 1000, 1, 0), ts=start - 5)  # before counting began
    assert counters(exporter, CHAT) == Totals()

    now = int(time.time())
    on_time = Totals(120, 30, 150, 2, 0)
    add(simulator, CHAT, on_time, ts=now)
    wait_counters(exporter, CHAT, on_time)

    late = Totals(7, 3, 10, 1, 0)  # happened a second ago, shows up 3 s later: within settle
    add(simulator, CHAT, late, ts=now - 1 if now - 1 >= start else now, visible_at=time.time() + 3)
    wait_counters(exporter, CHAT, on_time + late)

    # Stays exact while periods settle and are re-read no more.
    settled_past = now + PERIOD + SETTLE
    wait_for(lambda: (gauge(exporter, "uminfer_settled_timestamp_seconds", CHAT) or 0) >= now,
             3 * PERIOD, "the period holding the usage to settle")
    assert counters(exporter, CHAT) == on_time + late
    truth = as_totals(simulator.store.truth(PROJECT, *CHAT, start, settled_past))
    assert counters(exporter, CHAT) == truth
    # The window gauge is the API's total over the minute before its read: it includes the
    # usage from before counting began, which the counters rightly leave out.
    window_end = gauge(exporter, "uminfer_window_timestamp_seconds", CHAT)
    window = gauge(exporter, "uminfer_window_tokens", CHAT, window="1m")
    assert window_end is not None
    wanted = simulator.store.truth(PROJECT, *CHAT, int(window_end) - 59, int(window_end)).tokens
    assert window == wanted
    assert exporter.stop() == 0


def test_usage_later_than_settle_is_reported_not_counted(tmp_path: Path,
                                                         simulator: SimulatorServer) -> None:
    exporter = start_exporter(tmp_path, simulator)
    start = origin(exporter, CHAT)
    # An event at the start of the next full period, visible only after that period closed
    # (end + settle) but before its audit read (end + 2 * settle).
    period_start = (start // PERIOD + 1) * PERIOD
    period_end = period_start + PERIOD - 1
    tardy = Totals(0, 0, 77, 0, 0)
    add(simulator, CHAT, tardy, ts=period_start, visible_at=period_end + SETTLE + 3)
    wait_for(lambda: gauge(exporter, "uminfer_late_tokens_after_settle_total", CHAT) == 77,
             3 * PERIOD + 2 * SETTLE, "the audit to report the tardy tokens")
    assert counters(exporter, CHAT) == Totals()
    assert exporter.stop() == 0


def test_transient_outage_holds_counters_then_catches_up(tmp_path: Path,
                                                         simulator: SimulatorServer) -> None:
    exporter = start_exporter(tmp_path, simulator)
    before = Totals(10, 10, 20, 1, 0)
    add(simulator, FLAKY, before, ts=int(time.time()))
    wait_counters(exporter, FLAKY, before)

    rule = simulator.faults.add(Fault(FaultKind.RETCODE, retcode=150), key=FLAKY[0])
    wait_for(lambda: gauge(exporter, "uminfer_up", FLAKY) == 0, 10, "uminfer_up 0 for FLAKY")
    during = Totals(5, 5, 10, 1, 0)
    add(simulator, FLAKY, during, ts=int(time.time()))
    chat = Totals(1, 1, 2, 1, 0)
    add(simulator, CHAT, chat, ts=int(time.time()))
    wait_counters(exporter, CHAT, chat)  # one target's failure never touches another
    assert counters(exporter, FLAKY) == before  # held still while failing
    assert gauge(exporter, "uminfer_up", CHAT) == 1
    assert (gauge(exporter, "uminfer_target_failures_total", FLAKY, reason="retcode") or 0) >= 1

    simulator.faults.remove(rule)
    wait_counters(exporter, FLAKY, before + during)
    wait_for(lambda: gauge(exporter, "uminfer_up", FLAKY) == 1, 10, "uminfer_up 1 again")
    assert exporter.stop() == 0


def test_permanent_error_is_not_hammered_and_recovers(tmp_path: Path,
                                                      simulator: SimulatorServer) -> None:
    # Counted in cycles, not seconds: with a pause of an hour, a denied target gets no call at
    # all however many cycles pass, on a fast machine or a slow one.
    rule = simulator.faults.add(Fault(FaultKind.RETCODE, retcode=299), key=DENIED[0])
    cfg = config(simulator.url)
    cfg["advanced"]["permanent_error_retry"] = "1h"
    exporter = Exporter(tmp_path, cfg, env={"IT_PRIVATE_KEY": PRIVATE})
    _running.append(exporter.start())
    exporter.wait_ready()
    wait_for(lambda: gauge(exporter, "uminfer_up", DENIED) == 0, 10, "DENIED down")
    simulator.reset_stats()
    cycles = exporter.value("uminfer_poll_duration_seconds_count") or 0
    wait_for(lambda: (exporter.value("uminfer_poll_duration_seconds_count") or 0) >= cycles + 5,
             30, "five more poll cycles")
    stats = simulator.stats()
    assert [c for c in stats.usage_calls if c[2] == DENIED[0]] == []
    assert stats.by_retcode.get(299, 0) == 0
    assert any(c[2] == CHAT[0] for c in stats.usage_calls)  # the others are still polled
    assert exporter.log().count("RetCode 299") == 1  # logged once, not every cycle

    simulator.faults.remove(rule)
    # An operator who fixed the key reloads: that lifts the pause at once.
    assert requests.post(f"{exporter.url}/-/reload", timeout=5).status_code == 200
    wait_for(lambda: gauge(exporter, "uminfer_up", DENIED) == 1, 10, "DENIED recovers")
    assert exporter.stop() == 0


def test_steady_state_cost_is_bounded(tmp_path: Path, simulator: SimulatorServer) -> None:
    exporter = start_exporter(tmp_path, simulator)
    cycles_before = exporter.value("uminfer_poll_duration_seconds_count") or 0
    simulator.reset_stats()
    time.sleep(5)
    cycles = (exporter.value("uminfer_poll_duration_seconds_count") or 0) - cycles_before
    calls = [c for c in simulator.stats().usage_calls if c[2] == CHAT[0]]
    assert all(end - start < 86400 for start, end, _, _ in calls)
    counting = [c for c in calls if end_minus_start(c) < 3600]
    assert cycles >= 3
    # Windows are read every cycle here (window_interval 1s): 1 window call per cycle, plus
    # 1 counting call, 2 in the settle seconds after a period boundary, and one audit.
    assert len(calls) / cycles <= 1 + 1 + SETTLE / PERIOD + 1 / PERIOD + 0.5, (len(calls), cycles)
    assert counting
    assert exporter.stop() == 0


def end_minus_start(call: tuple[int, int, str, str]) -> int:
    return call[1] - call[0]


def test_sigterm_flushes_state_and_exits_fast(tmp_path: Path, simulator: SimulatorServer) -> None:
    state = tmp_path / "state.json"
    exporter = start_exporter(tmp_path, simulator, state=state)
    first = int(time.time())
    add(simulator, CHAT, Totals(3, 4, 7, 1, 0), ts=first)
    # Once that has settled (a closed period), usage in a period still open: both are saved.
    wait_for(lambda: (gauge(exporter, "uminfer_settled_timestamp_seconds", CHAT) or 0) >= first,
             PERIOD + SETTLE + 10, "the first usage settled")
    add(simulator, CHAT, Totals(20, 0, 20, 2, 0), ts=int(time.time()))
    wait_counters(exporter, CHAT, Totals(23, 4, 27, 3, 0))
    began = time.monotonic()
    assert exporter.stop() == 0
    assert time.monotonic() - began < 1.5
    doc = json.loads(state.read_text())
    assert set(doc["targets"]) == {f"{PROJECT}/{k}/{m}" for k, m in (CHAT, FLAKY, DENIED)}
    # The saved numbers, summed from the JSON by hand: what was counted, for each target.
    chat = {"input_tokens": 23, "output_tokens": 4, "tokens": 27, "requests": 3}
    for (key, model), expected in [(CHAT, chat), (FLAKY, {}), (DENIED, {})]:
        assert saved_counters(doc["targets"][f"{PROJECT}/{key}/{model}"]["ledger"]) == expected, key
    assert PRIVATE not in state.read_text()


def saved_counters(ledger: dict[str, Any]) -> dict[str, int]:
    """A saved ledger's counters: its closed sum plus each open stretch, non-zero fields only."""
    total: dict[str, int] = {}
    for part in [ledger["closed"], *(stretch["totals"] for stretch in ledger["open"])]:
        for name, value in part.items():
            total[name] = total.get(name, 0) + value
    return {name: value for name, value in total.items() if value}


def test_endpoints(tmp_path: Path, simulator: SimulatorServer) -> None:
    exporter = start_exporter(tmp_path, simulator)
    assert requests.get(f"{exporter.url}/-/healthy", timeout=2).status_code == 200
    assert requests.get(f"{exporter.url}/-/ready", timeout=2).status_code == 200
    landing = requests.get(f"{exporter.url}/", timeout=2)
    assert landing.status_code == 200 and 'href="/metrics"' in landing.text
    assert requests.get(f"{exporter.url}/nope", timeout=2).status_code == 404
    assert requests.get(f"{exporter.url}/-/reload", timeout=2).status_code == 405
    gz = requests.get(f"{exporter.url}/metrics", headers={"Accept-Encoding": "gzip"}, timeout=2)
    assert gz.headers["Content-Encoding"] == "gzip" and "uminfer_up" in gz.text
    assert exporter.value("uminfer_exporter_build_info", version=_version(),
                          python_version=_python()) == 1
    assert exporter.stop() == 0


def _version() -> str:
    from exporter import __version__

    return __version__


def _python() -> str:
    import platform

    return platform.python_version()


@pytest.mark.parametrize(("contents", "code", "needle"), [
    ("targets: []\n", 1, "targets: at least one target is required"),
    ("poll: {interval: 0s}\ntargets: [{key: k, model: m}]\napi: {public_key: a, private_key: b}\n",
     1, "poll.interval"),
    ("api: {public_key: a, private_key: b}\ntargets: [{key: k, model: m}]\n", 0, "valid"),
])
def test_config_check(tmp_path: Path, contents: str, code: int, needle: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(contents)
    result = subprocess.run([sys.executable, "-m", "exporter", f"--config.file={path}",
                             "--config.check"], capture_output=True, text=True, timeout=30,
                            check=False)
    assert result.returncode == code, result.stderr
    assert needle in (result.stderr if code else result.stdout)
    assert "Traceback" not in result.stderr


def test_invalid_config_exits_1_with_one_line_per_problem(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("api: {timeout: soon}\ntargets: [{key: k}]\n")
    result = subprocess.run([sys.executable, "-m", "exporter", f"--config.file={path}"],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) >= 3 and all(": " in line for line in lines), lines
    assert "Traceback" not in result.stderr


def test_port_in_use_exits_nonzero_with_one_line(tmp_path: Path,
                                                 simulator: SimulatorServer) -> None:
    path = tmp_path / "c.yaml"
    written = config(simulator.url)
    del written["poll"]["test_period"]  # a flag, not a key: this start never polls anyway
    path.write_text(json.dumps(written))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "exporter", f"--config.file={path}",
             f"--web.listen-address=127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=30, check=False,
            env={**os.environ, "IT_PRIVATE_KEY": PRIVATE})
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr

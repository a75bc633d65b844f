"""Hostile input through the real process: crafted API answers, state and cost files, reloads.

Each scenario runs one exporter against the in-process simulator and checks what issue #17
asks: the process and its poll loop live on, counting continues, every problem is one clean
line (no traceback, no raw control characters), and memory stays under the shipped 256 MiB.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from exporter.core.safejson import API_ANSWER
from exporter.core.usage import Totals
from exporter.polling.supervisor import STAGES
from exporter.simulator import (
    Catalog,
    Fault,
    FaultKind,
    SimKey,
    SimModel,
    SimulatorServer,
)
from tests import fleet
from tests.conftest import StartSimulator
from tests.harness import Exporter, wait_for

pytestmark = pytest.mark.e2e

LIMIT_KIB = 256 * 1024  # the shipped Kubernetes memory limit
HOSTILE_PROJECT = "org-hostile"
EVIL_NAME = "evil\ud800\x1b[31m\rname"
NESTED = '{"RetCode": 0, "Data": {"InTotal": ' + "[" * 100_000 + "]" * 100_000 + "}}"


def _peak_kib(child: Exporter) -> int:
    """The process's peak resident memory (VmHWM) in KiB."""
    assert child.process is not None
    status = Path(f"/proc/{child.process.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines()
                    if line.startswith("VmHWM:")))


def _clean_log(child: Exporter) -> None:
    raw = child.log_path.read_bytes()
    assert b"Traceback" not in raw
    assert b"\x1b" not in raw
    assert b"\r" not in raw


def _poll_errors(child: Exporter) -> dict[str, float | None]:
    samples = child.metrics()
    return {stage: samples.get(("uminfer_poll_errors_total", frozenset({("stage", stage)})))
            for stage in STAGES}


@pytest.fixture
def sim(start_simulator: StartSimulator) -> SimulatorServer:
    catalog = Catalog()
    catalog.add_key(SimKey(HOSTILE_PROJECT, "k-evil", EVIL_NAME, "secret-evil",
                           granted_models=(fleet.MODEL,)))
    return start_simulator({fleet.PUBLIC: fleet.PRIVATE}, catalog=catalog,
                           buckets=fleet.SECOND_BUCKETS)


CRAFTED = {
    "k-nested": (Fault(FaultKind.CRAFTED, status=200, body=NESTED), "invalid_response"),
    "k-huge": (Fault(FaultKind.CRAFTED, status=200, body=" " * (1 << 20), repeat=200),
               "invalid_response"),
    "k-retry": (Fault(FaultKind.CRAFTED, status=429, header="Retry-After: ²"), "http"),
}


def test_crafted_answers_never_stop_counting(tmp_path: Path, sim: SimulatorServer) -> None:
    keys = [*CRAFTED, "k-control"]
    config = fleet.fleet_config(sim.url, keys, state={"path": str(tmp_path / "state.json")})
    config["discovery"] = {"projects": [HOSTILE_PROJECT], "models": [fleet.MODEL],
                           "refresh": "1s"}
    for key, (fault, _) in CRAFTED.items():
        sim.faults.add(fault, key=key)
    with fleet.exporter(tmp_path, config) as child:
        fleet.add_usage(sim, "k-control", Totals(5, 1, 6, 1, 0))
        for key, (_, reason) in CRAFTED.items():
            wait_for(partial(_failed_twice, child, key, reason), 20, f"{key} failing as {reason}")
        # Counting goes on after every trigger has fired at least twice.
        fleet.add_usage(sim, "k-control", Totals(7, 3, 10, 2, 0))
        wait_for(lambda: fleet.counters(child.metrics(), "k-control")
                 == Totals(12, 4, 16, 3, 0), 10, "k-control counting on")
        text = requests.get(f"{child.url}/metrics", timeout=5).text
        # Escaped, rendered, served; control characters replaced (issue #26, N7).
        assert 'key_name="evil\\\\ud800\ufffd[31m\ufffdname"' in text
        assert all(fleet.value(child.metrics(), "uminfer_up", k) == 0 for k in CRAFTED)
        assert _poll_errors(child) == dict.fromkeys(STAGES, 0.0)
        assert child.status("/-/healthy") == 200
        answer = _raw_request(child, b"GET /\x1b[2J\r HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 400 ")  # refused; the front keeps no access log
        peak = _peak_kib(child)
        print(f"peak RSS with 200 MiB, nested and Retry-After answers: {peak} KiB")
        assert peak < LIMIT_KIB
    _clean_log(child)  # so no escape sequence from the request line reached the log


def _failed_twice(child: Exporter, key: str, reason: str) -> bool:
    failures = fleet.value(child.metrics(), "uminfer_target_failures_total", key, reason=reason)
    return (failures or 0) >= 2


def _refused_twice(child: Exporter, key: str) -> bool:
    samples = child.metrics()
    return sum(fleet.value(samples, "uminfer_target_failures_total", key, reason=reason) or 0
               for reason in ("invalid_response", "timeout")) >= 2


def _raw_request(child: Exporter, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", child.port), timeout=5) as conn:
        conn.sendall(request)
        return conn.recv(4096)


def test_a_list_price_beyond_any_decimal_is_refused(tmp_path: Path,
                                                    sim: SimulatorServer) -> None:
    sim.catalog.add_key(SimKey(fleet.PROJECT, "k-priced", "priced", "secret-priced"))
    sim.catalog.add_model(SimModel(fleet.MODEL, prompt="1e999999999"))
    config = fleet.fleet_config(sim.url, ["k-priced"], pricing={"from_api": True})
    with fleet.exporter(tmp_path, config) as child:
        fleet.add_usage(sim, "k-priced", Totals(5, 1, 6, 1, 0))
        wait_for(lambda: fleet.counters(child.metrics(), "k-priced")
                 == Totals(5, 1, 6, 1, 0), 10, "k-priced counted")
        fleet.add_usage(sim, "k-priced", Totals(1, 1, 2, 1, 0))
        wait_for(lambda: fleet.counters(child.metrics(), "k-priced")
                 == Totals(6, 2, 8, 2, 0), 10, "k-priced counting on")
        assert _poll_errors(child) == dict.fromkeys(STAGES, 0.0)
        samples = child.metrics()
        assert samples.get(("uminfer_api_requests_total", frozenset(
            {"outcome": "invalid_response", "retcode": "none"}.items())), 0) >= 1
    assert "Pricing.Prompt is not a price: must be below 1e18" in child.log()
    _clean_log(child)


def _ledger(now: int) -> dict[str, Any]:
    zero = dict.fromkeys(("input_tokens", "output_tokens", "tokens", "requests",
                          "image_generations"), 0)
    return {"origin": now, "period": 10, "settle": 20, "audit": True, "cursor": now,
            "closed": zero, "revisions": 0, "revised_away": zero, "late_after_settle": zero,
            "skipped_seconds": 0, "open": [], "audits": []}


STATE_FILES = {
    "origin_infinity": lambda now: json.dumps(
        {"version": 1, "targets": {f"{fleet.PROJECT}/k/{fleet.MODEL}": {
            **_ledger(now), "origin": "INF"}}}).replace('"INF"', "Infinity"),
    "nested_100000": lambda now: '{"version": 1, "targets": ' + "[" * 100_000
    + "]" * 100_000 + "}",
}
COST_FILES = {
    "budget_use_not_an_object": '{"version": 1, "meters": {}, "budgets": {"x": 1}}',
    "budget_amount_1e9999999": '{"version": 1, "meters": {}, "budgets": {"day": '
                               '{"start": 0, "amount": "1e9999999"}}}',
}


@pytest.mark.parametrize(("state", "cost"), [("origin_infinity", "budget_use_not_an_object"),
                                             ("nested_100000", "budget_amount_1e9999999"),
                                             ("good_v1", "budget_amount_1e9999999")])
def test_hostile_state_and_cost_files_are_moved_aside(
        tmp_path: Path, sim: SimulatorServer, state: str, cost: str) -> None:
    """A hostile state document is moved aside and counting and cost start afresh together; a
    hostile version 1 cost file beside a good version 1 state keeps the counters, prices
    afresh, and is removed once the migrated document is written."""
    path = tmp_path / "state.json"
    good = json.dumps({"version": 1, "targets": {
        f"{fleet.PROJECT}/k/{fleet.MODEL}": _ledger(int(time.time()))}})
    path.write_text(good if state == "good_v1" else STATE_FILES[state](int(time.time())))
    Path(f"{path}.cost.json").write_text(COST_FILES[cost])
    config = fleet.fleet_config(sim.url, ["k"], state={"path": str(path)},
                                pricing={"models": {fleet.MODEL: {"input": "1"}}})
    config["budgets"] = [{"name": "day", "period": "daily", "cost": "10"}]
    with fleet.exporter(tmp_path, config) as child:
        fleet.add_usage(sim, "k", Totals(5, 1, 6, 1, 0))
        wait_for(lambda: fleet.counters(child.metrics(), "k") == Totals(5, 1, 6, 1, 0),
                 10, "counting afresh")
        assert child.stop() == 0
    log = child.log()
    if state == "good_v1":
        assert "moved to" not in log, log
        assert not Path(f"{path}.cost.json").exists()
    else:
        assert log.count("moved to") == 1, log
        assert "counters and cost start afresh" in log
        assert len(list(tmp_path.glob("state.json.corrupt-*"))) == 1
    assert json.loads(path.read_text())["version"] == 2
    _clean_log(child)


def _bomb_config(good: dict[str, Any]) -> str:
    """The 570-byte alias bomb of issue #17, at api.timeout."""
    anchors = ['x0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    anchors += [f"x{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    text = yaml.safe_dump(good)
    assert "timeout: 2s" in text
    return ("bomb:\n" + "\n".join(f"  {a}" for a in anchors) + "\n"
            + text.replace("timeout: 2s", "timeout: *a8"))


def _reload(child: Exporter) -> tuple[int, str, float]:
    began = time.monotonic()
    response = requests.post(f"{child.url}/-/reload", timeout=30)
    return response.status_code, response.text, time.monotonic() - began


def test_hostile_reloads_are_rejected_cleanly_and_never_hang(tmp_path: Path,
                                                             sim: SimulatorServer) -> None:
    good = fleet.fleet_config(sim.url, ["k"])
    fifo = tmp_path / "key.fifo"
    os.mkfifo(fifo)
    text = json.dumps(good)
    bad = {  # name: (config, the reason the reply must give)
        "invalid date": (text.replace('"targets": [', '"x": 2024-02-30, "targets": ['),
                         "not a valid timestamp (day is out of range for month)"),
        "5,000-digit integer": (text.replace('"max_concurrency": 64', '"max_concurrency": '
                                             + "9" * 5000), "not a valid int"),
        "nested 20,000 deep": (text.replace('"windows": []', '"windows": ' + "[" * 20_000
                                            + "]" * 20_000), "nested more than 64 levels deep"),
        "alias bomb": (_bomb_config(good), "aliases expand to more than 300000 values"),
        "FIFO private_key_file": (json.dumps({**good, "api": {
            **{k: v for k, v in good["api"].items() if k != "private_key"},
            "private_key_file": str(fifo)}}), "not a regular file (a FIFO)"),
    }
    with fleet.exporter(tmp_path, good) as child:
        for name, (config_text, reason) in bad.items():
            child.config_path.write_text(config_text)
            status, reply, seconds = _reload(child)
            assert status == 500, (name, reply)
            assert reason in reply, (name, reply)
            assert reply.startswith("reload failed: ") and len(reply) < 400, (name, reply)
            assert "\n" not in reply.rstrip("\n"), (name, reply)
            assert seconds < 5, (name, seconds)
            print(f"reload with {name}: {status} in {seconds:.2f}s: {reply.strip()}")
            assert child.value("uminfer_config_last_reload_successful") == 0, name
        child.signal(signal.SIGHUP)  # the FIFO config again, by signal: no thread traceback
        wait_for(lambda: child.log().count("config reload rejected") >= len(bad) + 1, 5,
                 "the SIGHUP reload rejected")
        child.write_config(good)
        assert _reload(child)[0] == 200  # the reload lock is free: nothing hung on the FIFO
        assert child.value("uminfer_config_last_reload_successful") == 1
        assert _poll_errors(child) == dict.fromkeys(STAGES, 0.0)
        peak = _peak_kib(child)
        print(f"peak RSS after hostile reloads: {peak} KiB")
        assert peak < LIMIT_KIB
    _clean_log(child)


def _worst_answers() -> dict[str, str]:
    """Answers just inside every cap of safejson.API_ANSWER, each the costliest of its kind to
    parse: one long string, 200,000 floats, 50,000 objects (Data a list: invalid, not counted)."""
    room = API_ANSWER.max_bytes - 100
    kinds = {"string": '{"RetCode": 0, "Data": ["' + "x" * room + '"]}',
             "floats": '{"RetCode": 0, "Data": [' + ",".join(["0.5"] * 199_999) + "]}",
             "objects": '{"RetCode": 0, "Data": [' + ",".join(["{}"] * 49_990) + "]}"}
    return {f"k-worst-{kind}-{i}": body for kind, body in kinds.items() for i in range(12)}


def test_the_worst_answers_the_caps_allow_fit_the_memory_limit(
        tmp_path: Path, sim: SimulatorServer) -> None:
    answers = _worst_answers()  # 36 targets polled at once (max_concurrency 64)
    for key, body in answers.items():
        sim.faults.add(Fault(FaultKind.CRAFTED, status=200, body=body), key=key)
    config = fleet.fleet_config(sim.url, [*answers, "k-control"])
    with fleet.exporter(tmp_path, config) as child:
        # More large answers than answers.LARGE_SLOTS at once: the rest wait for a slot, and
        # within api.timeout (2 s) some give up: refused as invalid or timed out, never more.
        for key in answers:
            wait_for(partial(_refused_twice, child, key), 30, f"{key} refused")
        samples = child.metrics()
        assert not any(n == "uminfer_target_failures_total" and ("reason", "internal") in lbl
                       and value for (n, lbl), value in samples.items())
        peak = _peak_kib(child)
        print(f"peak RSS with {len(answers)} worst-case answers at once: {peak} KiB")
        assert peak < LIMIT_KIB
    _clean_log(child)

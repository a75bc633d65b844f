"""Process lifecycle: SIGTERM is quick and flushes state; startup failures say one clear line."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from exporter.core.usage import Totals
from tests import fleet
from tests.certs import make_pki
from tests.harness import wait_for

pytestmark = pytest.mark.e2e

KEYS = ["k-a", "k-b"]


def test_sigterm_during_a_slow_call_flushes_state_and_exits_0_within_a_second(
        tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    with fleet.simulator() as sim:
        config = fleet.fleet_config(sim.url, KEYS, api={"timeout": "30s"},
                                    state={"path": str(state)})
        with fleet.exporter(tmp_path, config) as child:
            usage = Totals(5, 6, 11, 1, 0)
            fleet.add_usage(sim, "k-a", usage)
            wait_for(lambda: fleet.counters(child.metrics(), "k-a") == usage, 10, "counted")
            sim.faults.set_latency(10.0)  # every call from now on hangs for 10 s
            calls = sim.stats().by_action.get("GetUMInferTokenUsage", 0)
            wait_for(lambda: sim.stats().by_action.get("GetUMInferTokenUsage", 0) > calls, 5,
                     "a call to be in flight")
            state.unlink()  # whatever is there after SIGTERM was written by the shutdown
            assert child.process is not None
            began = time.monotonic()
            child.signal(signal.SIGTERM)
            code = child.process.wait(5)
            took = time.monotonic() - began
    assert code == 0
    assert took < 1.0, took
    doc = json.loads(state.read_text())
    assert set(doc["targets"]) == {f"{fleet.PROJECT}/{k}/{fleet.MODEL}" for k in KEYS}
    assert f"stopped; state written to {state}" in child.log()
    assert "Traceback" not in child.log()


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exporter", *args], capture_output=True,
                          text=True, timeout=30, check=False,
                          env={**os.environ, "FLEET_PRIVATE_KEY": fleet.PRIVATE, **(env or {})})


def _good_config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(fleet.fleet_config("http://127.0.0.1:9/", KEYS)))
    return path


def _web_config(tmp_path: Path, cert: str) -> Path:
    pki = make_pki(tmp_path)
    path = tmp_path / "web.yml"
    path.write_text(yaml.safe_dump({"tls_server_config": {"cert_file": cert,
                                                          "key_file": str(pki.server_key)}}))
    return path


def _startup(tmp_path: Path, case: str, port: int) -> tuple[list[str], str]:
    """Flags for one failing start, and a phrase its one line must hold."""
    listen = f"--web.listen-address=127.0.0.1:{port}"
    config = f"--config.file={_good_config(tmp_path)}"
    if case == "port in use":
        return [config, listen], f"cannot listen on 127.0.0.1:{port}"
    if case == "unreadable config":
        return [f"--config.file={tmp_path}", listen], "cannot read"
    if case == "missing web config":
        return [config, listen, f"--web.config.file={tmp_path / 'nope.yml'}"], "not readable"
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n")
    web = _web_config(tmp_path, str(garbage))
    return [config, listen, f"--web.config.file={web}"], "not a matching, unencrypted PEM pair"


@pytest.mark.parametrize("case", ["port in use", "unreadable config", "missing web config",
                                  "bad TLS cert"])
def test_startup_failure_is_one_clear_line(tmp_path: Path, case: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        args, phrase = _startup(tmp_path, case, taken.getsockname()[1])
        result = _run(*args)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0
    assert len(lines) == 1, result.stderr
    assert phrase in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_config_check_reports_web_config_problems(tmp_path: Path) -> None:
    config = _good_config(tmp_path)
    bad = tmp_path / "bad-web.yml"
    bad.write_text("basic_auth_users: {prom: plaintext-password}\nhttp_server_config: {x: 1}\n")
    result = _run(f"--config.file={config}", "--config.check", f"--web.config.file={bad}")
    assert result.returncode == 1
    assert "basic_auth_users.prom: not a bcrypt hash" in result.stderr
    assert "http_server_config.x: unknown key" in result.stderr
    assert "plaintext-password" not in result.stderr
    good = _web_config(tmp_path, str(tmp_path / "server.pem"))
    result = _run(f"--config.file={config}", "--config.check", f"--web.config.file={good}")
    assert (result.returncode, result.stderr) == (0, "")
    assert "valid" in result.stdout


def test_config_check_refuses_a_listen_address_the_start_would_refuse(tmp_path: Path) -> None:
    args = (f"--config.file={_good_config(tmp_path)}", "--web.listen-address=localhost")
    checked = _run(*args, "--config.check")
    started = _run(*args)
    assert (checked.returncode, started.returncode) == (1, 1)
    assert checked.stderr == started.stderr
    assert checked.stderr.startswith("--web.listen-address: expected HOST:PORT, got 'localhost'")

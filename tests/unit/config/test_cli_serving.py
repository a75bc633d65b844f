"""What the command line wires together, served in this process against the simulator: the
poll loop behind /metrics, the landing page's status, /-/ledgers, reload by HTTP and by SIGHUP
(the flags kept across it), the web config and its reload, and the demo. Each part is checked as
an operator sees it, so a part left unconnected in exporter.cli fails here."""

from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import signal
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import bcrypt
import pytest

from exporter import __version__, cli
from exporter.config import Target
from exporter.core import logs
from exporter.polling.sharding import Shard
from exporter.service import Service
from exporter.simulator import Catalog, SimKey, SimModel, SimulatorServer
from tests.conftest import StartSimulator
from tests.fleet import SECOND_BUCKETS
from tests.harness import free_port, wait_for

SECRET_ENV = "UMINFER_TEST_SERVING_KEY"
HASH = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()  # low cost: fast tests
NEW_HASH = bcrypt.hashpw(b"n3w", bcrypt.gensalt(rounds=4)).decode()


@pytest.fixture(autouse=True)
def _restore_process_state() -> Iterator[None]:
    """main() configures the ``exporter`` logger and installs signal handlers: put them back."""
    logger = logging.getLogger("exporter")
    handlers, level, propagate = logger.handlers[:], logger.level, logger.propagate
    signals = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    yield
    logger.handlers[:], logger.propagate = handlers, propagate
    logger.setLevel(level)
    for s, handler in signals.items():
        signal.signal(s, handler)


@pytest.fixture
def sim(start_simulator: StartSimulator) -> SimulatorServer:
    return start_simulator({"pub": "private-key-123"}, buckets=SECOND_BUCKETS)


@pytest.fixture
def config_file(sim: SimulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config of one target on ``sim``, its private key read from the environment."""
    monkeypatch.setenv(SECRET_ENV, "private-key-123")  # read at the start and at each reload
    path = tmp_path / "config.yaml"
    path.write_text(config_text(sim.url, ("m",)))
    return path


def config_text(url: str, models: tuple[str, ...]) -> str:
    targets = ", ".join(f"{{key: k, model: {m}}}" for m in models)
    return (f"api: {{endpoint: '{url}', public_key: pub, private_key: '${{{SECRET_ENV}}}'}}\n"
            "poll: {interval: 1s, settle: 20s}\nwindows: []\n"
            f"targets: [{targets}]\n")


def get(url: str, password: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if password is not None:
        token = base64.b64encode(f"alice:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def post(url: str, password: str | None = None) -> int:
    request = urllib.request.Request(url, data=b"", method="POST")
    if password is not None:
        token = base64.b64encode(f"alice:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return error.code


def up(metrics: str) -> dict[str, str]:
    """uminfer_up by model, for key k."""
    return {line.split('model="')[1].split('"')[0]: line.rsplit(" ", 1)[1]
            for line in metrics.splitlines()
            if line.startswith("uminfer_up{") and 'key_id="k"' in line}


def serve(argv: list[str], port: int, steps: Callable[[str], None]) -> int:
    """cli.main(argv) in this thread; ``steps(base_url)`` in another once /-/ready answers,
    then SIGTERM. A failed step fails the test after main() has returned."""
    failed: list[BaseException] = []
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return get(f"{base}/-/ready")[0] == 200
        except OSError:
            return False

    def run() -> None:
        try:
            wait_for(ready, 15, "/-/ready")
            steps(base)
        except BaseException as error:
            failed.append(error)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    code = cli.main([*argv, f"--web.listen-address=127.0.0.1:{port}"])
    thread.join(30)
    if failed:
        raise failed[0]
    return code


@pytest.fixture
def logged(monkeypatch: pytest.MonkeyPatch) -> None:
    """main()'s log to the sys.stderr that capsys reads."""
    monkeypatch.setattr(cli, "configure", lambda level, fmt: logs.configure(level, fmt,
                                                                             sys.stderr))


@pytest.mark.usefixtures("logged")
def test_served_it_polls_shows_its_status_and_reloads_keeping_the_flags(
        sim: SimulatorServer, config_file: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = config_file
    state = tmp_path / "state.json"
    port = free_port()

    def steps(base: str) -> None:
        status, metrics = get(f"{base}/metrics")
        assert status == 200 and up(metrics) == {"m": "1"}
        status, page = get(f"{base}/")
        assert status == 200
        assert "Polling 1 targets every 1 s: 1 up, 0 down." in page
        assert "Counting since " in page and f"State file {state}: " in page
        assert "The API's time buckets are " in page
        status, document = get(f"{base}/-/ledgers")
        assert status == 200 and json.loads(document)["kind"] == "uminfer-settled-ledgers"
        path.write_text(config_text(sim.url, ("m", "m2")))
        assert post(f"{base}/-/reload") == 200
        wait_for(lambda: up(get(f"{base}/metrics")[1]).get("m2") == "1", 20,
                 "m2 answered after /-/reload")
        path.write_text(config_text(sim.url, ("m", "m2", "m3")))
        os.kill(os.getpid(), signal.SIGHUP)
        wait_for(lambda: up(get(f"{base}/metrics")[1]) == {"m": "1", "m2": "1", "m3": "1"}, 20,
                 "m3 answered after SIGHUP")

    assert serve([f"--config.file={path}", f"--state.path={state}"], port, steps) == 0
    err = capsys.readouterr().err
    assert f"msg=\"listening on 127.0.0.1:{port} (version {__version__})\"" in err
    assert f"msg=\"stopped; state written to {state}\"" in err  # the flag outlived two reloads
    assert state.is_file()


@pytest.mark.usefixtures("logged")
def test_served_the_web_config_guards_metrics_and_is_reloaded_with_the_config(
        config_file: Path, tmp_path: Path) -> None:
    path = config_file
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  alice: '{HASH}'\n")

    def steps(base: str) -> None:
        assert get(f"{base}/metrics")[0] == 401
        assert get(f"{base}/metrics", "s3cret")[0] == 200
        web.write_text(f"basic_auth_users:\n  alice: '{NEW_HASH}'\n")
        assert post(f"{base}/-/reload", "s3cret") == 200
        assert get(f"{base}/metrics", "s3cret")[0] == 401
        assert get(f"{base}/metrics", "n3w")[0] == 200

    assert serve([f"--config.file={path}", f"--web.config.file={web}"], free_port(),
                 steps) == 0


@pytest.mark.usefixtures("logged")
def test_served_a_shard_polls_only_its_share_of_the_discovered_keys(
        start_simulator: StartSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = Catalog()
    keys = [f"uminferapikey-{i}" for i in range(12)]
    for key in keys:
        catalog.add_key(SimKey("org", key, key, "sk-secret", granted_models=("a",)))
    catalog.add_model(SimModel("a", prompt="0.27", completion="1.10"))
    sim = start_simulator({"pub": "private-key-123"}, buckets=SECOND_BUCKETS, catalog=catalog)
    monkeypatch.setenv(SECRET_ENV, "private-key-123")
    path = tmp_path / "config.yaml"
    path.write_text(f"api: {{endpoint: '{sim.url}', public_key: pub, "
                    f"private_key: '${{{SECRET_ENV}}}'}}\n"
                    "poll: {interval: 1s, settle: 20s}\nwindows: []\n"
                    "discovery: {projects: [org]}\n")
    mine = {k for k in keys if Shard(1, 3).owns(Target(k, "a", "org"))}
    assert 0 < len(mine) < len(keys)  # the shard is a real part of them

    def polled(metrics: str) -> set[str]:
        return {line.split('key_id="')[1].split('"')[0] for line in metrics.splitlines()
                if line.startswith("uminfer_up{")}

    def steps(base: str) -> None:
        wait_for(lambda: polled(get(f"{base}/metrics")[1]) == mine, 20, "this shard's keys")

    assert serve([f"--config.file={path}", "--shard=1/3"], free_port(), steps) == 0


@pytest.mark.usefixtures("logged")
def test_served_a_stuck_poll_loop_fails_the_liveness_probe(
        sim: SimulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, "private-key-123")
    path = tmp_path / "config.yaml"
    path.write_text(config_text(sim.url, ("m",)).replace("public_key: pub,",
                                                         "public_key: pub, timeout: 1s,"))
    released = threading.Event()

    def steps(base: str) -> None:
        assert get(f"{base}/-/healthy")[0] == 200
        monkeypatch.setattr(Service, "run_cycle", lambda self: released.wait(60))
        # stale after 5 x (the 1 s interval + the 1 s timeout) without a finished cycle
        wait_for(lambda: get(f"{base}/-/healthy")[0] == 503, 30, "/-/healthy to fail")

    try:
        assert serve([f"--config.file={path}"], free_port(), steps) == 0
    finally:
        released.set()


@pytest.mark.usefixtures("logged")
def test_served_the_connection_cap_is_the_flags(config_file: Path) -> None:
    path = config_file
    port = free_port()

    def steps(base: str) -> None:
        kept = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            kept.request("GET", "/-/healthy")  # answered, then kept alive, idle
            assert kept.getresponse().read() and kept.sock is not None
            assert get(f"{base}/-/healthy")[0] == 200  # at the cap of 1: the idle one goes
            assert kept.sock.recv(1) == b""  # closed by the exporter (a timeout at 512)
        finally:
            kept.close()

    assert serve([f"--config.file={path}", "--web.max-connections=1"], port, steps) == 0


@pytest.mark.usefixtures("logged")
def test_the_demo_serves_the_simulators_targets() -> None:
    def steps(base: str) -> None:
        models = [line for line in get(f"{base}/metrics")[1].splitlines()
                  if line.startswith("uminfer_up{")]
        assert len(models) == 9 and all(line.endswith(" 1") for line in models)

    assert serve(["--demo"], free_port(), steps) == 0


def test_main_reads_the_process_arguments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # without the first flag, config.yaml here: there is none
    path = tmp_path / "mine.yaml"
    path.write_text(config_text("http://127.0.0.1:1/", ("m",)))
    monkeypatch.setenv(SECRET_ENV, "q")
    monkeypatch.setattr(sys, "argv", ["uminfer-exporter", f"--config.file={path}",
                                      "--config.check"])
    assert cli.main() == 0
    assert capsys.readouterr() == (f"{path}: valid (1 targets)\n", "")


def test_check_reads_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(config_text("http://127.0.0.1:1/", ("m",)))
    monkeypatch.setenv(SECRET_ENV, "q")
    assert cli.main([f"--config.file={path}", "--config.check"]) == 0
    monkeypatch.delenv(SECRET_ENV)
    assert cli.main([f"--config.file={path}", "--config.check"]) == 1
    assert SECRET_ENV in capsys.readouterr().err

"""The real image: built from the unmodified Dockerfile, run with podman in --demo mode.

No image registry is reachable, so tests/container/build-base.sh first builds a stand-in for
the Dockerfile's FROM image (cached between runs). Image size and start-to-first-full-/metrics
time are written to .work/container-report.json.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest
import requests

from tests.certs import make_pki
from tests.container.engine import ULIMITS, Engine, default_root, run
from tests.paths import ROOT
from tests.tools import require_root, require_tool

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

REPO = ROOT
REPORT = REPO / ".work" / "container-report.json"
UID = 65532
STATE_DIR = "/var/lib/uminfer-exporter"
CONTRACT_METRICS = (
    "uminfer_input_tokens_total", "uminfer_output_tokens_total", "uminfer_tokens_total",
    "uminfer_requests_total", "uminfer_image_generations_total",
    "uminfer_window_input_tokens", "uminfer_window_output_tokens", "uminfer_window_tokens",
    "uminfer_window_requests", "uminfer_window_image_generations",
    "uminfer_up", "uminfer_last_success_timestamp_seconds", "uminfer_exporter_build_info",
)
CONTEXT_SKIP = (".git", ".venv", ".work", ".mypy_cache", ".ruff_cache", ".pytest_cache",
                ".hypothesis", "__pycache__", "*.egg-info", "build", "dist")


@dataclass(frozen=True)
class Running:
    """A started container: its name, port, host state directory and start timings."""

    name: str
    port: int
    state_dir: Path
    start_seconds: float


def base_images(dockerfile: Path) -> set[str]:
    """The images the Dockerfile's FROM lines name (not references to its own stages)."""
    stages: set[str] = set()
    images: set[str] = set()
    for line in dockerfile.read_text(encoding="utf-8").splitlines():
        match = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line.strip(), re.IGNORECASE)
        if match:
            if match.group(1) not in stages:
                images.add(match.group(1))
            if match.group(2):
                stages.add(match.group(2))
    return images


def metric_names(text: str) -> set[str]:
    """Names of the samples in an exposition (the part before labels or value)."""
    return {re.split(r"[{ ]", line, maxsplit=1)[0]
            for line in text.splitlines() if line and not line.startswith("#")}


def scrape(port: int, path: str = "/metrics") -> str:
    """GET a path on the container's loopback port; empty text while it is not up yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return str(resp.read().decode())
    except OSError:
        return ""


def free_port() -> int:
    """A loopback port nothing listens on right now (the container uses the host network)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def record(**values: object) -> None:
    """Merge measured values into the report file (quoted in the closing note of issue #7)."""
    REPORT.parent.mkdir(exist_ok=True)
    data = json.loads(REPORT.read_text()) if REPORT.exists() else {}
    data.update(values)
    REPORT.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


@pytest.fixture(scope="module")
def engine() -> Engine:
    """The tools, checked up front: a missing one fails (skips only when asked to)."""
    for tool in ("buildah", "podman", "runc", "debootstrap"):
        require_tool(tool)
    require_root()
    return Engine(default_root())


@pytest.fixture(scope="module")
def image(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The exporter image, built from a copy of the checkout in a temporary directory."""
    for base in base_images(REPO / "Dockerfile"):
        run([str(REPO / "tests/container/build-base.sh"), base], timeout=420, env=engine.env())
    context = tmp_path_factory.mktemp("context") / "src"
    # Links are copied as links: a build context never follows one out of the tree.
    shutil.copytree(REPO, context, symlinks=True, ignore=shutil.ignore_patterns(*CONTEXT_SKIP))
    tag = f"localhost/uminfer-exporter:test-{os.getpid()}"
    engine.build(context, tag)
    yield tag
    engine.podman("rmi", "--force", tag, check=False)


@pytest.fixture(scope="module")
def running(engine: Engine, image: str, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Running]:
    """The image running --demo with a state volume; timed until /metrics has every metric."""
    state_dir = tmp_path_factory.mktemp("state")
    os.chown(state_dir, UID, UID)
    name, port = f"uminfer-test-{os.getpid()}", free_port()
    args = ["--demo", f"--state.path={STATE_DIR}/state.json",
            f"--web.listen-address=127.0.0.1:{port}"]
    engine.remove(name)
    started = time.monotonic()
    try:
        engine.run_detached(image, name, f"{state_dir}:{STATE_DIR}", args)
        # Split out: with vfs storage `podman run` itself copies the image's files.
        launched = time.monotonic() - started
        wait_full_metrics(engine, name, port)
        elapsed = time.monotonic() - started
        record(start_to_full_metrics_seconds=round(elapsed, 2),
               podman_run_returned_seconds=round(launched, 2))
        yield Running(name, port, state_dir, elapsed)
    finally:
        engine.remove(name)


def wait_full_metrics(engine: Engine, name: str, port: int, timeout: float = 90) -> None:
    """Wait until one scrape has every contract metric; fail with the missing names and logs."""
    deadline, missing = time.monotonic() + timeout, set(CONTRACT_METRICS)
    while time.monotonic() < deadline:
        missing = set(CONTRACT_METRICS) - metric_names(scrape(port))
        if not missing:
            return
        time.sleep(0.2)
    logs = engine.podman("logs", name, check=False)
    raise AssertionError(f"/metrics still lacks {sorted(missing)}:\n{logs.stdout}{logs.stderr}")


def test_image_metadata(engine: Engine, image: str) -> None:
    """Non-root numeric user, port, volume, entrypoint + CMD, Python healthcheck, OCI labels."""
    inspected = engine.inspect_image(image)
    config = inspected["Config"]
    assert config["User"] == f"{UID}:{UID}"
    assert "9866/tcp" in config["ExposedPorts"]
    assert STATE_DIR in config["Volumes"]
    assert config["Entrypoint"] == ["uminfer-exporter"]
    assert "--config.file=/etc/uminfer-exporter/config.yaml" in config["Cmd"]
    assert f"--state.path={STATE_DIR}/state.json" in config["Cmd"]
    assert inspected["Healthcheck"]["Test"][:2] == ["CMD", "python"]
    assert {"org.opencontainers.image.title", "org.opencontainers.image.version"} <= set(
        config["Labels"])


def test_image_is_small_and_clean(engine: Engine, image: str) -> None:
    """No compiler, no wheels or pip cache left behind; the size is recorded."""
    probe = ("import shutil, pathlib, sys; "
             "bad = [t for t in ('gcc', 'cc', 'make') if shutil.which(t)]; "
             "paths = ('/wheels', '/root/.cache/pip', '/src'); "
             "bad += [p for p in paths if pathlib.Path(p).exists()]; "
             "print(bad); sys.exit(bool(bad))")
    # As root, so that root's home (where a pip cache would be) can be looked into.
    assert engine.run_once(image, ["python", "-c", probe], user="0").strip() == "[]"
    size = int(engine.inspect_image(image)["Size"])
    record(image_size_bytes=size, image_size_mb=round(size / 1e6, 1))
    assert size < 400e6


def test_metrics_has_every_contract_metric(running: Running) -> None:
    """/metrics answers from inside the container with the contract's metric names."""
    names = metric_names(scrape(running.port))
    assert set(CONTRACT_METRICS) <= names
    assert scrape(running.port, "/-/healthy")


def test_process_is_not_root(engine: Engine, running: Running) -> None:
    """PID 1 (the exporter itself) runs as the image's numeric user."""
    status = engine.podman("exec", running.name, "cat", "/proc/1/status").stdout
    uids = re.search(r"^Uid:\s+(.*)$", status, re.MULTILINE)
    assert uids is not None
    assert set(uids.group(1).split()) == {str(UID)}


def healthcheck(engine: Engine, image: str, port: int) -> list[str]:
    """The image's own HEALTHCHECK command, pointed at ``port`` (the tests move it)."""
    test = engine.inspect_image(image)["Healthcheck"]["Test"]
    assert test[0] == "CMD"
    return [*test[1:], f"--web.listen-address=127.0.0.1:{port}"]


def test_healthcheck_command_succeeds(engine: Engine, image: str, running: Running) -> None:
    """The image's own HEALTHCHECK command, run inside the container, exits 0."""
    engine.podman("exec", running.name, *healthcheck(engine, image, running.port))
    broken = healthcheck(engine, image, 1)
    assert engine.podman("exec", running.name, *broken, check=False).returncode != 0


def test_tls_and_basic_auth_on_a_read_only_root(engine: Engine, image: str,
                                                tmp_path_factory: pytest.TempPathFactory) -> None:
    """With TLS and basic auth on a read-only root filesystem the exporter starts, refuses a
    scrape without the password, and the image's HEALTHCHECK still passes (issue #17)."""
    state_dir = tmp_path_factory.mktemp("tls-state")
    pki = make_pki(state_dir)
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    (state_dir / "web.yml").write_text(
        f"tls_server_config: {{cert_file: server.pem, key_file: server.key}}\n"
        f"basic_auth_users: {{prometheus: '{hashed}'}}\n", encoding="utf-8")
    for path in (state_dir, *state_dir.iterdir()):
        os.chown(path, UID, UID)
    name, port = f"uminfer-test-tls-{os.getpid()}", free_port()
    engine.remove(name)
    try:
        engine.podman("run", "--detach", "--name", name, "--runtime", "runc", "--network", "host",
                      "--no-healthcheck", "--read-only", *ULIMITS, "--volume",
                      f"{state_dir}:{STATE_DIR}", image, "--demo",
                      f"--web.config.file={STATE_DIR}/web.yml",
                      f"--web.listen-address=127.0.0.1:{port}")
        command = healthcheck(engine, image, port)
        deadline = time.monotonic() + 90
        while engine.podman("exec", name, *command, check=False).returncode != 0:
            logs = engine.podman("logs", name, check=False)
            assert time.monotonic() < deadline, f"never healthy:\n{logs.stdout}{logs.stderr}"
            time.sleep(1)
        url = f"https://127.0.0.1:{port}/metrics"
        assert requests.get(url, timeout=5, verify=str(pki.ca)).status_code == 401
        assert requests.get(url, timeout=5, verify=str(pki.ca),
                            auth=("prometheus", "pw")).status_code == 200
    finally:
        engine.remove(name)


def test_sigterm_stops_cleanly_and_flushes_state(engine: Engine, running: Running) -> None:
    """SIGTERM: exit 0 within seconds, and the state file on the volume is valid JSON."""
    state = running.state_dir / "state.json"
    state.unlink(missing_ok=True)
    began = time.monotonic()
    engine.podman("kill", "--signal", "TERM", running.name)
    code = engine.podman("wait", running.name, timeout=30).stdout.strip()
    record(sigterm_to_exit_seconds=round(time.monotonic() - began, 2))
    logs = engine.podman("logs", running.name, check=False)
    assert code == "0", logs.stderr
    assert isinstance(json.loads(state.read_text()), dict)

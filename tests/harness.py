"""Run the real exporter as a subprocess and read its /metrics, for integration tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

Series = tuple[str, frozenset[tuple[str, str]]]


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], bool], timeout: float, what: str | Callable[[], str],
             interval: float = 0.1) -> None:
    """Poll ``check`` until it is true; fail with ``what`` (or what it returns, evaluated at
    the end so it can show the last value seen) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    described = what() if callable(what) else what
    raise AssertionError(f"timed out after {timeout}s waiting for {described}")


def parse_metrics(text: str) -> dict[Series, float]:
    """Every sample in an exposition, keyed by name and label set."""
    samples: dict[Series, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def target_labels(key: str, model: str, project: str = "", **extra: str) -> dict[str, str]:
    """The built-in labels of a target's series."""
    return {"project_id": project, "key_id": key, "model": model, **extra}


class Exporter:
    """The exporter as a child process on a free loopback port."""

    def __init__(self, workdir: Path, config: Mapping[str, Any] | None, *args: str,
                 env: Mapping[str, str] | None = None) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = workdir / "config.yaml"
        self.test_period: str | None = None
        if config is not None:
            self.write_config(config)
        self.log_path = workdir / "exporter.log"
        self.args = args
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    def write_config(self, config: Mapping[str, Any]) -> None:
        """Write (or rewrite, before a reload) the YAML config. ``poll.test_period`` is no
        config key: it becomes the hidden flag ``--accounting.test-period`` (fixed periods of
        that many seconds instead of the provider's days, so periods close within a test)."""
        data = dict(config)
        if isinstance(data.get("poll"), Mapping) and "test_period" in data["poll"]:
            poll = dict(data["poll"])
            self.test_period = str(poll.pop("test_period"))
            data["poll"] = poll
        self.config_path.write_text(yaml.safe_dump(data))

    def start(self) -> Exporter:
        """Start the process; does not wait for readiness."""
        command = [sys.executable, "-m", "exporter", f"--config.file={self.config_path}",
                   f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=debug", *self.args]
        if self.test_period is not None:
            command.append(f"--accounting.test-period={self.test_period}")
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            env=self.env, cwd=self.workdir)
        return self

    def __enter__(self) -> Exporter:
        return self.start()

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.kill()

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Wait until /-/ready answers 200 (the first poll cycle is done)."""
        wait_for(lambda: self.status("/-/ready") == 200, timeout, f"{self.url}/-/ready")

    def status(self, path: str) -> int:
        """The HTTP status of GET path (0 when nothing answers); fails if the process died."""
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"exporter exited with {self.process.returncode}:\n{self.log()}")
        try:
            return requests.get(self.url + path, timeout=2).status_code
        except requests.ConnectionError:
            return 0

    def metrics(self) -> dict[Series, float]:
        """The current samples of /metrics."""
        response = requests.get(f"{self.url}/metrics", timeout=5)
        response.raise_for_status()
        return parse_metrics(response.text)

    def value(self, name: str, **labels: str) -> float | None:
        """One sample's value, or None when absent."""
        return self.metrics().get((name, frozenset(labels.items())))

    def log(self) -> str:
        """Everything the process has printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, signum: int) -> None:
        """Send a signal to the process."""
        assert self.process is not None
        self.process.send_signal(signum)

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM and wait; the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL if still running."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

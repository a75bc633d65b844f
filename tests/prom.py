"""A real Prometheus on loopback for end-to-end tests: generated config, tmp storage, HTTP API."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import requests
import yaml

from tests.harness import Exporter, free_port, wait_for
from tests.tools import require_tool

Result = list[dict[str, Any]]


def scrape_config(targets: Sequence[str], rule_files: Sequence[Path] = (),
                  interval: str = "1s") -> dict[str, Any]:
    """A prometheus.yml scraping ``targets`` (host:port) as job ``uminfer``."""
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval,
                   "scrape_timeout": interval},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [{"job_name": "uminfer",
                            "static_configs": [{"targets": list(targets)}]}],
    }


class PromQueryError(AssertionError):
    """Prometheus answered a query with an error (bad PromQL, bad parameters)."""


class Prometheus:
    """Prometheus as a child process; query it through its HTTP API."""

    def __init__(self, workdir: Path, targets: Sequence[str],
                 rule_files: Sequence[Path] = ()) -> None:
        self.binary = require_tool("prometheus")
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(scrape_config(targets, rule_files)))
        self.log_path = workdir / "prometheus.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Prometheus:
        """Start the process and wait until it is ready to answer queries."""
        command = [self.binary, f"--config.file={self.config_path}",
                   f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                   f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            cwd=self.workdir)
        wait_for(self._ready, 30, f"{self.url}/-/ready\n{self.log()}", interval=0.2)
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"prometheus exited with {self.process.returncode}:\n{self.log()}")
        try:
            return requests.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    def __enter__(self) -> Prometheus:
        return self.start()

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.stop()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (Prometheus flushes and exits), SIGKILL if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def log(self) -> str:
        """Everything Prometheus has logged so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; the ``data`` member, or PromQueryError with Prometheus's reason."""
        response = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = response.json()
        if body.get("status") != "success":
            raise PromQueryError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> Result:
        """An instant query at the current time: the vector (or a scalar as one sample)."""
        data = self.api("query", query=expr)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def query_range(self, expr: str, seconds: float = 120, step: str = "2s") -> Result:
        """A range query over the last ``seconds``: one matrix entry per series."""
        end = time.time()
        data = self.api("query_range", query=expr, start=f"{end - seconds:.3f}",
                        end=f"{end:.3f}", step=step)
        return list(data["result"])

    def label_values(self, label: str, match: str | None = None) -> list[str]:
        """Values of ``label``, optionally only on series matching ``match``."""
        params = {"match[]": match} if match else {}
        return list(self.api(f"label/{label}/values", **params))

    def series(self, match: str) -> list[dict[str, str]]:
        """Label sets of the series matching ``match``."""
        return list(self.api("series", **{"match[]": match}))

    def wait_query(self, expr: str, timeout: float,
                   check: Callable[[Result], bool] = bool) -> Result:
        """Poll an instant query until ``check(result)`` holds; the last result."""
        last: list[Result] = [[]]

        def probe() -> bool:
            last[0] = self.query(expr)
            return check(last[0])

        try:
            wait_for(probe, timeout, f"PromQL {expr}", interval=0.5)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last result: {last[0]}\n{self.log()}") from None
        return last[0]


def values(result: Result) -> dict[frozenset[tuple[str, str]], float]:
    """An instant vector as {label set without __name__: value}."""
    return {frozenset((k, v) for k, v in sample["metric"].items() if k != "__name__"):
            float(sample["value"][1]) for sample in result}


@contextmanager
def scraped_exporter(workdir: Path, config: Mapping[str, Any]
                     ) -> Iterator[tuple[Exporter, Prometheus, int]]:
    """An exporter on ``config``, ready, scraped by a real Prometheus; and the first whole
    second after it was ready (usage from then on is certainly inside what it counts)."""
    with Exporter(workdir, config) as exporter:
        exporter.wait_ready()
        started = int(time.time()) + 1
        wait_for(lambda: time.time() >= started, 2, "the next second")
        with Prometheus(workdir, [f"127.0.0.1:{exporter.port}"]) as prometheus:
            yield exporter, prometheus, started

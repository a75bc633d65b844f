"""Abusive HTTP clients, a concurrent scraper and a process monitor (loopback only).

Shared by tests/e2e/test_abuse.py (which asserts the bounds) and the benchmark (which reports the
numbers). Every loop is bounded in count and in time.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import resource
import select
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import samples, simproc

ROOT = Path(__file__).resolve().parent.parent

PARTIAL_HEAD = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: abuse\r\n"
# A whole head, no password, announcing a body that never comes (issue #26, N2).
PENDING_HEAD = b"GET /-/healthy HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 60000\r\n\r\n"


def allow_sockets(count: int) -> None:
    """Raise this process's open-file limit so ``count`` client sockets fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = count + 512
    if soft != resource.RLIM_INFINITY and soft < wanted:
        limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


@dataclass
class Scrapes:
    """Latencies (seconds) and failures of one phase of scraping."""

    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.latencies) if self.latencies else float("nan")

    @property
    def worst(self) -> float:
        return max(self.latencies, default=float("nan"))


class Scraper:
    """GETs /metrics on a fresh connection every ``gap`` seconds, into the current phase."""

    def __init__(self, port: int, gap: float = 0.05, timeout: float = 10.0,
                 headers: dict[str, str] | None = None) -> None:
        self._port, self._gap, self._timeout = port, gap, timeout
        self._headers = {"Accept-Encoding": "gzip", **(headers or {})}
        self.phases: dict[str, Scrapes] = {}
        self._phase = "before"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scraper", daemon=True)

    def phase(self, name: str) -> None:
        """Record what follows under ``name``."""
        self._phase = name

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(self._timeout + 5)

    def _run(self) -> None:
        while not self._stop.is_set():
            scrapes = self.phases.setdefault(self._phase, Scrapes())
            began = time.monotonic()
            try:
                status = self._scrape()
                if status != 200:
                    scrapes.failures.append(f"HTTP {status}")
            except (OSError, http.client.HTTPException) as error:
                scrapes.failures.append(f"{type(error).__name__}: {error}")
            scrapes.latencies.append(time.monotonic() - began)
            self._stop.wait(self._gap)

    def _scrape(self) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self._port, timeout=self._timeout)
        try:
            conn.request("GET", "/metrics", headers=self._headers)
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()


@dataclass
class Usage:
    """The largest thread count and resident memory seen in a process."""

    threads: int = 0
    rss_kib: int = 0

    def add(self, threads: int, rss_kib: int) -> None:
        self.threads = max(self.threads, threads)
        self.rss_kib = max(self.rss_kib, rss_kib)


def process_status(pid: int) -> tuple[int, int]:
    """(threads, VmRSS KiB) of ``pid`` from /proc."""
    fields: dict[str, str] = {}
    with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return int(fields["Threads"]), int(fields["VmRSS"].split()[0])


@contextmanager
def monitoring(pid: int, every: float = 0.1) -> Iterator[Usage]:
    """Sample ``pid``'s threads and memory until the block ends."""
    usage, stop = Usage(), threading.Event()

    def sample() -> None:
        while True:
            with contextlib.suppress(OSError):
                usage.add(*process_status(pid))
            if stop.wait(every):
                return

    thread = threading.Thread(target=sample, name="monitor", daemon=True)
    thread.start()
    try:
        yield usage
    finally:
        stop.set()
        thread.join(5)


def open_connections(port: int, count: int, first: bytes = PARTIAL_HEAD,
                     within: float = 10.0) -> list[socket.socket]:
    """``count`` non-blocking connections that sent ``first`` (by default a request head
    that never ends) and nothing else."""
    sockets: list[socket.socket] = []
    poller = select.poll()
    try:
        for _ in range(count):
            sock = socket.socket()
            sockets.append(sock)
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
            poller.register(sock, select.POLLOUT)
        by_fd = {sock.fileno(): sock for sock in sockets}
        deadline = time.monotonic() + within
        while by_fd and time.monotonic() < deadline:
            for fd, _event in poller.poll(200):
                with contextlib.suppress(OSError):
                    by_fd[fd].send(first)
                poller.unregister(fd)
                del by_fd[fd]
    except BaseException:
        close_all(sockets)
        raise
    return sockets


def close_all(sockets: list[socket.socket]) -> None:
    """Hang up every socket at once."""
    for sock in sockets:
        sock.close()


def trickle(sockets: list[socket.socket], seconds: float, gap: float = 1.0,
            data: bytes = PARTIAL_HEAD + b"X-Slow: " + b"a" * 1000) -> int:
    """Send each socket its next byte every ``gap`` seconds; how many the server closed."""
    sent = [0] * len(sockets)
    closed: set[int] = set()
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        for i, sock in enumerate(sockets):
            if i in closed:
                continue
            try:
                sock.send(data[sent[i]:sent[i] + 1])
                sent[i] += 1
                if sock.recv(1) == b"":
                    closed.add(i)
            except BlockingIOError:
                continue
            except OSError:
                closed.add(i)
        time.sleep(max(0.0, min(gap, until - time.monotonic())))
    return len(closed)


def slow_readers(port: int, count: int, seconds: float, path: str = "/metrics") -> int:
    """``count`` clients that ask for ``path`` and read the answer a byte a second; the
    number of bytes they got in total."""
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        sock.setblocking(False)
        sockets.append(sock)
    received = 0
    until = time.monotonic() + seconds
    try:
        while time.monotonic() < until:
            for sock in sockets:
                with contextlib.suppress(BlockingIOError, OSError):
                    received += len(sock.recv(1))
            time.sleep(1.0)
    finally:
        close_all(sockets)
    return received

def hold_pending(port: int, count: int, seconds: float) -> int:
    """``count`` connections that each send PENDING_HEAD and no body, each re-opened as soon
    as the server answers or closes it, for ``seconds``; how many times one was re-opened."""
    poller = selectors.DefaultSelector()

    def open_one() -> None:
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        poller.register(sock, selectors.EVENT_WRITE)

    for _ in range(count):
        open_one()
    reopened = 0
    until = time.monotonic() + seconds
    try:
        while time.monotonic() < until:
            for key, _ in poller.select(0.2):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if key.events == selectors.EVENT_WRITE:
                    with contextlib.suppress(OSError):
                        sock.send(PENDING_HEAD)
                        poller.modify(sock, selectors.EVENT_READ)
                        continue
                poller.unregister(sock)  # answered, closed or refused: at it again
                sock.close()
                open_one()
                reopened += 1
    finally:
        for key in list(poller.get_map().values()):
            assert isinstance(key.fileobj, socket.socket)
            key.fileobj.close()
        poller.close()
    return reopened


def sleep(seconds: float) -> None:
    """Wait (a named step, so a test reads as a timeline)."""
    time.sleep(seconds)


@dataclass(frozen=True)
class AbuseSizes:
    """How hard to push; the defaults are issue #16's."""

    targets: int = 100
    flood: int = 3000
    slowloris: int = 500
    slowloris_seconds: float = 12.0  # past the 10 s header deadline
    slow_readers: int = 20
    slow_read_seconds: float = 6.0
    pending: int = 2048  # issue #26: 4x the default connection cap
    pending_seconds: float = 12.0  # past the 10 s header deadline that once held each
    hold: float = 3.0  # seconds of scraping during the flood and after each abuse


def exporter_config(url: str, targets: int) -> dict[str, object]:
    """A config for the exporter against a bench simulator (``python -m bench.simproc``)."""
    return {
        "api": {"endpoint": url, "public_key": simproc.PUBLIC_KEY,
                "private_key": simproc.PRIVATE_KEY, "rate_limit": 0, "max_concurrency": 4},
        "poll": {"interval": "5s"},
        "windows": ["1h", "24h"],
        "targets": [{"project": t.project, "key": t.key, "model": t.model,
                     "labels": dict(t.labels)} for t in samples.targets(targets)],
    }


@contextmanager
def exporter_process(workdir: Path, targets: int) -> Iterator[tuple[int, int]]:
    """The simulator and the real exporter (``python -m exporter``) in their own processes;
    yields the exporter's (pid, port) once it is ready."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    sim = subprocess.Popen([sys.executable, "-m", "bench.simproc", str(targets), "0"],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    child: subprocess.Popen[bytes] | None = None
    try:
        assert sim.stdout is not None
        config = workdir / "config.yaml"
        config.write_text(json.dumps(exporter_config(sim.stdout.readline().strip(), targets)))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        with (workdir / "exporter.log").open("wb") as log:
            child = subprocess.Popen(
                [sys.executable, "-m", "exporter", f"--config.file={config}",
                 f"--web.listen-address=127.0.0.1:{port}"],
                stdout=subprocess.DEVNULL, stderr=log, env=env)
        _wait_ready(port, child)
        yield child.pid, port
    finally:
        if child is not None:
            child.kill()
            child.wait(10)
        for pipe in (sim.stdin, sim.stdout):
            if pipe is not None:
                pipe.close()
        sim.kill()
        sim.wait(10)


def _wait_ready(port: int, child: subprocess.Popen[bytes], seconds: float = 60.0) -> None:
    until = time.monotonic() + seconds
    while time.monotonic() < until and child.poll() is None:
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            try:
                conn.request("GET", "/-/ready")
                if conn.getresponse().status == 200:
                    return
            finally:
                conn.close()
        time.sleep(0.2)
    raise RuntimeError("the exporter did not become ready")


def run_bench(sizes: AbuseSizes) -> dict[str, Any]:
    """Every abuse against one exporter process, with a scraper throughout: latencies per
    phase, and the peak threads and memory of the exporter."""
    allow_sockets(sizes.flood + 100)
    load = os.getloadavg()[0]  # the cores may be shared: say how busy they were
    with tempfile.TemporaryDirectory() as workdir, exporter_process(
            Path(workdir), sizes.targets) as (pid, port):
        before = process_status(pid)
        with monitoring(pid) as usage, Scraper(port) as scraper:
            sleep(sizes.hold)
            scraper.phase("during the flood")
            with flood_elsewhere(port, sizes.flood):
                sleep(sizes.hold)
            scraper.phase("after the flood")
            sleep(sizes.hold)
            scraper.phase("during the slowloris")
            cut = slowloris_elsewhere(port, sizes.slowloris, sizes.slowloris_seconds)
            scraper.phase("after the slowloris")
            sleep(sizes.hold)
            scraper.phase("during the slow reads")
            slow_readers(port, sizes.slow_readers, sizes.slow_read_seconds)
            scraper.phase("after the slow reads")
            sleep(sizes.hold)
            scraper.phase("during the pending bodies")
            with pending_elsewhere(port, sizes.pending, sizes.pending_seconds):
                pass
            scraper.phase("after the pending bodies")
            sleep(sizes.hold)
    return {"sizes": sizes, "load": load, "threads_before": before[0],
            "rss_before_mib": before[1] / 1024,
            "threads_peak": usage.threads, "rss_peak_mib": usage.rss_kib / 1024,
            "slowloris_cut": cut, "phases": scraper.phases}


@contextmanager
def flood_elsewhere(port: int, count: int) -> Iterator[None]:
    """``count`` half-open requests from another process (so the scraper here does not share
    a GIL with the flood), held until the block ends, then all dropped at once."""
    with _elsewhere("flood", port, count) as child:
        assert child.stdout is not None
        child.stdout.readline()  # "ready": every connection is open
        yield


def slowloris_elsewhere(port: int, count: int, seconds: float) -> int:
    """``count`` slowloris clients in another process for ``seconds``; how many the server
    closed by then."""
    with _elsewhere("slowloris", port, count, seconds) as child:
        assert child.stdout is not None
        child.stdout.readline()
        return int(child.stdout.readline())


@contextmanager
def pending_elsewhere(port: int, count: int, seconds: float) -> Iterator[None]:
    """``count`` connections holding PENDING_HEAD from another process for ``seconds`` (each
    re-opened when the server drops it); the block runs meanwhile, and its end waits for them."""
    with _elsewhere("pending", port, count, seconds) as child:
        assert child.stdout is not None
        child.stdout.readline()
        yield
        child.stdout.readline()  # the re-open count: they are done


@contextmanager
def _elsewhere(kind: str, *args: object) -> Iterator[subprocess.Popen[str]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-m", "bench.abuse", kind, *map(str, args)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        yield child
    finally:
        for pipe in (child.stdin, child.stdout):
            if pipe is not None:
                pipe.close()  # stdin's EOF: hang up
        child.wait(30)


def main(argv: list[str]) -> int:
    """``python -m bench.abuse flood PORT COUNT``, ``slowloris PORT COUNT SECONDS`` or
    ``pending PORT COUNT SECONDS``."""
    kind, port, count = argv[0], int(argv[1]), int(argv[2])
    allow_sockets(count)
    if kind == "pending":
        print("ready", flush=True)
        print(hold_pending(port, count, float(argv[3])), flush=True)
        return 0
    sockets = open_connections(port, count, first=PARTIAL_HEAD if kind == "flood" else b"")
    print("ready", flush=True)
    try:
        if kind == "flood":
            sys.stdin.read()
        else:
            print(trickle(sockets, float(argv[3])), flush=True)
    finally:
        close_all(sockets)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

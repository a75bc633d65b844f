"""/metrics latency from the cached exposition, against generate_latest of the same samples."""

from __future__ import annotations

import http.client
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest

from bench import samples
from exporter.metrics.exposition import ExpositionCache
from exporter.metrics.selfmetrics import SelfMetrics
from exporter.web.server import Endpoints, MetricsServer


@dataclass(frozen=True)
class ScrapeResult:
    """Medians in seconds at one size; ratios are against generate_latest in the same run."""

    targets: int
    body_bytes: int
    gzip_bytes: int
    publish: float  # render + gzip, once per cycle, off the scrape path
    plain: float
    gzip: float
    client_python: float
    first_plain: float = float("nan")  # the cycle's first plain scrape: it decompresses

    @property
    def plain_ratio(self) -> float:
        """Plain scrape latency as a fraction of generate_latest's rendering time."""
        return self.plain / self.client_python

    @property
    def gzip_ratio(self) -> float:
        """Gzip scrape latency as a fraction of generate_latest's rendering time."""
        return self.gzip / self.client_python


def median_time(action: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``repeat`` runs of ``action``."""
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        action()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def _get(port: int, compressed: bool) -> int:
    """One GET /metrics on a fresh connection, as Prometheus does; the bytes received."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        headers = {"Accept-Encoding": "gzip"} if compressed else {}
        conn.request("GET", "/metrics", headers=headers)
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"/metrics answered HTTP {response.status}")
        return len(body)
    finally:
        conn.close()


def run(count: int, repeat: int, compare: bool = True) -> ScrapeResult:
    """Serve a ``count``-target exposition over loopback and time scrapes of it."""
    snap = samples.snapshot(count)
    cache = ExpositionCache()
    publish = median_time(lambda: cache.publish(snap), max(1, repeat // 2))
    registry = CollectorRegistry()
    SelfMetrics(registry)  # the real server appends these to every scrape
    endpoints = Endpoints(cache=cache, registry=registry, ready=threading.Event(),
                          reload=lambda: None)
    server = MetricsServer("127.0.0.1", 0, endpoints)
    server.start()
    try:
        _get(server.port, True)  # warm up: first connection, page cache
        first_plain = median_time(lambda: _get(server.port, False), 1)
        plain = median_time(lambda: _get(server.port, False), repeat)
        gzipped = median_time(lambda: _get(server.port, True), repeat)
    finally:
        server.close()
    client = samples.client_registry(snap)
    reference = median_time(lambda: generate_latest(client), repeat) if compare else float("nan")
    return ScrapeResult(count, len(cache.body(False)), len(cache.body(True)), publish, plain,
                        gzipped, reference, first_plain)

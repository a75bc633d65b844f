"""Load: 50 concurrent scrapers on /metrics for a bounded time while polls run (loopback only)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from exporter.core.usage import Totals
from tests import fleet
from tests.harness import Exporter, wait_for
from tests.paths import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.alone]  # it times scrapes: no neighbour

SCRAPERS = 50
SECONDS = 5.0
KEYS = [f"k-load-{i}" for i in range(20)]
SANITY_P99 = 2.0  # seconds; a generous bound, not a benchmark
REPORT = ROOT / ".work" / "load.txt"


@dataclass
class Tally:
    """Latencies and errors of every scraper, merged under a lock."""

    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _scraper(url: str, until: float, tally: Tally) -> None:
    mine: list[float] = []
    errors: list[str] = []
    with requests.Session() as session:
        while time.monotonic() < until:
            began = time.monotonic()
            try:
                response = session.get(url, timeout=10)
                if response.status_code != 200 or "uminfer_up" not in response.text:
                    errors.append(f"HTTP {response.status_code}")
            except requests.RequestException as exc:
                errors.append(type(exc).__name__)
            mine.append(time.monotonic() - began)
    with tally.lock:
        tally.latencies += mine
        tally.errors += errors


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def _cycles(child: Exporter) -> float:
    return child.value("uminfer_poll_duration_seconds_count") or 0.0


def test_fifty_scrapers_do_not_disturb_polling(tmp_path: Path) -> None:
    usage = Totals(3, 2, 5, 1, 0)
    with fleet.simulator() as sim, fleet.exporter(tmp_path, fleet.fleet_config(sim.url, KEYS),
                                                  "--log.level=info") as child:
        cycles_before = _cycles(child)
        tally = Tally()
        until = time.monotonic() + SECONDS
        threads = [threading.Thread(target=_scraper, args=(f"{child.url}/metrics", until, tally))
                   for _ in range(SCRAPERS)]
        for thread in threads:
            thread.start()
        added = 0
        while time.monotonic() < until:  # usage keeps arriving while the scrapers hammer
            for key in KEYS:
                fleet.add_usage(sim, key, usage)
            added += 1
            time.sleep(1.0)
        for thread in threads:
            thread.join()
        cycles = _cycles(child) - cycles_before
        expected = Totals(*(v * added for v in usage.values()))
        wait_for(lambda: all(fleet.counters(child.metrics(), k) == expected for k in KEYS), 10,
                 "every target's counters to match the usage added under load")
        truth = fleet.as_totals(sim.store.truth(fleet.PROJECT, KEYS[0], fleet.MODEL, 0,
                                                  int(time.time()) + 1))
        assert child.stop() == 0
    served, p99 = len(tally.latencies), _p99(tally.latencies)
    line = (f"load: {SCRAPERS} scrapers x {SECONDS:g}s, {served} scrapes served "
            f"({served / SECONDS:.0f}/s), p99 {p99 * 1000:.1f} ms, max "
            f"{max(tally.latencies) * 1000:.1f} ms, errors {len(tally.errors)}, "
            f"poll cycles during load {cycles:g}")
    print(line)
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(line + "\n")
    assert tally.errors == []
    assert served >= SCRAPERS
    assert p99 < SANITY_P99
    assert cycles >= SECONDS - 2  # 1 s interval: polling kept its pace under load
    assert truth == expected

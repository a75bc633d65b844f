"""The simulator in its own process, so the exporter's CPU and memory can be measured apart.

Run as ``python -m bench.simproc TARGETS LATENCY``: prints its URL, serves until stdin closes,
then prints one JSON line with its own CPU time and how many API calls it answered.
"""

from __future__ import annotations

import json
import resource
import sys

from bench import samples
from exporter.simulator.faults import FaultPlan
from exporter.simulator.server import SimulatorServer
from exporter.simulator.store import Event, EventStore
from exporter.simulator.usage import Usage, WallClock

PUBLIC_KEY = "bench-public"
PRIVATE_KEY = "bench-private"  # a throwaway credential for loopback only


def store_for(count: int, now: float) -> EventStore:
    """One event per target a minute ago: every answer carries usage, none is expensive."""
    store = EventStore()
    store.add_many(
        Event(int(now) - 60, now - 60, t.project, t.key, t.model, Usage(100, 20, 120, 1, 0))
        for t in samples.targets(count))
    return store


def main(argv: list[str]) -> int:
    """Serve until stdin is closed; report CPU seconds and calls answered."""
    count, latency = int(argv[0]), float(argv[1])
    clock = WallClock()
    faults = FaultPlan(seed=1)
    faults.set_latency(latency)
    server = SimulatorServer(store_for(count, clock.time()), {PUBLIC_KEY: PRIVATE_KEY}, clock,
                             faults)
    with server:
        print(server.url, flush=True)
        sys.stdin.read()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        stats = server.stats()
    print(json.dumps({"cpu": usage.ru_utime + usage.ru_stime, "calls": stats.calls,
                      "ok": stats.by_retcode.get(0, 0), "by_action": dict(stats.by_action)}),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

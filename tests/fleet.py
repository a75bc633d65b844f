"""Many targets, one simulator, one exporter process: shared by the hardening test modules."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from exporter.core.clock import SystemClock
from exporter.core.usage import Totals
from exporter.simulator import BucketPolicy, Event, EventStore, SimulatorServer
from exporter.simulator.usage import Usage
from tests.harness import Exporter, Series

PUBLIC = "fleet-public-key"
# Long and distinctive, so a grep for it cannot match anything by accident.
PRIVATE = "fleet-PRIVATE-8f3c1e9a7b2d4f60a1c5e7d9b3f2a4c6"
PROJECT = "org-fleet"
MODEL = "deepseek-ai/DeepSeek-V3"
QUANTITIES = {
    "uminfer_input_tokens_total": "input_tokens", "uminfer_output_tokens_total": "output_tokens",
    "uminfer_tokens_total": "tokens", "uminfer_requests_total": "requests",
    "uminfer_image_generations_total": "image_generations",
}


def fleet_config(endpoint: str, keys: Iterable[str],
                 **sections: Mapping[str, Any] | list[str]) -> dict[str, Any]:
    """A fast-polling config with one target per key; ``sections`` override parts of it."""
    config: dict[str, Any] = {
        "api": {"endpoint": endpoint, "public_key": PUBLIC, "private_key": "${FLEET_PRIVATE_KEY}",
                "timeout": "2s", "rate_limit": 0, "max_concurrency": 64},
        "poll": {"interval": "1s", "settle": "20s"},
        "advanced": {"window_interval": "1h", "permanent_error_retry": "1s"},
        "windows": [],
        "targets": [{"project": PROJECT, "key": key, "model": MODEL} for key in keys],
    }
    for name, values in sections.items():
        config[name] = {**config.get(name, {}), **values} if isinstance(values, dict) else values
    return config


def labels(key: str, **extra: str) -> frozenset[tuple[str, str]]:
    """The label set of a fleet target's series."""
    return frozenset({"project_id": PROJECT, "key_id": key, "model": MODEL, **extra}.items())


def counters(samples: Mapping[Series, float], key: str, **extra: str) -> Totals | None:
    """A target's five counters from parsed /metrics (``extra``: labels beyond the built-in
    ones, e.g. discovery's key_name), or None when it is not exported."""
    series = labels(key, **extra)
    found = {field: samples.get((name, series)) for name, field in QUANTITIES.items()}
    if any(value is None for value in found.values()):
        return None
    return Totals(**{field: int(value or 0) for field, value in found.items()})


def value(samples: Mapping[Series, float], name: str, key: str, **extra: str) -> float | None:
    """One per-target sample."""
    return samples.get((name, labels(key, **extra)))


def sim_usage(totals: Totals) -> Usage:
    """The simulator's record of ``totals``: it shares no type with the exporter."""
    return Usage(*totals.values())


def as_totals(usage: Usage) -> Totals:
    """The exporter's Totals for the simulator's ``usage``, to compare what each side says."""
    return Totals(usage.input_tokens, usage.output_tokens, usage.tokens, usage.requests,
                  usage.image_generations)


def add_usage(sim: SimulatorServer, key: str, totals: Totals, ts: int | None = None) -> int:
    """Usage for ``key`` at ``ts`` (default: the current second), visible at once; its ts."""
    at = int(time.time()) if ts is None else ts
    sim.store.add(Event(at, at, PROJECT, key, MODEL, sim_usage(totals)))
    return at


#: An API that labels usage by the second: the tests here run 10 s periods, which minute buckets
#: would rightly widen to 60 s (tests/e2e/test_window_semantics.py covers that).
SECOND_BUCKETS = BucketPolicy(1)


@contextmanager
def simulator() -> Iterator[SimulatorServer]:
    """An empty simulator on loopback that knows the fleet's key pair."""
    with SimulatorServer(EventStore(), {PUBLIC: PRIVATE}, SystemClock(),
                         buckets=SECOND_BUCKETS) as sim:
        yield sim


@contextmanager
def exporter(workdir: Path, config: Mapping[str, Any], *args: str,
             ready: bool = True) -> Iterator[Exporter]:
    """The exporter as a child process (debug logs), killed on the way out whatever happens."""
    child = Exporter(workdir, config, *args, env={"FLEET_PRIVATE_KEY": PRIVATE})
    child.start()
    try:
        if ready:
            child.wait_ready()
        yield child
    finally:
        child.kill()

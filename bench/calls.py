"""API calls per target per poll at the defaults: the whole exporter against the simulator on a
fake clock, every cycle started an interval after the one before, as ``Service.run`` does."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from exporter.config import ApiConfig, Config, Target
from exporter.core.clock import FakeClock
from exporter.service import Service
from exporter.simulator.build import (
    DEMO_PRIVATE_KEY,
    DEMO_PROJECT,
    DEMO_PUBLIC_KEY,
    build_simulator,
)

START = 1_767_225_600.0  # 2026-01-01 00:00 UTC: no provider midnight in the next hours
MODELS = ("deepseek-ai/DeepSeek-V3", "Qwen/Qwen2.5-72B-Instruct")


@dataclass(frozen=True)
class Steady:
    """What ``polls`` steady polls cost the API, by action, and what the exporter showed."""

    calls: dict[str, int]
    body: str  # the last /metrics body
    elapsed: float  # fake seconds the polls took
    targets: int


def steady(polls: int) -> Steady:
    """``polls`` steady polls of 4 targets of one project (default config: windows 1h and 24h,
    key health on), each cycle started an interval after the one before."""
    clock = FakeClock(START)
    with build_simulator(3, 3, 3, clock, backfill=0, tick=60) as sim:
        targets = tuple(Target(f"uminferapikey-demo{k:02d}", m, DEMO_PROJECT)
                        for k in (1, 3) for m in MODELS)
        config = Config(api=ApiConfig(endpoint=sim.url, public_key=DEMO_PUBLIC_KEY,
                                      private_key=DEMO_PRIVATE_KEY, timeout=5),
                        targets=targets)
        service = Service(config, clock, CollectorRegistry(), lambda: config)
        try:
            service.run_cycle()  # learns the API's clock and starts counting
            sim.reset_stats()
            started = clock.monotonic()
            for poll in range(1, polls + 1):
                # As Service.run does (pacing inside a cycle takes fake time: only the rest
                # of the interval is waited).
                clock.advance(max(0.0, started + poll * config.poll.interval
                                  - clock.monotonic()))
                service.run_cycle()
            body = service.cache.body(False).decode()
            elapsed = clock.monotonic() - started
        finally:
            service.stop()
        return Steady(dict(sim.stats().by_action), body, elapsed, len(targets))


def per_poll(polls: int) -> dict[str, float]:
    """Usage reads, key listings and all calls per target per poll over ``polls`` steady
    polls (see :func:`steady`)."""
    run = steady(polls)
    polled = run.targets * polls
    usage = run.calls.get("GetUMInferTokenUsage", 0) / polled
    listings = run.calls.get("ListUMInferAPIKey", 0) / polled
    return {"usage": usage, "listings": listings, "all": sum(run.calls.values()) / polled,
            "polls": float(polls), "targets": float(run.targets)}

"""API calls per target per poll at the defaults: the whole exporter against the simulator on a
fake clock, every cycle started an interval after the one before, as ``Service.run`` does."""

from __future__ import annotations

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


def per_poll(polls: int) -> dict[str, float]:
    """Usage reads, key listings and all calls per target per poll over ``polls`` steady
    polls of 4 targets of one project (default config: windows 1h and 24h, key health on)."""
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
                clock.advance(max(0.0, started + poll * config.poll.interval
                                  - clock.monotonic()))
                service.run_cycle()
        finally:
            service.stop()
        by_action = sim.stats().by_action
    polled = len(targets) * polls
    usage = by_action.get("GetUMInferTokenUsage", 0) / polled
    listings = by_action.get("ListUMInferAPIKey", 0) / polled
    return {"usage": usage, "listings": listings, "all": sum(by_action.values()) / polled,
            "polls": float(polls), "targets": float(len(targets))}

"""Ready-made demo targets and a fully wired simulator (used by ``--demo`` and the CLI)."""

from __future__ import annotations

from exporter.simulator.buckets import BucketPolicy
from exporter.simulator.faults import FaultPlan
from exporter.simulator.server import SimulatorServer
from exporter.simulator.store import EventStore
from exporter.simulator.traffic import TargetSpec, TrafficGenerator
from exporter.simulator.usage import Clock

DEMO_PUBLIC_KEY = "demo-public"
DEMO_PRIVATE_KEY = "demo-private"  # a published demo credential, not a secret
DEMO_PROJECT = "org-demo"
DEMO_MODELS = (
    "deepseek-ai/DeepSeek-V3",
    "Qwen/Qwen2.5-72B-Instruct",
    "black-forest-labs/FLUX.1-schnell",
    "deepseek-ai/DeepSeek-R1",
    "moonshotai/Kimi-K2-Instruct",
)


def demo_targets(keys: int, models: int) -> list[TargetSpec]:
    """``keys`` x ``models`` targets; keys differ in how busy they are."""
    if not 1 <= models <= len(DEMO_MODELS):
        raise ValueError(f"models must be between 1 and {len(DEMO_MODELS)}, got {models}")
    if keys < 1:
        raise ValueError(f"keys must be at least 1, got {keys}")
    return [
        TargetSpec(f"uminferapikey-demo{k + 1:02d}", model, DEMO_PROJECT, rate=0.2 * (k + 1))
        for k in range(keys)
        for model in DEMO_MODELS[:models]
    ]


def build_simulator(
    seed: int,
    keys: int,
    models: int,
    clock: Clock,
    *,
    public_key: str = DEMO_PUBLIC_KEY,
    private_key: str = DEMO_PRIVATE_KEY,
    backfill: float = 86400.0,
    tick: float = 5.0,
    late_fraction: float = 0.1,
    late_max: float = 30.0,
    latency: float = 0.0,
    host: str = "127.0.0.1",
    port: int = 0,
    buckets: BucketPolicy | None = None,
) -> SimulatorServer:
    """A simulator with seeded traffic for the demo targets and ``backfill`` seconds of history.

    Not started: call ``start()`` (or use it as a context manager).
    """
    store = EventStore()
    traffic = TrafficGenerator(
        store, demo_targets(keys, models), seed, clock, tick,
        late_fraction=late_fraction, late_max=late_max,
    )
    if backfill > 0:
        traffic.backfill(backfill)
    faults = FaultPlan(seed)
    faults.set_latency(latency, latency / 2)
    return SimulatorServer(
        store, {public_key: private_key}, clock, faults, traffic, host=host, port=port,
        buckets=buckets,
    )

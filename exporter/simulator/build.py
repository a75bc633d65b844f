"""Ready-made demo targets and a fully wired simulator (used by ``--demo`` and the CLI)."""

from __future__ import annotations

from exporter.simulator.buckets import BucketPolicy
from exporter.simulator.catalog import Catalog, SimKey, SimModel
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

#: List prices of the demo models, in the units the vendor writes (per 1M tokens, per 1K
#: tokens, per image), so that reading a unit wrong shows on ``--demo``.
DEMO_CATALOG = (
    SimModel("deepseek-ai/DeepSeek-V3", prompt=2.0, completion=8.0, currency="CNY",
             unit="元/百万tokens", unit_en="CNY / 1M tokens"),
    SimModel("Qwen/Qwen2.5-72B-Instruct", prompt=0.004, completion=0.012, currency="CNY",
             unit="元/千tokens", unit_en="per 1K tokens", tokens_per_price=1000),
    SimModel("black-forest-labs/FLUX.1-schnell", kind=2, image=0.2, currency="CNY",
             unit="元/张", unit_en="per image"),
    SimModel("deepseek-ai/DeepSeek-R1", prompt=4.0, completion=16.0, currency="CNY"),
    SimModel("moonshotai/Kimi-K2-Instruct", prompt=4.0, completion=16.0, currency="CNY"),
)
DEMO_KEY_NAMES = ("search-prod", "chat-staging", "batch-reports")
DAY = 86400


def demo_catalog(keys: int, now: float) -> Catalog:
    """The demo keys with quotas and expiry, and the demo models with list prices.

    The third key has used 93 % of its daily limit (and has no monthly one: "0"); the second
    expires in five days; all three expire some day and have a limit. Further keys have no
    limits and never expire. The first
    two are metered: their used amounts grow with what they spend (``simulator.spend``), so
    the exporter's cost can be reconciled with the cloud's on ``--demo``.
    """
    catalog = Catalog()
    for model in DEMO_CATALOG:
        catalog.add_model(model)
    shaped = (
        SimKey(DEMO_PROJECT, _demo_key(0), DEMO_KEY_NAMES[0], _demo_secret(0),
               expire_time=int(now) + 90 * DAY, daily_limit="10000.00",
               monthly_limit="300000.00", monthly_used="310.75", metered=True),
        SimKey(DEMO_PROJECT, _demo_key(1), DEMO_KEY_NAMES[1], _demo_secret(1),
               expire_time=int(now) + 5 * DAY, monthly_limit="500000", monthly_used="42.1",
               metered=True),
        SimKey(DEMO_PROJECT, _demo_key(2), DEMO_KEY_NAMES[2], _demo_secret(2),
               expire_time=int(now) + 60 * DAY, daily_limit="20.00", daily_used="18.60",
               monthly_limit="0", monthly_used="402.35"),
    )
    for k in range(keys):
        catalog.add_key(shaped[k] if k < len(shaped) else SimKey(
            DEMO_PROJECT, _demo_key(k), f"demo-{k + 1:02d}", _demo_secret(k)))
    return catalog


def _demo_key(index: int) -> str:
    return f"uminferapikey-demo{index + 1:02d}"


def _demo_secret(index: int) -> str:
    return f"sk-demo-secret-{index + 1:02d}"  # published demo values, like DEMO_PRIVATE_KEY


def demo_targets(keys: int, models: int) -> list[TargetSpec]:
    """``keys`` x ``models`` targets; keys differ in how busy they are."""
    if not 1 <= models <= len(DEMO_MODELS):
        raise ValueError(f"models must be between 1 and {len(DEMO_MODELS)}, got {models}")
    if keys < 1:
        raise ValueError(f"keys must be at least 1, got {keys}")
    return [
        TargetSpec(_demo_key(k), model, DEMO_PROJECT, rate=0.2 * (k + 1))
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
        buckets=buckets, catalog=demo_catalog(keys, clock.time()),
    )

"""``--demo``: the built-in simulator and the exporter in one process, no credentials needed."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from decimal import Decimal

from exporter.config import (
    ApiConfig,
    BudgetConfig,
    Config,
    KeysConfig,
    PollConfig,
    PricingConfig,
    StateConfig,
    Target,
    Window,
)
from exporter.core.clock import SystemClock
from exporter.simulator import build_simulator, demo_targets
from exporter.simulator.build import DEMO_PRIVATE_KEY, DEMO_PUBLIC_KEY

log = logging.getLogger(__name__)

DEMO_SEED = 20261129
DEMO_KEYS = 3
DEMO_MODELS = 3  # two chat models and one image model
# Prices are the simulator's list prices, read with their units (per 1M tokens, per 1K
# tokens, per image: simulator.build.DEMO_CATALOG), so the cost panels show what the API lists.
DEMO_CURRENCY = "CNY"
DEMO_BUDGETS = (
    BudgetConfig("demo-daily-tokens", "daily", tokens=5_000_000),
    BudgetConfig("demo-monthly-spend", "monthly", cost=Decimal("300"), currency=DEMO_CURRENCY),
)


def demo_config(endpoint: str, state_path: str | None) -> Config:
    """A config that polls every demo target every 2 s, fast enough to watch numbers rise."""
    targets = tuple(
        Target(spec.key, spec.model, spec.project, (("team", f"team-{i % 2 + 1}"),))
        for i, spec in enumerate(demo_targets(DEMO_KEYS, DEMO_MODELS)))
    return Config(
        api=ApiConfig(endpoint=endpoint, public_key=DEMO_PUBLIC_KEY, private_key=DEMO_PRIVATE_KEY,
                      timeout=5.0, rate_limit=0.0),
        # The simulator delivers up to 30 s late; settle covers it.
        poll=PollConfig(interval=2.0, settle=60, window_interval=10.0),
        state=StateConfig(path=state_path),
        windows=(Window("1h", 3600), Window("24h", 86400)),
        targets=targets,
        pricing=PricingConfig(currency=DEMO_CURRENCY, from_api=True),
        budgets=DEMO_BUDGETS,
        # Quotas and expiry of the demo keys (one near its daily limit, one expiring soon).
        keys=KeysConfig(interval=10.0),
    )


Serve = Callable[[argparse.Namespace, Config, Callable[[], Config]], int]


def run_demo(args: argparse.Namespace, serve: Serve) -> int:
    """Start the simulator on loopback, then serve the exporter against it until stopped."""
    simulator = build_simulator(DEMO_SEED, DEMO_KEYS, DEMO_MODELS, SystemClock(), tick=1.0)
    endpoint = simulator.start()
    log.info("demo: simulator serving %d targets with a day of history at %s",
             DEMO_KEYS * DEMO_MODELS, endpoint)
    config = demo_config(endpoint, args.state_path)
    try:
        return serve(args, config, lambda: config)
    finally:
        simulator.stop()

"""Both YAML files an operator writes: read once, every problem collected, frozen values out.

Owns the config's dataclasses, its section parsers, the strict YAML loader and the one
problem-collecting reader the web config shares. A leaf: imports nothing but ``exporter.core``.
"""

from exporter.config.load import load_config, parse_config, redacted
from exporter.config.reader import REDACTED
from exporter.config.types import (
    BUILTIN_LABELS,
    DEFAULT_ENDPOINT,
    DEFAULT_LISTEN_ADDRESS,
    DEFAULT_PORT,
    DROPPABLE_LABELS,
    FAMILY_GROUPS,
    SEMCONVS,
    AccountConfig,
    AccountingConfig,
    ApiConfig,
    BudgetConfig,
    Config,
    ConfigError,
    DiscoveryConfig,
    HaConfig,
    KeysConfig,
    MetricsConfig,
    ModelPrice,
    PollConfig,
    PricingConfig,
    StateConfig,
    Target,
    Window,
)

__all__ = [
    "BUILTIN_LABELS", "DEFAULT_ENDPOINT", "DEFAULT_LISTEN_ADDRESS", "DEFAULT_PORT",
    "DROPPABLE_LABELS", "FAMILY_GROUPS", "REDACTED", "SEMCONVS",
    "AccountConfig", "AccountingConfig", "ApiConfig", "BudgetConfig", "Config", "ConfigError",
    "DiscoveryConfig", "HaConfig", "KeysConfig", "MetricsConfig", "ModelPrice", "PollConfig",
    "PricingConfig", "StateConfig", "Target", "Window",
    "load_config", "parse_config", "redacted",
]

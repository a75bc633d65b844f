"""The mixin's inputs (the ``_config`` of a Jsonnet mixin): the selector, the runbook URL and
the alert thresholds, each with the default the shipped files are rendered with."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

#: What every rule and query selects unless told otherwise: the scrape job of the shipped
#: Prometheus configs, the kustomize Service's and the Helm chart's ``job`` label.
DEFAULT_SELECTOR = 'job="uminfer"'
#: The runbooks, relative to the repository: set the URL where you publish docs/runbooks.md.
DEFAULT_RUNBOOK_URL = "docs/runbooks.md"


@dataclass(frozen=True)
class Thresholds:
    """Alert thresholds; mixin/rules.yml names each as ``${field}``."""

    exporter_down_for: str = "5m"          # UminferExporterDown: scrapes failing this long
    target_failing_for: str = "15m"        # UminferTargetFailing: every poll failing this long
    not_settling_seconds: int = 97200      # UminferUsageNotSettling: settle.. + a provider day
    poll_overrun_ratio: float = 0.25       # UminferPollOverruns: share of cycles overrunning
    discovery_stale_seconds: int = 1800    # UminferDiscoveryFailing: since the last success
    clock_skew_seconds: int = 30           # UminferClockSkew: host clock minus the API's
    token_spike_factor: float = 3          # UminferTokenSpike: pace over the daily average
    token_spike_floor: float = 50          # UminferTokenSpike: tokens/s below which no alert
    spend_spike_factor: float = 3          # UminferSpendSpike: pace over the daily average
    spend_spike_floor: float = 5           # UminferSpendSpike: currency units an hour
    budget_warn_ratio: float = 0.9         # UminferBudgetNearlyExhausted / BurnRate boundary
    key_limit_ratio: float = 0.9           # UminferKeyNearLimit / KeyLimitBurnRate boundary
    key_expiry_days: float = 7             # UminferKeyExpiringSoon
    key_spend_drift_tolerance: float = 0.2  # UminferKeySpendDrift, unless a rule overrides it


@dataclass(frozen=True)
class MixinConfig:
    """Everything the rendered rules and dashboard depend on."""

    selector: str = DEFAULT_SELECTOR
    runbook_url: str = DEFAULT_RUNBOOK_URL
    thresholds: Thresholds = field(default_factory=Thresholds)

    def placeholders(self) -> dict[str, str]:
        """The value of each ``${name}`` in the rule source, as it is written into PromQL."""
        values = {name: _number(value)
                  for name, value in dataclasses.asdict(self.thresholds).items()}
        return {**values, "selector": self.selector, "runbook_url": self.runbook_url}


def with_thresholds(config: MixinConfig, settings: list[str]) -> MixinConfig:
    """``config`` with ``name=value`` settings applied; a ValueError names a bad one."""
    known = {f.name: f.type for f in dataclasses.fields(Thresholds)}
    changes: dict[str, Any] = {}  # each converted to its field's type below
    for setting in settings:
        name, sep, text = setting.partition("=")
        if not sep or name not in known:
            raise ValueError(f"--set {setting}: expected NAME=VALUE, NAME one of "
                             f"{', '.join(sorted(known))}")
        kind = {"str": str, "int": int, "float": float}[str(known[name])]
        try:
            changes[name] = kind(text)
        except ValueError:
            raise ValueError(f"--set {setting}: {name} takes a {known[name]}") from None
    return dataclasses.replace(config,
                               thresholds=dataclasses.replace(config.thresholds, **changes))


def _number(value: str | int | float) -> str:
    """A threshold as PromQL and the annotations read it (3, not 3.0)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)

"""Loads the exporter's config file: parsed once, at the edge, into frozen dataclasses.

The work is split by job: ``types`` (the dataclasses), ``reader`` (reading raw values and
collecting problems), ``sections``, ``cost`` and ``discovery`` (one parser per section).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, replace
from datetime import UTC, datetime
from decimal import Decimal

import yaml

from exporter.config.accounts import accounts_section, labelled
from exporter.config.advanced import advanced_section
from exporter.config.cost import budgets_section, pricing_section
from exporter.config.discovery import discovery_section
from exporter.config.ha import accounting_section, ha_section
from exporter.config.metricsconf import metrics_section
from exporter.config.reader import REDACTED, Reader, build, got, quote, scrub
from exporter.config.sections import (
    api_section,
    keys_section,
    poll_section,
    state_section,
    targets_section,
    windows_section,
)
from exporter.config.types import (
    ApiConfig,
    Config,
    ConfigError,
    DiscoveryConfig,
    MetricsConfig,
    PricingConfig,
    Target,
)
from exporter.config.yamlstrict import DuplicateKeyError, load_file_lines
from exporter.core.durations import format_duration

#: Far more than ten thousand targets need (~1.5 MiB); bounds what parsing YAML may cost.
CONFIG_CAP = 4 << 20
_ENCLOSING = re.compile(r"(?:\.[^.\[\]]*|\[[^\[\]]*\])$")  # a path's last step
_ROOT_KEYS = ("api", "accounts", "poll", "state", "windows", "targets", "pricing", "budgets",
              "discovery", "keys", "accounting", "ha", "metrics", "advanced")
Warn = Callable[[str], None]
"""Where a valid config's warnings go, one line each (default: the log)."""


log = logging.getLogger(__name__)

def load_config(path: str, environ: Mapping[str, str], on_warning: Warn | None = None
                ) -> Config:
    """Read and validate the YAML file at ``path``; raise ConfigError listing every problem.
    Each warning (a deprecated key) goes to ``on_warning`` with its line, else to the log."""
    try:
        data, lines = load_file_lines(path, CONFIG_CAP)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not valid UTF-8 text"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_problem(path, exc)]) from None
    try:
        return parse_config(data, environ, os.path.dirname(os.path.abspath(path)),
                            on_warning=lambda w: (on_warning or log.warning)(
                                located(path, w, lines)))
    except ConfigError as error:
        raise ConfigError([located(path, problem, lines) for problem in error.problems]
                          ) from None


def located(path: str, problem: str, lines: Mapping[str, int]) -> str:
    """``problem`` prefixed with ``path:line`` of its value, or of the nearest enclosing one
    (a missing key is reported where its mapping is); as it is when nothing encloses it."""
    where = problem.split(": ", 1)[0]
    while where not in lines:
        enclosing = _ENCLOSING.sub("", where)
        if enclosing == where:
            return problem  # not a path, like "(top level)"
        where = enclosing
    return f"{path}:{lines[where]}: {problem}" if where else problem


def parse_config(
    data: object, environ: Mapping[str, str], base_dir: str, *, require_targets: bool = True,
    on_warning: Warn | None = None,
) -> Config:
    """Validate already-loaded YAML ``data``; relative file paths resolve against ``base_dir``.
    Each warning goes to ``on_warning`` (default: the log), also when there are problems."""
    if data is not None and not isinstance(data, dict):
        # Everything else would be reported missing too: one line says it better.
        raise ConfigError(scrub([f"(top level): expected a mapping of sections, got {got(data)}"],
                                []))
    reader = Reader(environ)
    root = reader.section("", data, _ROOT_KEYS)
    advanced = advanced_section(reader, root)
    discovery = discovery_section(reader, root.get("discovery"), advanced)
    pricing = pricing_section(reader, root.get("pricing"))
    accounts = accounts_section(reader, root.get("accounts"), base_dir) or ()
    names = tuple(a.name for a in accounts)
    if accounts and "api" in root:
        reader.fail("accounts", "conflicts with api; configure one account as api: or every "
                    "account under accounts:, not both")
    several = len(accounts) > 1
    # Read in the order of the file's usual layout, so problems are listed in that order.
    # With several accounts ``api`` stays unset: each account's limits are its own.
    api = (api_section(reader, root.get("api"), base_dir) if "accounts" not in root
           else accounts[0].api if len(accounts) == 1 else ApiConfig())
    poll = poll_section(reader, root.get("poll"), advanced)
    state = state_section(reader, root.get("state"), base_dir)
    windows = windows_section(reader, root.get("windows"))
    # With discovery, static targets are optional: the keys found are the targets.
    targets = targets_section(reader, root.get("targets"), require_targets and not discovery,
                              names)
    accounting = accounting_section(reader, root.get("accounting"), root.get("state"))
    raw_accounting = root.get("accounting")
    origin_given = isinstance(raw_accounting, dict) and raw_accounting.get("origin") is not None
    config = build(
        Config, api=api, poll=poll, state=state, windows=windows,
        targets=tuple(labelled(t, several) for t in targets),
        pricing=pricing,
        budgets=budgets_section(reader, root.get("budgets"), pricing.currency),
        discovery=_discovery_accounts(reader, discovery, names),
        keys=keys_section(reader, root.get("keys")),
        accounts=accounts if several else (),
        accounting=accounting,
        ha=ha_section(reader, root.get("ha"), base_dir, origin_given),
        metrics=metrics_section(reader, root.get("metrics"), _static_labels(targets, discovery)),
    )
    for warning in scrub(reader.warnings, reader.secrets):
        (on_warning or log.warning)(warning)
    if reader.problems:
        raise ConfigError(scrub(reader.problems, reader.secrets))
    return config


def _static_labels(targets: tuple[Target, ...], discovery: DiscoveryConfig | None
                   ) -> list[str]:
    """The label names the config adds to targets: the static targets' and discovery's."""
    names = [name for t in targets for name, _ in t.labels]
    return names + [name for name, _ in discovery.labels] if discovery else names


def _discovery_accounts(r: Reader, discovery: DiscoveryConfig | None,
                        names: tuple[str, ...]) -> DiscoveryConfig | None:
    """Discovery's accounts checked against ``accounts:`` (none with a single account)."""
    if discovery is None:
        return None
    for i, name in enumerate(discovery.accounts):
        if name not in names:
            r.fail(f"discovery.accounts[{i}]", f"unknown account {quote(name)}"
                   + (f" (accounts: {', '.join(names)})" if names else
                      " (no accounts are configured)"))
    return replace(discovery, accounts=()) if len(names) < 2 else discovery


def redacted(config: Config) -> dict[str, object]:
    """The effective config as JSON-able data, durations spelled out, secrets replaced."""
    api, poll, state = config.api, config.poll, config.state
    return {
        "api": None if config.accounts else {
            "endpoint": api.endpoint, "public_key": api.public_key, "private_key": REDACTED,
            "timeout": format_duration(api.timeout), "max_concurrency": api.max_concurrency,
            "rate_limit": api.rate_limit, "time_zone": api.time_zone},
        "poll": {"interval": format_duration(poll.interval),
                 "settle": format_duration(poll.settle)},
        "advanced": {"window_interval": format_duration(poll.window_interval),
                     "permanent_error_retry": format_duration(poll.permanent_error_retry),
                     "discovery_statuses": (list(config.discovery.statuses)
                                            if config.discovery else None)},
        "state": {"path": state.path, "max_backfill": format_duration(state.max_backfill)},
        "windows": [window.name for window in config.windows],
        "targets": [{"project": t.project, "key": t.key, "model": t.model, "labels": dict(t.labels),
                     **({"account": t.account} if t.account else {})}
                    for t in config.targets],
        "pricing": _redacted_pricing(config.pricing),
        "budgets": [{k: str(v) if isinstance(v, Decimal) else v
                     for k, v in asdict(b).items() if v is not None} for b in config.budgets],
        "discovery": _redacted_discovery(config.discovery),
        "keys": {"enabled": config.keys.enabled,
                 "interval": format_duration(config.keys.interval)},
        "accounts": [{"name": a.name, "endpoint": a.api.endpoint, "public_key": a.api.public_key,
                      "private_key": REDACTED, "timeout": format_duration(a.api.timeout),
                      "max_concurrency": a.api.max_concurrency, "rate_limit": a.api.rate_limit,
                      "time_zone": a.api.time_zone}
                     for a in config.accounts],
        "accounting": {"origin": _rfc3339(config.accounting.origin)},
        "metrics": _redacted_metrics(config.metrics),
        "ha": {"peers": list(config.ha.peers), "username": config.ha.username,
               "password": REDACTED if config.ha.password else None,
               "ca_file": config.ha.ca_file, "timeout": format_duration(config.ha.timeout),
               "insecure_http_auth": config.ha.insecure_http_auth},
    }


def _redacted_metrics(metrics: MetricsConfig) -> dict[str, object]:
    data = asdict(metrics)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}


def _rfc3339(seconds: int | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _redacted_pricing(pricing: PricingConfig) -> dict[str, object]:
    models = {m.model: {"input": str(m.input), "output": str(m.output), "image": str(m.image),
                        "request": str(m.request), "currency": m.currency}
              for m in pricing.models}
    return {"currency": pricing.currency, "from_api": pricing.from_api, "models": models}


def _redacted_discovery(discovery: DiscoveryConfig | None) -> dict[str, object] | None:
    if discovery is None:
        return None
    data = asdict(discovery)
    data["refresh"] = format_duration(discovery.refresh)
    data["labels"] = dict(discovery.labels)
    del data["statuses"]  # shown under advanced, where it is written
    return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}


def _yaml_problem(path: str, exc: yaml.YAMLError) -> str:
    # Only the problem and position: str(exc) quotes the offending line, which may hold a key.
    mark = getattr(exc, "problem_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else path
    if isinstance(exc, DuplicateKeyError):
        return f"{where}: {exc.problem}"
    problem = getattr(exc, "problem", None) or "not valid YAML"
    return f"{where}: invalid YAML: {problem}"

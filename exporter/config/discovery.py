"""The ``discovery`` config section: which API keys to find with ListUMInferAPIKey."""

from __future__ import annotations

import re

from exporter.config.advanced import Advanced, at, old_keys
from exporter.config.reader import Reader, at_least, build, got, quote
from exporter.config.sections import labels_section
from exporter.config.types import DiscoveryConfig

DISCOVERY_KEYS = ("projects", "include", "exclude", "models", "refresh",
                  "max_targets", "labels", "accounts")
MAX_TARGETS = 100_000


def discovery_section(r: Reader, raw: object, advanced: Advanced) -> DiscoveryConfig | None:
    """The ``discovery`` section, with the ``advanced`` key that tunes it; None when absent
    (no discovery)."""
    if raw is None:
        if "discovery_statuses" in advanced:
            r.warn("advanced.discovery_statuses", "has no effect without discovery")
        return None
    d = r.section("discovery", raw, DISCOVERY_KEYS, old=old_keys("discovery"))
    return build(
        DiscoveryConfig,
        projects=r.strings("discovery.projects", d.get("projects")) or None,
        statuses=_statuses(r, *at(advanced, "discovery_statuses")),
        include=_patterns(r, "discovery.include", d.get("include")),
        exclude=_patterns(r, "discovery.exclude", d.get("exclude")),
        models=r.strings("discovery.models", d.get("models")),
        refresh=r.duration("discovery.refresh", d.get("refresh"), at_least(1)),
        max_targets=r.integer("discovery.max_targets", d.get("max_targets"), 1, MAX_TARGETS),
        labels=labels_section(r, "discovery.labels", d.get("labels")),
        accounts=r.strings("discovery.accounts", d.get("accounts")),
    )


def _statuses(r: Reader, path: str, raw: object) -> tuple[int, ...] | None:
    """Key ``Status`` codes to poll: only 1 (normal) is documented, hence an advanced key."""
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw:
        r.fail(path, f"expected a non-empty list like [1], got {got(raw)}")
        return None
    found = [r.integer(f"{path}[{i}]", v, 0, 99) for i, v in enumerate(raw)]
    return tuple(v for v in found if v is not None)


def _patterns(r: Reader, path: str, raw: object) -> tuple[str, ...] | None:
    patterns = r.strings(path, raw)
    for i, pattern in enumerate(patterns or ()):
        try:
            re.compile(pattern)
        except re.error as exc:
            r.fail(f"{path}[{i}]", f"invalid regular expression {quote(pattern)}: {exc}")
    return patterns

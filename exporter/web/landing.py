"""The landing page's account of what the exporter is doing now, in words: targets up and down
with the reason, since when counting runs, the API's buckets, budget seeding, the state file."""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from prometheus_client import CollectorRegistry

from exporter.config import Config
from exporter.metrics.exposition import ExpositionCache

SHOWN_DOWN = 20  # failing targets named one by one; the rest are counted


class Progress(Protocol):
    """What polling tells of itself (``polling.status.PollStatus``; the web never polls)."""

    def reasons(self) -> dict[str, str]:
        """Why each failing target fails now."""
        ...

    def counting_since(self, targets: set[str]) -> int | None:
        """When the earliest of ``targets`` began counting (API seconds)."""
        ...


class Landing:
    """Reads the served snapshot, the poll status and the self-metrics when asked."""

    def __init__(self, cache: ExpositionCache, status: Callable[[], Progress],
                 registry: CollectorRegistry, config: Callable[[], Config]) -> None:
        self._cache, self._status, self._registry, self._config = cache, status, registry, config

    def now(self) -> str:
        """What the exporter is doing now, as HTML paragraphs (every value escaped)."""
        parts = [self._targets(), self._counting(), self._buckets(), self._seeding(),
                 self._state()]
        return "".join(part if part.startswith("<") else f"<p>{part}</p>"
                       for part in parts if part)

    def _targets(self) -> str:
        config, snapshot = self._config(), self._cache.shown()
        if not snapshot.targets:
            return (f"Polling {len(config.targets)} targets every {config.poll.interval:g} s: "
                    "the first poll cycle has not finished yet.")
        down = [t.target.ident for t in snapshot.targets if not t.up]
        reasons = self._status().reasons()
        text = (f"Polling {len(snapshot.targets)} targets every {config.poll.interval:g} s: "
                f"{len(snapshot.targets) - len(down)} up, {len(down)} down.")
        if not down:
            return text
        items = "".join(f"<li>{html.escape(ident)}: {html.escape(reasons.get(ident, 'failing'))}"
                        "</li>" for ident in down[:SHOWN_DOWN])
        more = f"<li>and {len(down) - SHOWN_DOWN} more</li>" if len(down) > SHOWN_DOWN else ""
        return f"<p>{text}</p><ul>{items}{more}</ul>"

    def _counting(self) -> str:
        idents = {t.target.ident for t in self._cache.shown().targets}
        since = self._status().counting_since(idents)
        if since is None:
            return ("Counting has not begun: it begins at the first answer of the API "
                    "(uminfer_up is 0 until then).")
        return (f"Counting since {_when(since)}: the counters (uminfer_*_total) hold the usage "
                "since then; the window gauges (uminfer_window_*) hold whole trailing windows, "
                "usage from before that included, so they may be far larger.")

    def _buckets(self) -> str:
        bucket = self._value("uminfer_api_bucket_seconds")
        period = self._value("uminfer_accounting_period_seconds")
        if bucket is None or math.isnan(bucket):
            return "The API's time buckets are not measured yet (they are, from its answers)."
        counted = "" if period is None or math.isnan(period) else \
            f"; counting runs on periods of {period:g} s"
        return f"The API's time buckets are {bucket:g} s{counted}."

    def _seeding(self) -> str:
        seeding = self._value("uminfer_budget_seeding_targets") or 0
        if not seeding:
            return ""
        return (f"Budget seeding in progress: {seeding:g} targets' usage from their budgets' "
                "period start is still being read; their budgets show less until it is done.")

    def _state(self) -> str:
        path = self._config().state.path
        if not path:
            return "No state file (state.path): counters start at zero at every start."
        saved = self._value("uminfer_state_last_write_success_timestamp_seconds")
        failed = self._value("uminfer_state_writes_total", outcome="error") or 0
        text = (f"State file {html.escape(path)}: "
                + (f"saved at {_when(saved)}." if saved else "not saved yet."))
        if failed:
            text += (f" {failed:g} writes failed since the start; while it cannot be written, "
                     "/metrics holds the counted numbers (the alert UminferStateNotSaved).")
        return text

    def _value(self, name: str, **labels: str) -> float | None:
        return self._registry.get_sample_value(name, labels)


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

"""The metric families the exposition writes: names, types, HELP texts and sample lines."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import partial

from exporter.accounting.snapshot import (
    DiscoverySnapshot,
    KeyHealth,
    KeysSnapshot,
    Snapshot,
    TargetSnapshot,
)
from exporter.core.failures import CATEGORIES, KEY_LISTING_REASONS
from exporter.cost.budgets import BudgetSnapshot
from exporter.metrics.shape import Shape

QUANTITIES: tuple[tuple[str, str, str], ...] = (
    # (Totals field, metric stem, what it counts)
    ("input_tokens", "input_tokens", "input (prompt) tokens used"),
    ("output_tokens", "output_tokens", "output (completion) tokens used"),
    ("tokens", "tokens", "tokens used (input plus output)"),
    ("requests", "requests", "inference requests made"),
    ("image_generations", "image_generations", "images generated"),
)


def escape(value: str) -> str:
    """Escape a label value for the text format.

    A lone surrogate (JSON allows "\\ud800"; an API may send one in a key name) cannot be
    written as UTF-8, so it is shown as the text ``\\ud800`` instead of breaking the render.
    """
    if not value.isascii():
        value = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", value)
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


_SURROGATE = re.compile("[\ud800-\udfff]")


def number(value: float) -> str:
    """Format a sample value the way Prometheus' own clients do."""
    if isinstance(value, int) or value.is_integer():
        return str(int(value))
    return repr(value)


Rows = Sequence[tuple[TargetSnapshot, str]]  # targets, each with its label pairs' text
#: The one signature of every family's samples: (family, snapshot, rows, shape) -> lines.
Samples = Callable[["Family", Snapshot, Rows, Shape], Iterable[str]]


@dataclass(frozen=True)
class Family:
    """A metric family: its name, type, HELP text and how its sample lines are written.

    ``samples(family, snapshot, rows, shape)`` is the same for every family: the lines of
    ``rows`` (a batch of targets) for a per-target family, of ``snapshot`` for a process-wide
    one, which is given every target at once and may ignore ``rows``.
    """

    name: str
    kind: str
    help: str
    samples: Samples


# Families that differ only in the value they show share one function, its leading arguments
# bound with functools.partial: every line is written by code that runs at render time, which
# mutation testing reaches (a closure made at import is built once, before any mutant runs).


def _counter(attr: str, f: Family, _snapshot: Snapshot, rows: Rows, _shape: Shape
             ) -> Iterator[str]:
    name = f.name
    for t, labels in rows:
        if t.counting:
            yield f"{name}{{{labels}}} {getattr(t.counters, attr)}\n"


def _window(attr: str, f: Family, _snapshot: Snapshot, rows: Rows, _shape: Shape
            ) -> Iterator[str]:
    name = f.name
    for t, labels in rows:
        for window, totals in t.windows:
            yield f'{name}{{{labels},window="{window.name}"}} {getattr(totals, attr)}\n'


def _optional(get: Callable[[TargetSnapshot], float | None], f: Family, _snapshot: Snapshot,
              rows: Rows, _shape: Shape) -> Iterator[str]:
    name = f.name
    for t, labels in rows:
        value = get(t)
        if value is not None:
            yield f"{name}{{{labels}}} {number(value)}\n"


def _failures(f: Family, _snapshot: Snapshot, rows: Rows, _shape: Shape) -> Iterator[str]:
    name = f.name
    for t, labels in rows:
        # Every reason from 0, so increase() and alerts see a target's first failure.
        for reason, count in (dict.fromkeys(CATEGORIES, 0) | dict(t.failures)).items():
            yield f'{name}{{{labels},reason="{reason}"}} {count}\n'


def _late(f: Family, _snapshot: Snapshot, rows: Rows, _shape: Shape) -> Iterator[str]:
    name = f.name
    for t, labels in rows:
        yield f"{name}{{{labels}}} {t.late_after_settle.tokens}\n"


def _given_up(f: Family, _snapshot: Snapshot, rows: Rows, _shape: Shape) -> Iterator[str]:
    name = f.name
    for t, labels in rows:
        yield f"{name}{{{labels}}} {sum(s for _, s in t.given_up)}\n"


def _money(value: Decimal) -> str:
    # Computed exactly; exported as the nearest float, as the text format demands.
    return number(float(value))


def _cost(f: Family, _snapshot: Snapshot, rows: Rows, _shape: Shape) -> Iterator[str]:
    name = f.name
    for t, labels in rows:
        if t.counting:
            for currency, amount in t.cost:
                yield f'{name}{{{labels},currency="{escape(currency)}"}} {_money(amount)}\n'


def _window_cost(f: Family, _snapshot: Snapshot, rows: Rows, _shape: Shape) -> Iterator[str]:
    name = f.name
    for t, labels in rows:
        for window, currency, amount in t.window_cost:
            yield (f'{name}{{{labels},window="{window.name}",'
                   f'currency="{escape(currency)}"}} {_money(amount)}\n')


#: The per-target families, in the exposition's order (each written a batch of targets at a time).
FAMILIES: tuple[Family, ...] = (
    *(Family(f"uminfer_{stem}_total", "counter",
             f"Number of {what}, counted exactly once since counting began for this target.",
             partial(_counter, attr)) for attr, stem, what in QUANTITIES),
    *(Family(f"uminfer_window_{stem}", "gauge",
             f"Number of {what} in the trailing window, as the API reported at the last window "
             "read.", partial(_window, attr)) for attr, stem, what in QUANTITIES),
    Family("uminfer_up", "gauge",
           "Whether the target's latest poll succeeded (1) or failed (0).",
           partial(_optional, lambda t: 1 if t.up else 0)),
    Family("uminfer_last_success_timestamp_seconds", "gauge",
           "Unix time in seconds of the target's latest successful poll.",
           partial(_optional, lambda t: t.last_success)),
    Family("uminfer_settled_timestamp_seconds", "gauge",
           "Unix time in seconds up to which the target's usage is settled and final.",
           partial(_optional, lambda t: t.settled_until)),
    Family("uminfer_catchup_remaining_seconds", "gauge",
           "Seconds of usage from accounting.origin not read yet; counters are exported "
           "once it is 0.",
           partial(_optional, lambda t: t.catchup_remaining)),
    Family("uminfer_settled_tokens_total", "counter",
           "Number of tokens up to uminfer_settled_timestamp_seconds: final, the same on "
           "every replica with the same accounting.origin.",
           partial(_optional,
                   lambda t: None if t.settled is None or not t.counting else t.settled.tokens)),
    Family("uminfer_window_timestamp_seconds", "gauge",
           "Unix time in seconds at which the target's window gauges end.",
           partial(_optional, lambda t: t.windows_at)),
    Family("uminfer_target_failures_total", "counter",
           "Number of failed polls of the target, by reason.", _failures),
    Family("uminfer_revisions_total", "counter",
           "Number of readings lower than an earlier reading of the same interval (ignored).",
           partial(_optional, lambda t: t.revisions)),
    Family("uminfer_late_tokens_after_settle_total", "counter",
           "Number of tokens that appeared after their interval settled; not in the counters.",
           _late),
    Family("uminfer_given_up_seconds_total", "counter",
           "Seconds of usage never counted because the API kept rejecting their reads.",
           _given_up),
    Family("uminfer_cost_total", "counter",
           "Money spent, by currency: each counted increment times the price in force then.",
           _cost),
    Family("uminfer_window_cost", "gauge",
           "Money spent in the trailing window, by currency, at the prices in force now.",
           _window_cost),
)


def _given_up_by_reason(f: Family, snapshot: Snapshot, _rows: Rows, _shape: Shape
                        ) -> Iterator[str]:
    if not snapshot.targets:
        return
    totals: dict[str, int] = dict.fromkeys(CATEGORIES, 0)  # all from the start, for increase()
    for t in snapshot.targets:
        for reason, seconds in t.given_up:
            totals[reason] = totals.get(reason, 0) + seconds
    for reason, seconds in totals.items():
        yield f'{f.name}{{reason="{escape(reason)}"}} {seconds}\n'


def _budget(get: Callable[[BudgetSnapshot], float], f: Family, snapshot: Snapshot,
            _rows: Rows, _shape: Shape) -> Iterator[str]:
    for b in snapshot.budgets:
        labels = f'budget="{escape(b.name)}",period="{b.period}",unit="{escape(b.unit)}"'
        yield f"{f.name}{{{labels}}} {number(get(b))}\n"


def _discovery(get: Callable[[DiscoverySnapshot], float | None], f: Family,
               snapshot: Snapshot, _rows: Rows, _shape: Shape) -> Iterator[str]:
    value = None if snapshot.discovery is None else get(snapshot.discovery)
    if value is not None:
        yield f"{f.name} {number(value)}\n"


def _key_labels(k: KeyHealth) -> str:
    account = f',account="{escape(k.account)}"' if k.account else ""  # only with several
    return f'project_id="{escape(k.project)}",key_id="{escape(k.key_id)}"{account}'


def _key_info(f: Family, snapshot: Snapshot, _rows: Rows, _shape: Shape) -> Iterator[str]:
    for k in snapshot.keys.keys if snapshot.keys else ():
        yield (f'{f.name}{{{_key_labels(k)},key_name="{escape(k.name)}",'
               f'status="{k.status}"}} 1\n')


def _key_value(get: Callable[[KeyHealth], float | None], f: Family, snapshot: Snapshot,
               _rows: Rows, _shape: Shape) -> Iterator[str]:
    for k in snapshot.keys.keys if snapshot.keys else ():
        value = get(k)
        if value is not None:
            yield f"{f.name}{{{_key_labels(k)}}} {number(value)}\n"


def _key_amount(daily: Callable[[KeyHealth], Decimal | None],
                monthly: Callable[[KeyHealth], Decimal | None], f: Family, snapshot: Snapshot,
                _rows: Rows, _shape: Shape) -> Iterator[str]:
    for k in snapshot.keys.keys if snapshot.keys else ():
        for period, amount in (("daily", daily(k)), ("monthly", monthly(k))):
            if amount is not None:
                yield f'{f.name}{{{_key_labels(k)},period="{period}"}} {_money(amount)}\n'


def _key_listing(get: Callable[[KeysSnapshot], float | None], f: Family, snapshot: Snapshot,
                 _rows: Rows, _shape: Shape) -> Iterator[str]:
    value = None if snapshot.keys is None else get(snapshot.keys)
    if value is not None:
        yield f"{f.name} {number(value)}\n"


def _key_failures(f: Family, snapshot: Snapshot, _rows: Rows, _shape: Shape) -> Iterator[str]:
    if snapshot.keys is None:
        return
    counts: dict[str, int] = {**dict.fromkeys(KEY_LISTING_REASONS, 0),
                              **dict(snapshot.keys.failures)}
    for why, count in counts.items():
        yield f'{f.name}{{reason="{escape(why)}"}} {count}\n'


def _unpriced(f: Family, snapshot: Snapshot, _rows: Rows, _shape: Shape) -> Iterator[str]:
    for model, why in snapshot.unpriced:
        yield f'{f.name}{{model="{escape(model)}",reason="{escape(why)}"}} 1\n'


#: The process-wide families, after the per-target ones (each written once, from the snapshot).
GLOBAL_FAMILIES: tuple[Family, ...] = (
    Family("uminfer_given_up_seconds_by_reason_total", "counter",
           "Seconds of usage never counted because the API kept rejecting their reads, all "
           "targets, by the error's category.", _given_up_by_reason),
    Family("uminfer_budget_limit", "gauge",
           "The budget's limit per period, in its unit (tokens or a currency).",
           partial(_budget, lambda b: float(b.limit))),
    Family("uminfer_budget_used", "gauge",
           "How much of its limit the budget's current period has used, in its unit.",
           partial(_budget, lambda b: float(b.used))),
    Family("uminfer_budget_period_end_timestamp_seconds", "gauge",
           "Unix time in seconds at which the budget's current period ends (UTC).",
           partial(_budget, lambda b: b.end)),
    Family("uminfer_discovery_targets", "gauge",
           "Number of discovered targets being polled.",
           partial(_discovery, lambda d: d.targets)),
    Family("uminfer_discovery_keys", "gauge",
           "Number of API keys listed at the latest discovery refresh, before filters.",
           partial(_discovery, lambda d: d.keys)),
    Family("uminfer_discovery_selected_keys", "gauge",
           "Number of listed API keys that passed discovery's status and name filters.",
           partial(_discovery, lambda d: d.selected)),
    Family("uminfer_discovery_dropped_targets", "gauge",
           "Number of discovered targets not polled because of discovery.max_targets.",
           partial(_discovery, lambda d: d.dropped)),
    Family("uminfer_discovery_last_success_timestamp_seconds", "gauge",
           "Unix time in seconds of the latest successful discovery refresh.",
           partial(_discovery, lambda d: d.last_success)),
    Family("uminfer_discovery_failures_total", "counter",
           "Number of failed discovery refreshes (the previous targets are kept).",
           partial(_discovery, lambda d: d.failures)),
    Family("uminfer_key_info", "gauge",
           "A polled API key as the cloud lists it (ListUMInferAPIKey): name and status "
           "(1 normal); always 1.", _key_info),
    Family("uminfer_key_disabled", "gauge",
           "Whether the polled key is disabled for Modelverse (ModelverseDisabled): 1 or 0.",
           partial(_key_value, lambda k: 1 if k.disabled else 0)),
    Family("uminfer_key_expiry_timestamp_seconds", "gauge",
           "Unix time in seconds at which the polled key expires; absent if it never does.",
           partial(_key_value, lambda k: k.expires)),
    Family("uminfer_key_limit_amount", "gauge",
           "The polled key's spending limit per period, in the account's currency; absent "
           "without a limit.",
           partial(_key_amount, lambda k: k.daily_limit, lambda k: k.monthly_limit)),
    Family("uminfer_key_used_amount", "gauge",
           "How much the polled key has spent in the current period, in the account's "
           "currency, as the cloud reports it.",
           partial(_key_amount, lambda k: k.daily_used, lambda k: k.monthly_used)),
    Family("uminfer_key_listing_last_success_timestamp_seconds", "gauge",
           "Unix time in seconds of the latest successful key health listing.",
           partial(_key_listing, lambda s: s.last_success)),
    Family("uminfer_key_listing_failures_total", "counter",
           "Number of failed key health listings, by reason (unsupported: the cloud lacks "
           "ListUMInferAPIKey; refused: a permanent RetCode); counting is unaffected.",
           _key_failures),
    Family("uminfer_unpriced", "gauge",
           "A polled model whose usage has no price, so no cost is counted for it; reason: "
           "no_price, or why its list price was not taken (unknown_unit, missing_unit, "
           "conflicting_units, unit_mismatch, out_of_range, conflicting_currency, "
           "missing_currency). Always 1.", _unpriced),
)

"""Budgets: what each daily or monthly budget has used in its current period, exactly."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from exporter.config.types import BudgetConfig, Target
from exporter.cost.pricing import money

DAY = 86400

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BudgetSnapshot:
    """One budget as exported: ``unit`` is "tokens" or a currency code."""

    name: str
    period: str
    unit: str
    limit: Decimal
    used: Decimal
    start: int
    end: int  # first second of the next period


def period_bounds(period: str, now: float) -> tuple[int, int]:
    """``[start, end)`` in Unix seconds of the UTC day or month containing ``now``."""
    if period == "daily":
        start = int(now) - int(now) % DAY
        return start, start + DAY
    day = datetime.datetime.fromtimestamp(int(now), datetime.UTC).date().replace(day=1)
    following = (day + datetime.timedelta(days=32)).replace(day=1)
    return _unix(day), _unix(following)


def _unix(day: datetime.date) -> int:
    return int(datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.UTC).timestamp())


def matches(budget: BudgetConfig, target: Target) -> bool:
    """Whether ``target``'s usage counts against ``budget`` (an unset selector matches all)."""
    return all(want is None or want == got for want, got in (
        (budget.project, target.project), (budget.key, target.key), (budget.model, target.model)))


def definition(budget: BudgetConfig) -> str:
    """What a budget's use belongs to: its period, its unit (tokens or the currency: the kind
    of limit and the money it counts) and its selectors; not its name, not its limit. Use
    saved under one definition is never shown under another, though the name stays."""
    unit = "tokens" if budget.tokens is not None else budget.currency
    selectors = ",".join(f"{s}={v}" for s, v in (("project", budget.project),
                                                   ("key", budget.key), ("model", budget.model))
                         if v is not None)
    return f"{budget.period} {unit} [{selectors}]"


@dataclass
class _Used:
    start: int
    amount: Decimal
    definition: str


class BudgetTracker:
    """Adds usage increments, at the time they are counted, to the budgets they fall under.

    An increment counts in the period in which the exporter counted it; usage just before
    midnight that settles after it lands in the new day (at most ``poll.settle`` late).
    """

    def __init__(self, budgets: tuple[BudgetConfig, ...],
                 used: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        """``used``: saved use by name (see :meth:`to_dict`). Only a budget of ``budgets`` with
        that name and the same definition takes it: a removed budget's use is dropped, and a
        redefined one starts from now (said in the log)."""
        self._budgets = budgets
        self._used: dict[str, _Used] = {}
        for budget in budgets:
            data = (used or {}).get(budget.name)
            if data is not None:
                self._restore(budget, data)

    def _restore(self, budget: BudgetConfig, data: Mapping[str, Any]) -> None:
        now = definition(budget)
        # A state from before definitions were saved cannot tell: its use stays with the name.
        was = str(data.get("definition", now))
        if was != now:
            log.warning("budget %s is redefined (%s, was %s): it counts from now on; the use "
                        "counted under its old definition is dropped", budget.name, now, was)
            return
        self._used[budget.name] = _Used(int(data["start"]), Decimal(str(data["amount"])), now)

    def add(self, target: Target, tokens: int, cost: Decimal | None, currency: str,
            now: float) -> tuple[str, ...]:
        """Count ``tokens`` (and ``cost`` in ``currency``, if priced) against matching budgets;
        the money budgets that did not count ``cost`` because it is in another currency."""
        with money():
            return self._add(target, tokens, cost, currency, now)

    def _add(self, target: Target, tokens: int, cost: Decimal | None, currency: str,
             now: float) -> tuple[str, ...]:
        foreign = []
        for budget in self._budgets:
            if not matches(budget, target):
                continue
            if budget.tokens is not None:
                self._current(budget, now).amount += tokens
            elif cost is not None and currency == budget.currency:
                self._current(budget, now).amount += cost
            elif cost:  # money in another currency (a free model's zero is no news)
                foreign.append(budget.name)
        return tuple(foreign)

    def add_before(self, target: Target, days: Sequence[tuple[int, int, Decimal | None]],
                   currency: str, now: float) -> tuple[str, ...]:
        """Usage ``target`` had before its counting began, by UTC day (first second, tokens,
        cost or None): each matching budget takes the days within its current period. The
        money budgets left out because the cost is in another currency are returned."""
        with money():
            self._add_before(target, days, currency, now)
        priced = currency and any(cost for _, _, cost in days)
        return tuple(b.name for b in self._budgets if priced and b.tokens is None
                     and b.currency != currency and matches(b, target))

    def _add_before(self, target: Target, days: Sequence[tuple[int, int, Decimal | None]],
                    currency: str, now: float) -> None:
        for budget in self._budgets:
            if not matches(budget, target):
                continue
            start, _ = period_bounds(budget.period, now)
            if budget.tokens is not None:
                self._current(budget, now).amount += sum(
                    tokens for day, tokens, _ in days if day >= start)
            elif currency == budget.currency:
                self._current(budget, now).amount += sum(
                    (cost for day, _, cost in days if day >= start and cost is not None),
                    Decimal(0))

    def horizon(self, target: Target, at: int) -> int | None:
        """The earliest start of the periods containing ``at`` of the budgets ``target`` falls
        under (None: it falls under none)."""
        return min((period_bounds(b.period, at)[0] for b in self._budgets
                    if matches(b, target)), default=None)

    def snapshot(self, now: float) -> tuple[BudgetSnapshot, ...]:
        """Every budget's limit and use in the period containing ``now``."""
        return tuple(self._snapshot(b, now) for b in self._budgets)

    def _snapshot(self, budget: BudgetConfig, now: float) -> BudgetSnapshot:
        start, end = period_bounds(budget.period, now)
        used = self._current(budget, now).amount
        unit, limit = ("tokens", Decimal(budget.tokens)) if budget.tokens is not None else (
            budget.currency, budget.cost or Decimal(0))
        return BudgetSnapshot(budget.name, budget.period, unit, limit, used, start, end)

    def _current(self, budget: BudgetConfig, now: float) -> _Used:
        start, _ = period_bounds(budget.period, now)
        used = self._used.get(budget.name)
        if used is None or used.start != start:  # a new period starts from zero
            used = self._used[budget.name] = _Used(start, Decimal(0), definition(budget))
        return used

    def names(self) -> set[str]:
        """The names of the budgets tracked."""
        return {b.name for b in self._budgets}

    def to_dict(self) -> dict[str, dict[str, object]]:
        """JSON-able: amounts as exact decimal strings, each with the definition it counts."""
        return {name: {"start": u.start, "amount": str(u.amount), "definition": u.definition}
                for name, u in self._used.items()}

"""Exact cost per target: each counter increment times the price in force when it was counted."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from exporter.config.types import ModelPrice
from exporter.core.amounts import TOTAL_DIGITS, TOTAL_PLACES, bounded
from exporter.core.usage import ZERO, Totals
from exporter.cost.pricing import cost_of, money

#: A budget definition is its period, unit and three selectors: far shorter than this.
MAX_DEFINITION = 4096


@dataclass
class CostMeter:
    """One target: the counters already priced, and the money they cost, by currency."""

    seen: Totals = ZERO
    cost: dict[str, Decimal] = field(default_factory=dict)

    def charge(self, counters: Totals, price: ModelPrice | None) -> tuple[Totals, Decimal | None]:
        """Price what ``counters`` grew by since last time; the increment and its cost.

        Counters below what was priced mean they were reset (state lost or set aside while this
        meter survived): everything they hold now is new and is priced, so cost stays the sum
        of price x increment whatever happens to the ledger. Usage without a price is marked
        seen anyway: a price added later applies from then on.
        """
        base = self.seen if counters.dominates(self.seen) else ZERO
        delta = counters - base
        self.seen = counters
        if price is None:
            return delta, None
        amount = cost_of(delta, price)
        with money():
            self.cost[price.currency] = self.cost.get(price.currency, Decimal(0)) + amount
        return delta, amount

    def to_dict(self) -> dict[str, Any]:
        """JSON-able; amounts as exact decimal strings."""
        return {"seen": self.seen.as_dict(), "cost": {c: str(a) for c, a in self.cost.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CostMeter:
        """Inverse of :meth:`to_dict`; ValueError/TypeError/KeyError when malformed."""
        cost = {str(c): bounded(a, TOTAL_DIGITS, TOTAL_PLACES) for c, a in data["cost"].items()}
        seen = Totals.from_dict(data["seen"])
        if min(seen.values()) < 0:
            raise ValueError("seen counters must not be negative")
        return cls(seen, cost)


def budget_use(raw: object) -> dict[str, dict[str, Any]]:
    """Saved budget use by name, each ``{"start": seconds, "amount": "exact decimal",
    "definition": "what it counts"}`` (no definition in a state from before it was saved);
    TypeError or ValueError for anything else (BudgetTracker trusts what this returns)."""
    if not isinstance(raw, dict):
        raise TypeError("budgets must be an object")
    use: dict[str, dict[str, Any]] = {}
    for name, entry in raw.items():
        start = entry.get("start") if isinstance(entry, dict) else None
        if isinstance(start, bool) or not isinstance(start, int):
            raise TypeError(f"budget use {str(name)[:64]!r} must be an object with an integer "
                            "start and an amount")
        amount = bounded(entry.get("amount"), TOTAL_DIGITS, TOTAL_PLACES)
        use[str(name)] = {"start": start, "amount": str(amount)}
        definition = entry.get("definition")
        if definition is not None:
            if not isinstance(definition, str) or len(definition) > MAX_DEFINITION:
                raise TypeError(f"budget use {str(name)[:64]!r}: definition must be a string "
                                f"of at most {MAX_DEFINITION} characters")
            use[str(name)]["definition"] = definition
    return use

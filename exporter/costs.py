"""Exact cost per target: each counter increment times the price in force when it was counted."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from exporter.amounts import TOTAL_DIGITS, TOTAL_PLACES, bounded
from exporter.atomicfile import write_json
from exporter.clock import Clock, SystemClock
from exporter.configtypes import ModelPrice
from exporter.pricing import cost_of
from exporter.safejson import STATE_FILE, load_or_set_aside
from exporter.usage import ZERO, Totals

VERSION = 1


@dataclass
class CostMeter:
    """One target: the counters already priced, and the money they cost, by currency."""

    seen: Totals = ZERO
    cost: dict[str, Decimal] = field(default_factory=dict)

    def charge(self, counters: Totals, price: ModelPrice | None) -> tuple[Totals, Decimal | None]:
        """Price what ``counters`` grew by since last time; the increment and its cost.

        Counters never go down, but a field-wise max guards against a reading that did.
        Usage without a price is marked seen anyway: a price added later applies from then on.
        """
        delta = Totals(*(max(0, a - b) for a, b in zip(counters.values(), self.seen.values(),
                                                         strict=True)))
        self.seen = self.seen.maximum(counters)
        if price is None:
            return delta, None
        amount = cost_of(delta, price)
        self.cost[price.currency] = self.cost.get(price.currency, Decimal(0)) + amount
        return delta, amount

    def to_dict(self) -> dict[str, Any]:
        """JSON-able; amounts as exact decimal strings."""
        return {"seen": self.seen.as_dict(), "cost": {c: str(a) for c, a in self.cost.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CostMeter:
        """Inverse of :meth:`to_dict`; ValueError/TypeError/KeyError when malformed."""
        cost = {str(c): bounded(a, TOTAL_DIGITS, TOTAL_PLACES) for c, a in data["cost"].items()}
        return cls(Totals.from_dict(data["seen"]), cost)


@dataclass
class CostDocument:
    """Everything cost accounting persists: meters by target ident, budget use by name."""

    meters: dict[str, CostMeter] = field(default_factory=dict)
    budgets: dict[str, dict[str, Any]] = field(default_factory=dict)


class CostStore:
    """A small JSON file beside the state file, replaced atomically like the state file."""

    def __init__(self, path: str, clock: Clock | None = None) -> None:
        self.path = path
        self._clock: Clock = clock or SystemClock()

    def save(self, doc: CostDocument) -> None:
        """Write ``doc``: temp file, fsync, rename; raise OSError on failure."""
        data = {"version": VERSION, "meters": {i: m.to_dict() for i, m in doc.meters.items()},
                "budgets": doc.budgets}
        write_json(self.path, data)

    def load(self) -> CostDocument:
        """The saved document; an empty one when there is none. A bad file is moved aside and
        SetAsideError (a ValueError) says where."""
        doc = load_or_set_aside(self.path, STATE_FILE, _document, "cost", self._clock.time())
        return doc or CostDocument()


def _document(data: Any) -> CostDocument:
    """The cost document in decoded JSON ``data``; KeyError/TypeError/ValueError when malformed."""
    if data.get("version") != VERSION:
        raise ValueError(f"version {data.get('version')!r}, expected {VERSION}")
    meters = {str(i): CostMeter.from_dict(m) for i, m in data["meters"].items()}
    return CostDocument(meters, budget_use(data["budgets"]))


def budget_use(raw: object) -> dict[str, dict[str, Any]]:
    """Saved budget use by name, each ``{"start": seconds, "amount": "exact decimal"}``;
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
    return use

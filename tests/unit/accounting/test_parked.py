"""Parked ledgers: kept with since when, and expired after their retention."""

from __future__ import annotations

from exporter.accounting.ledger import Ledger
from exporter.accounting.parked import RETENTION, Parked

T0 = 1_700_000_000


def test_a_parked_ledger_keeps_its_time_and_expires_after_the_retention() -> None:
    parked = Parked()
    one, two = Ledger(T0, 3600, 600), Ledger(T0, 3600, 600)
    parked.park({"a": one}, {"a": T0 - 5}, T0)
    parked.park({"a": two, "b": two}, {}, T0 + 100)  # "a" is parked already: keeps its time
    assert parked.ledgers() == {"a": one, "b": two}
    assert parked.since() == {"a": T0 - 5, "b": T0 + 100}
    assert parked.expire(T0 - 5 + RETENTION) == []
    assert parked.expire(T0 - 4 + RETENTION) == ["a"]
    parked.unpark(["b"])
    assert parked.ledgers() == {} == parked.since()


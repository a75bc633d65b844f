"""Parked ledgers: kept with since when, and expired after their retention."""

from __future__ import annotations

import logging

import pytest

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



def test_expiry_is_said_once_per_batch_with_the_count_the_days_and_five_idents(
        caplog: pytest.LogCaptureFixture) -> None:
    parked = Parked()
    idents = ["f", "e", "d", "c", "b", "a"]
    parked.park({i: Ledger(T0, 3600, 600) for i in idents}, {}, T0)
    with caplog.at_level(logging.INFO, logger="exporter.accounting.parked"):
        assert parked.expire(T0 + 1 + 2 * 86400, retention=2 * 86400) == sorted(idents)
        assert parked.expire(T0 + 10 * 86400, retention=2 * 86400) == []  # nothing left: silent
    assert caplog.messages == ["forgot 6 targets not polled for 2 days: a, b, c, d, e"]
    # The default retention is said in whole days.
    caplog.clear()
    parked.park({"g": Ledger(T0, 3600, 600)}, {}, T0)
    with caplog.at_level(logging.INFO, logger="exporter.accounting.parked"):
        assert parked.expire(T0 + RETENTION + 1) == ["g"]
    assert caplog.messages == ["forgot 1 targets not polled for 31 days: g"]


def test_unparking_targets_that_were_never_parked_is_harmless() -> None:
    parked = Parked()
    parked.park({"a": Ledger(T0, 3600, 600)}, {}, T0)
    parked.unpark(["a", "b"])  # "b" is polled again without ever having been parked
    assert parked.ledgers() == {} == parked.since()

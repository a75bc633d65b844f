"""Hostile state documents (and version 1 cost files): set aside or ignored, never a crash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exporter.accounting.ledger import Ledger
from exporter.accounting.state import StateError, StateStore
from exporter.core.clock import FakeClock

NOW = 1_700_000_000
GOOD_LEDGER = Ledger(NOW - 3600, 3600, 600).to_dict()


def _state(**ledger: object) -> str:
    return json.dumps({"version": 1, "saved_at": NOW, "meta": {},
                       "targets": {"/k/m": {**GOOD_LEDGER, **ledger}}})


def _state2(**ledger: object) -> str:
    return json.dumps({"version": 2, "saved_at": NOW, "meta": {},
                       "targets": {"/k/m": {"ledger": {**GOOD_LEDGER, **ledger}}}})


def _deep(n: int) -> str:
    return '{"version": 1, "targets": ' + "[" * n + "]" * n + "}"


STATES = {
    "origin_infinity": _state(origin="INF").replace('"INF"', "Infinity"),
    "origin_nan": _state(origin="NAN").replace('"NAN"', "NaN"),
    "origin_1e400": _state(origin="BIG").replace('"BIG"', "1e400"),
    "origin_5000_digits": _state(origin="BIG").replace('"BIG"', "9" * 5000),
    "nested_100000": _deep(100_000),
    "nested_500": _deep(500),
    "closed_is_a_list": _state(closed=[1, 2]),
    "period_zero": _state(grid={"period": 0}),
    "unknown_zone": _state(grid={"zone": "Mars/Olympus"}),
    "not_utf8": "\udcff",
    "v2_origin_infinity": _state2(origin="INF").replace('"INF"', "Infinity"),
    "v2_closed_is_a_list": _state2(closed=[1, 2]),
    "v2_cursor_a_float": _state2(cursor=1.5),
}


@pytest.mark.parametrize("name", STATES)
def test_hostile_state_is_moved_aside(tmp_path: Path, name: str) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(STATES[name].encode("utf-8", "surrogateescape"))
    with pytest.raises(StateError, match=r"moved to .*state\.json\.corrupt-1700000000.*afresh"):
        StateStore(str(path), FakeClock(NOW)).load()
    assert not path.exists()
    assert (tmp_path / "state.json.corrupt-1700000000").exists()


def test_state_file_over_its_cap_is_moved_aside_unread(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    with path.open("wb") as f:
        f.truncate(33 << 20)  # sparse: 33 MiB of zeros, no disk used
    with pytest.raises(StateError, match="larger than"):
        StateStore(str(path), FakeClock(NOW)).load()


def _cost(budgets: object = None, cost: object = "1.5") -> dict[str, object]:
    return {"meters": {"/k/m": {"seen": {"tokens": 1}, "cost": {"USD": cost}}},
            "budgets": {} if budgets is None else budgets}


COSTS = {
    "budget_use_not_an_object": _cost({"x": 1}),
    "budget_amount_1e9999999": _cost({"x": {"start": NOW, "amount": "1e9999999"}}),
    "budget_amount_nan": _cost({"x": {"start": NOW, "amount": "NaN"}}),
    "budget_start_a_string": _cost({"x": {"start": "today", "amount": "1"}}),
    "budgets_a_list": _cost([1]),
    "cost_1e999999999": _cost(cost="1e999999999"),
    "cost_negative": _cost(cost="-1"),
}


def _document(cost: dict[str, object]) -> str:
    meters = cost["meters"]
    assert isinstance(meters, dict)
    return json.dumps({"version": 2, "saved_at": NOW, "meta": {}, "budgets": cost["budgets"],
                       "targets": {"/k/m": {"ledger": GOOD_LEDGER, "cost": meters["/k/m"]}}})


@pytest.mark.parametrize("name", COSTS)
def test_hostile_cost_in_the_state_document_sets_it_aside(tmp_path: Path, name: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(_document(COSTS[name]))
    with pytest.raises(StateError, match=r"moved to .*corrupt-1700000000.*afresh"):
        StateStore(str(path), FakeClock(NOW)).load()
    assert not path.exists()


@pytest.mark.parametrize("name", [*COSTS, "nested_100000", "infinity"])
def test_a_hostile_version_1_cost_file_keeps_the_counters_and_prices_afresh(
        tmp_path: Path, name: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(_state())
    raw = {"nested_100000": '{"version": 1, "meters": ' + "[" * 100_000 + "]" * 100_000 + "}",
           "infinity": '{"version": 1, "meters": {}, "budgets": {"x": {"start": Infinity}}}'}
    text = raw.get(name) or json.dumps({"version": 1, **COSTS[name]})
    (tmp_path / "state.json.cost.json").write_text(text)
    doc = StateStore(str(path), FakeClock(NOW)).load()
    assert list(doc.ledgers) == ["/k/m"]
    assert (doc.meters, doc.budgets) == ({}, {})


def test_good_budget_use_survives_the_checks(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(_document(_cost({"x": {"start": NOW, "amount": "12.5"}})))
    assert StateStore(str(path)).load().budgets == {"x": {"start": NOW, "amount": "12.5"}}

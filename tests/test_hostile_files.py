"""Hostile state and cost files: each is moved aside with one clear line, never a crash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exporter.clock import FakeClock
from exporter.config import parse_config
from exporter.costs import CostStore
from exporter.ledger import Ledger
from exporter.spend import Spend
from exporter.state import StateError, StateStore

NOW = 1_700_000_000
GOOD_LEDGER = Ledger(NOW - 3600, 3600, 600).to_dict()
CONFIG = parse_config({"api": {"public_key": "p", "private_key": "private-key"},
                       "targets": [{"key": "k", "model": "m"}],
                       "budgets": [{"name": "x", "period": "daily", "tokens": 10}]}, {}, "/")


def _state(**ledger: object) -> str:
    return json.dumps({"version": 1, "saved_at": NOW, "meta": {},
                       "targets": {"/k/m": {**GOOD_LEDGER, **ledger}}})


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
    "period_zero": _state(period=0),
    "not_utf8": "\udcff",
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


def _cost(budgets: object = None, cost: object = "1.5") -> str:
    return json.dumps({"version": 1,
                       "meters": {"/k/m": {"seen": {"tokens": 1}, "cost": {"USD": cost}}},
                       "budgets": {} if budgets is None else budgets})


COSTS = {
    "budget_use_not_an_object": _cost({"x": 1}),
    "budget_amount_1e9999999": _cost({"x": {"start": NOW, "amount": "1e9999999"}}),
    "budget_amount_nan": _cost({"x": {"start": NOW, "amount": "NaN"}}),
    "budget_start_a_string": _cost({"x": {"start": "today", "amount": "1"}}),
    "budgets_a_list": _cost([1]),
    "cost_1e999999999": _cost(cost="1e999999999"),
    "cost_negative": _cost(cost="-1"),
    "nested_100000": '{"version": 1, "meters": ' + "[" * 100_000 + "]" * 100_000 + "}",
    "infinity": '{"version": 1, "meters": {}, "budgets": {"x": {"start": Infinity}}}',
}


@pytest.mark.parametrize("name", COSTS)
def test_hostile_cost_file_is_moved_aside(tmp_path: Path, name: str) -> None:
    path = tmp_path / "state.json.cost.json"
    path.write_text(COSTS[name])
    with pytest.raises(ValueError, match=r"cost file .* moved to .*corrupt-1700000000"):
        CostStore(str(path), FakeClock(NOW)).load()
    assert not path.exists()


@pytest.mark.parametrize("name", COSTS)
def test_spend_starts_from_zero_on_a_hostile_cost_file(tmp_path: Path, name: str,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "state.json.cost.json"
    path.write_text(COSTS[name])
    spend = Spend(CONFIG, CostStore(str(path), FakeClock(NOW)))
    spend.save()  # and the next save writes a good file in its place
    assert CostStore(str(path)).load().budgets == {}
    assert [r.levelname for r in caplog.records] == ["ERROR"]
    assert "cost and budget use start from zero" in caplog.records[0].getMessage()


def test_good_budget_use_survives_the_checks(tmp_path: Path) -> None:
    path = tmp_path / "cost.json"
    path.write_text(_cost({"x": {"start": NOW, "amount": "12.5"}}))
    assert CostStore(str(path)).load().budgets == {"x": {"start": NOW, "amount": "12.5"}}

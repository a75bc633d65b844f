"""State file: round trip, atomic replacement, bad files moved aside, reconciling with config."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from exporter.clock import FakeClock
from exporter.ledger import Ledger, Read
from exporter.state import StateError, StateStore, reconcile
from exporter.usage import Totals

H = 3600
T0 = 1_700_000_000 // H * H


def ledger(value: int = 5) -> Ledger:
    """A ledger with one closed hour and one open reading."""
    led = Ledger(T0, H, 600)
    led.record(Read(T0, T0 + H - 1, (T0,)), Totals(tokens=value), T0 + H + 600)
    led.record(Read(T0 + H, T0 + H + 600, (T0 + H,)), Totals(tokens=1), T0 + H + 600)
    return led


class Unserialisable(Ledger):
    """A ledger whose JSON form fails half-way through writing: a crash mid-write."""

    def to_dict(self) -> dict[str, Any]:
        """Valid numbers first, then something json cannot write."""
        return {**super().to_dict(), "zz": object()}


def test_round_trip(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path / "state.json"), FakeClock(T0))
    store.save({"p/k/m": ledger(7)}, meta={"version": "0.1.0"})
    loaded = store.load()
    assert list(loaded) == ["p/k/m"]
    assert loaded["p/k/m"].to_dict() == ledger(7).to_dict()
    doc = json.loads((tmp_path / "state.json").read_text())
    assert (doc["version"], doc["saved_at"], doc["meta"]) == (1, T0, {"version": "0.1.0"})


def test_missing_file_is_empty(tmp_path: Path) -> None:
    assert StateStore(str(tmp_path / "none.json")).load() == {}


def test_crash_mid_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    store = StateStore(str(path), FakeClock(T0))
    store.save({"a": ledger(1)})
    before = path.read_bytes()
    with pytest.raises(TypeError):
        store.save({"a": Unserialisable(T0, H, 0)})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["state.json"]


def test_leftover_temp_file_from_a_kill_does_not_matter(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    StateStore(str(path)).save({"a": ledger(3)})
    (tmp_path / "state.json.tmp-abc").write_text('{"version": 1, "targ')
    assert StateStore(str(path)).load()["a"].counters() == ledger(3).counters()


@pytest.mark.parametrize("content", [
    "{not json", '{"version": 2, "targets": {}}', '{"version": 1}', "[]",
    '{"version": 1, "targets": {"a": {"origin": 1}}}',
])
def test_bad_file_is_moved_aside(tmp_path: Path, content: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(content)
    with pytest.raises(StateError, match=r"moved to .*state\.json\.corrupt-1700000000"):
        StateStore(str(path), FakeClock(1_700_000_000)).load()
    assert not path.exists()
    assert (tmp_path / "state.json.corrupt-1700000000").read_text() == content


def test_unwritable_directory_is_a_clear_error(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path / "missing" / "state.json"))
    with pytest.raises(StateError, match="check that its directory exists"):
        store.save({"a": ledger()})


def test_state_holds_only_idents_and_numbers(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    StateStore(str(path)).save({"proj/uminferapikey-1/model": ledger()})
    strings: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            strings.extend(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str):
            strings.append(node)

    walk(json.loads(path.read_text()))
    assert "proj/uminferapikey-1/model" in strings
    assert all(s.isidentifier() or s == "proj/uminferapikey-1/model" for s in strings)


def test_reconcile_drops_adds_and_rebases() -> None:
    old = ledger(4)
    now = T0 + 3 * 86400
    result = reconcile({"kept": old, "gone": ledger()}, ["kept", "new"], now, H, 600, 86400)
    assert set(result.ledgers) == {"kept", "new"}
    assert result.ledgers["kept"] is old
    assert result.ledgers["kept"].counters() == Totals(tokens=5)
    assert result.skipped_seconds == now - 86400 - (T0 + H)  # the open hour was never settled
    assert result.ledgers["new"].settled_until() == now - 1
    assert result.ledgers["new"].counters() == Totals()


def test_reconcile_with_a_new_period_keeps_counters_and_read_bounds() -> None:
    old = ledger(4)
    result = reconcile({"a": old}, ["a"], T0 + 2 * H, 1800, 600, 86400)
    led = result.ledgers["a"]
    assert (led.period, led.counters(), result.skipped_seconds) == (1800, Totals(tokens=5), 0)
    reads = led.plan(T0 + 2 * H + 700)
    # The hour read under the old grid stays whole; new time follows the half-hour grid.
    assert [(r.start, r.end) for r in reads] == [
        (T0 + H, T0 + 2 * H - 1), (T0 + 2 * H, T0 + 2 * H + 700)]

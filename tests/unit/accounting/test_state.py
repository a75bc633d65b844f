"""The state document: round trip, atomic replacement, bad files set aside, migration, restart."""

from __future__ import annotations

import json
import logging
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from exporter.accounting.ledger import Ledger, Read
from exporter.accounting.state import (
    StateDocument,
    StateError,
    StateKeeper,
    StateStore,
    _parse,
    restart,
    retarget,
)
from exporter.core.clock import FakeClock
from exporter.core.grid import Grid
from exporter.core.usage import Totals
from exporter.cost.meters import CostMeter

H = 3600


def HOURS(_: str) -> Grid:  # noqa: N802 (reads as the constant it stands for)
    """The hour grid of every ledger here."""
    return Grid.every(H)
T0 = 1_700_000_000 // H * H


def ledger(value: int = 5) -> Ledger:
    """A ledger with one closed hour and one open reading."""
    led = Ledger(T0, H, 600)
    led.record(Read(T0, T0 + H - 1, (T0,)), Totals(tokens=value), T0 + H + 600)
    led.record(Read(T0 + H, T0 + H + 600, (T0 + H,)), Totals(tokens=1), T0 + H + 600)
    return led


def doc(**ledgers: Ledger) -> StateDocument:
    return StateDocument(dict(ledgers))


class Unserialisable(Ledger):
    """A ledger whose JSON form fails half-way through writing: a crash mid-write."""

    def to_dict(self) -> dict[str, Any]:
        """Valid numbers first, then something json cannot write."""
        return {**super().to_dict(), "zz": object()}


def test_round_trip_of_ledgers_parked_cost_and_budgets(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path / "state.json"), FakeClock(T0))
    meter = CostMeter(Totals(tokens=6), {"USD": Decimal("0.000000001234567890123456789")})
    saved = StateDocument({"p/k/m": ledger(7), "p/k/gone": ledger(2)}, {"p/k/gone": T0 - 5},
                          {"p/k/m": meter}, {"b": {"start": 0, "amount": "1.5"}})
    store.save(saved, meta={"version": "0.1.0"})
    loaded = store.load()
    assert {i: led.to_dict() for i, led in loaded.ledgers.items()} == {
        "p/k/m": ledger(7).to_dict(), "p/k/gone": ledger(2).to_dict()}
    assert (loaded.parked, loaded.meters, loaded.budgets) == (
        {"p/k/gone": T0 - 5}, {"p/k/m": meter}, {"b": {"start": 0, "amount": "1.5"}})
    data = json.loads((tmp_path / "state.json").read_text())
    assert (data["version"], data["saved_at"], data["meta"]) == (2, T0, {"version": "0.1.0"})


def test_version_1_and_its_cost_file_are_migrated_once(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": 1, "saved_at": T0, "meta": {},
                                "targets": {"p/k/m": ledger(7).to_dict()}}))
    cost = tmp_path / "state.json.cost.json"
    cost.write_text(json.dumps({"version": 1, "meters": {"p/k/m": {
        "seen": {"tokens": 8}, "cost": {"USD": "0.5"}}}, "budgets": {
        "b": {"start": 0, "amount": "2"}}}))
    store = StateStore(str(path))
    loaded = store.load()
    assert loaded.ledgers["p/k/m"].counters() == Totals(tokens=8)
    assert loaded.meters["p/k/m"] == CostMeter(Totals(tokens=8), {"USD": Decimal("0.5")})
    assert loaded.budgets == {"b": {"start": 0, "amount": "2"}}
    assert cost.exists()  # kept until the new document is safely written
    store.save(loaded)
    assert not cost.exists()
    assert StateStore(str(path)).load().meters == loaded.meters


def test_version_1_with_a_bad_cost_file_keeps_counters_and_prices_afresh(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": 1, "targets": {"p/k/m": ledger(7).to_dict()}}))
    (tmp_path / "state.json.cost.json").write_text('{"budgets": {"x": 1}}')
    loaded = StateStore(str(path)).load()
    assert loaded.ledgers["p/k/m"].counters() == Totals(tokens=8)
    assert (loaded.meters, loaded.budgets) == ({}, {})


def test_missing_file_is_empty(tmp_path: Path) -> None:
    assert StateStore(str(tmp_path / "none.json")).load() == StateDocument()


def test_crash_mid_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    store = StateStore(str(path), FakeClock(T0))
    store.save(doc(a=ledger(1)))
    before = path.read_bytes()
    with pytest.raises(TypeError):
        store.save(doc(a=Unserialisable(T0, H, 0)))
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["state.json"]


def test_leftover_temp_file_from_a_kill_does_not_matter(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    StateStore(str(path)).save(doc(a=ledger(3)))
    (tmp_path / "state.json.tmp-abc").write_text('{"version": 2, "targ')
    assert StateStore(str(path)).load().ledgers["a"].counters() == ledger(3).counters()


GOOD = {"ledger": ledger().to_dict()}


@pytest.mark.parametrize("content", [
    "{not json", '{"version": 3, "targets": {}}', '{"version": 2}', "[]",
    '{"version": 1, "targets": {"a": {"origin": 1}}}',
    json.dumps({"version": 2, "targets": {"a": {"ledger": {"origin": 1}}}}),
    json.dumps({"version": 2, "targets": {"a": GOOD}, "budgets": {"x": 1}}),
    json.dumps({"version": 2, "targets": {"a": GOOD}, "budgets": {
        "x": {"start": 0, "amount": "1e9999999"}}}),
    json.dumps({"version": 2, "targets": {"a": {**GOOD, "parked_at": 1.5}}}),
    json.dumps({"version": 2, "targets": {"a": {**GOOD, "cost": {"seen": {}, "cost": {
        "USD": "-1"}}}}}),
    json.dumps({"version": 2, "targets": {"a": {"ledger": {
        **ledger().to_dict(), "origin": 1e300}}}}),
    '{"version": 2, "targets": {"a": {"ledger": {"origin": Infinity}}}}',
    "[" * 100_000 + "]" * 100_000,
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
        store.save(doc(a=ledger()))


def test_state_holds_only_idents_and_numbers(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    StateStore(str(path)).save(doc(**{"proj/uminferapikey-1/model": ledger()}))
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


def test_restart_rebases_every_loaded_ledger() -> None:
    kept, parked = ledger(4), ledger(2)
    now = T0 + 3 * 86400
    result = restart({"kept": kept, "parked": parked}, now, HOURS, 600, 86400)
    assert result.ledgers == {"kept": kept, "parked": parked}
    assert kept.counters() == Totals(tokens=5)
    # Each ledger's open hour [T0 + H, ...) was never settled: given up, for both.
    assert result.skipped_seconds == 2 * (now - 86400 - (T0 + H))


def test_retarget_never_rebases_and_leaves_new_targets_to_the_poller() -> None:
    old = ledger(4)
    ledgers = retarget({"kept": old, "gone": ledger()}, ["kept", "new"], HOURS, 600)
    assert ledgers == {"kept": old}
    assert old.settled_until() == T0 + H - 1 and old.skipped_seconds == 0


def test_retarget_with_a_new_period_keeps_counters_and_read_bounds() -> None:
    old = ledger(4)
    led = retarget({"a": old}, ["a"], lambda _: Grid.every(1800), 600)["a"]
    assert (led.period, led.counters()) == (1800, Totals(tokens=5))
    reads = led.plan(T0 + 2 * H + 700)
    # The hour read under the old grid stays whole; new time follows the half-hour grid.
    assert [(r.start, r.end) for r in reads] == [
        (T0 + H, T0 + 2 * H - 1), (T0 + 2 * H, T0 + 2 * H + 700)]


@pytest.mark.parametrize("audit", [True, False])
def test_the_audit_setting_applies_to_saved_ledgers_on_restart_and_retarget(audit: bool) -> None:
    # ``reconcile`` became restart (a new process) and retarget (a reload or discovery change):
    # both must turn audits on or off for ledgers that already exist, not only for new ones.
    restarted = restart({"a": Ledger(T0, H, 600, audit=not audit)}, T0 + H, HOURS, 600, 86400,
                        audit=audit).ledgers["a"]
    retargeted = retarget({"a": Ledger(T0, H, 600, audit=not audit)}, ["a"], HOURS, 600,
                          audit=audit)["a"]
    for led in (restarted, retargeted):
        assert led.audit is audit
        assert led.to_dict()["audit"] is audit  # and saved so
        # An hour closed from now on is audited (re-read after 2 * settle) only with audits on.
        led.record(Read(T0, T0 + H - 1, (T0,)), Totals(tokens=3), T0 + H + 600)
        kinds = [r.kind for r in led.plan(T0 + 2 * H + 1200 + H)]
        assert ("audit" in kinds) is audit


@pytest.mark.parametrize(("content", "why"), [
    ('{"version": 3, "targets": {}}', "ValueError('version 3, expected 2')"),
    ("[]", "ValueError('version None, expected 2')"),
    ('{"version": 2, "targets": []}', "TypeError('targets must be an object')"),
    ('{"version": 1, "targets": []}', "TypeError('targets must be an object')"),
    ('{"version": 2, "targets": {"a": 1}}', "TypeError(\"target 'a' must be an object\")"),
    (json.dumps({"version": 2, "targets": {"a": {**GOOD, "parked_at": 1.5}}}),
     "TypeError(\"target 'a': parked_at must be an integer\")"),
    ('{"version": 2, "targets": {}, "budget_seeds": "a"}',
     "TypeError('budget_seeds must be a list of target idents')"),
    ('{"version": 2, "targets": {}, "budget_seeds": [1]}',
     "TypeError('budget_seeds must be a list of target idents')"),
])
def test_a_bad_file_says_what_is_wrong_and_where_it_went(tmp_path: Path, content: str,
                                                        why: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(content)
    with pytest.raises(StateError) as caught:
        StateStore(str(path), FakeClock(1_700_000_000)).load()
    assert str(caught.value) == (
        f"state file {path} is not a valid state ({why}); moved to {path}.corrupt-1700000000; "
        "counters and cost start afresh")


def test_a_document_without_budgets_has_none() -> None:
    assert _parse({"version": 2, "targets": {}}).budgets == {}




# --- Seeds, the keeper, and accounting.origin on restart and reload (mutation survivors, #33) ---

def test_the_targets_whose_budget_seed_is_due_are_saved_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    saved = doc(a=ledger())
    saved.seeds = ["a", "p/k/other"]
    StateStore(str(path)).save(saved)
    assert json.loads(path.read_text())["budget_seeds"] == ["a", "p/k/other"]
    assert StateStore(str(path)).load().seeds == ["a", "p/k/other"]


def test_a_migrated_cost_file_removed_meanwhile_does_not_fail_the_write(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": 1, "targets": {"a": ledger().to_dict()}}))
    cost = tmp_path / "state.json.cost.json"
    cost.write_text('{"meters": {}, "budgets": {}}')
    store = StateStore(str(path))
    loaded = store.load()
    cost.unlink()  # removed by hand before the first version 2 write
    store.save(loaded)
    assert StateStore(str(path)).load().ledgers["a"].to_dict() == ledger().to_dict()


def ignore(_: bool) -> None:
    """A keeper's write outcome, not looked at."""


def test_a_keeper_without_a_path_reads_and_writes_nothing() -> None:
    told: list[bool] = []
    keeper = StateKeeper(None, told.append)
    keeper.configure(None)  # a reload without state.path either
    assert keeper.load() == StateDocument()
    assert keeper.save(doc(a=ledger())) is True
    assert told == []


def test_a_keeper_sets_a_bad_file_aside_and_starts_from_zero(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "state.json"
    path.write_text("[]")
    assert StateKeeper(str(path), ignore).load() == StateDocument()
    [error] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert error.startswith(f"state file {path} is not a valid state (ValueError('version None, "
                            "expected 2')); moved to ")
    assert error.endswith("; counters and cost start afresh; starting from zero")


def test_a_keeper_says_when_writing_starts_and_stops_failing_not_every_cycle(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    path = tmp_path / "later" / "state.json"
    told: list[bool] = []
    keeper = StateKeeper(str(path), told.append)
    assert [keeper.save(doc(a=ledger())) for _ in range(2)] == [False, False]
    path.parent.mkdir()  # the volume is back
    assert [keeper.save(doc(a=ledger())) for _ in range(2)] == [True, True]
    path.parent.joinpath("state.json").unlink()
    path.parent.rmdir()
    assert keeper.save(doc(a=ledger())) is False  # failing again: said again
    assert told == [False, False, True, True, False]
    said = [(r.levelname, r.getMessage()) for r in caplog.records
            if r.name == "exporter.accounting.state"]
    assert [level for level, _ in said] == ["ERROR", "INFO", "ERROR"]
    assert said[0][1].startswith(f"state not saved (cannot write state file {path}: ")
    assert said[0][1].endswith("; check that its directory exists and is writable, and free "
                               "space); /metrics holds its last published numbers until it can be")
    assert said[1][1] == f"state file {path} written again; publishing resumes"
    assert said[2][1].startswith(f"state not saved (cannot write state file {path}: ")


def test_a_keeper_writes_where_a_reload_points_it(tmp_path: Path) -> None:
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    keeper = StateKeeper(str(first), ignore)
    keeper.save(doc(a=ledger()))
    keeper.configure(str(second))
    keeper.save(doc(b=ledger()))
    keeper.configure(None)
    assert keeper.save(doc(c=ledger())) is True
    assert (set(StateStore(str(first)).load().ledgers),
            set(StateStore(str(second)).load().ledgers)) == ({"a"}, {"b"})


def test_a_keeper_told_its_own_path_again_still_removes_a_migrated_cost_file(
        tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": 1, "targets": {"a": ledger().to_dict()}}))
    cost = tmp_path / "state.json.cost.json"
    cost.write_text('{"meters": {}, "budgets": {}}')
    keeper = StateKeeper(str(path), ignore)
    loaded = keeper.load()
    keeper.configure(str(path))  # a reload that keeps state.path: the same store
    keeper.save(loaded)
    assert not cost.exists()


def begun_late() -> Ledger:
    """A ledger that began at its first poll, an hour after T0 (a baseline left out)."""
    led = Ledger(T0, H, 600, fresh=True)
    (read,) = led.plan(T0 + H + 10)
    led.record(read, Totals(tokens=4), T0 + H + 10)
    return led


def begun_early() -> Ledger:
    """A ledger counting from T0 - 1 h, before an origin of T0."""
    led = Ledger(T0 - H, H, 600)
    led.record(Read(T0 - H, T0 - H + 10, (T0 - H,)), Totals(tokens=2), T0 - H + 10)
    return led


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_on_restart_accounting_origin_applies_and_both_kinds_of_ledger_are_told(
        caplog: pytest.LogCaptureFixture) -> None:
    late, early = "p/" + "l" * 300, "p/" + "e" * 300  # named in a log line: cut at 200
    loaded = {late: begun_late(), "p/late": begun_late(), early: begun_early()}
    result = restart(loaded, T0 + H + 20, HOURS, 600, 86400, origin=T0)
    assert result.ledgers[late].counts_from(T0)  # counts from the origin now
    assert result.ledgers[early].origin == T0 - H  # counters never go down
    assert _warnings(caplog) == [
        f"2 targets began counting after accounting.origin's day ({late[:200]} first): they "
        "count from it now; what they counted stays and the time before is read from the API "
        "(uminfer_catchup_remaining_seconds)",
        f"1 targets began counting before accounting.origin's day ({early[:200]} first): they "
        "keep counting from there, since counters never go down; a peer refuses their ledgers "
        "and counts less. Remove the state file to count from the origin (their counters "
        "start again once)"]


def test_a_reload_applies_accounting_origin_but_tells_only_of_ledgers_begun_after_it(
        caplog: pytest.LogCaptureFixture) -> None:
    late, early = begun_late(), begun_early()
    grids = {"p/late": Grid.every(H), "p/early": Grid.every(H)}
    ledgers = retarget({"p/late": late, "p/early": early}, ["gone", "p/early", "p/late"],
                       grids.__getitem__, 600, origin=T0)
    assert ledgers == {"p/early": early, "p/late": late}
    assert late.counts_from(T0) and early.origin == T0 - H
    assert [w.split(":")[0] for w in _warnings(caplog)] == [
        "1 targets began counting after accounting.origin's day (p/late first)"]
    assert retarget({"p/early": early}, ["p/early"], HOURS, 600, origin=T0) == {"p/early": early}
    assert len(_warnings(caplog)) == 1  # nothing new to say


def test_a_restart_with_accounting_origin_over_ledgers_counting_from_it_says_nothing(
        caplog: pytest.LogCaptureFixture) -> None:
    led = Ledger(T0, H, 600)
    led.record(Read(T0, T0 + 10, (T0,)), Totals(tokens=2), T0 + 10)
    result = restart({"p/on": led}, T0 + 20, HOURS, 600, 86400, origin=T0)
    assert result.ledgers["p/on"].counts_from(T0)
    assert result.ledgers["p/on"].counters() == Totals(tokens=2)
    assert _warnings(caplog) == []

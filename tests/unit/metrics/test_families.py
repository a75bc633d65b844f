"""The families the golden file does not show (budgets, discovery, cost, settlement, several
accounts), written out by hand line by line, and escaping beyond ASCII."""

from __future__ import annotations

from decimal import Decimal

from exporter.accounting.snapshot import (
    DiscoverySnapshot,
    KeyHealth,
    KeysSnapshot,
    Snapshot,
    TargetSnapshot,
)
from exporter.config import Target, Window
from exporter.core.usage import Totals
from exporter.cost.budgets import BudgetSnapshot
from exporter.metrics.exposition import render
from exporter.metrics.families import escape, number

A = Target("key-a", "m", "p")
B = Target("key-b", "m", "p")
HOUR = Window("1h", 3600)
LA = 'project_id="p",key_id="key-a",model="m"'
LB = 'project_id="p",key_id="key-b",model="m"'


def samples(snapshot: Snapshot, family: str) -> list[str]:
    """The sample lines of ``family`` alone (not of a longer name starting with it)."""
    return [line for line in render(snapshot).decode().splitlines()
            if line.startswith((f"{family}{{", f"{family} "))]


def test_escape_writes_a_lone_surrogate_as_text_and_leaves_other_unicode_alone() -> None:
    assert escape("caf\u00e9 \u201cq\u201d") == "caf\u00e9 \u201cq\u201d"
    assert escape('k\ud800"\udfff\n\u00e9') == 'k\\\\ud800\\"\\\\udfff\\n\u00e9'
    text = render(Snapshot(targets=(TargetSnapshot(Target("k\udc80", "m")),))).decode()
    assert text.count('key_id="k\\\\udc80"') == text.count("key_id=") == 15  # each line


def test_number_writes_whole_values_without_a_point() -> None:
    assert [number(3), number(3.0), number(2.5), number(-0.0)] == ["3", "3", "2.5", "0"]


def test_settlement_and_catch_up_are_shown_and_settled_tokens_only_while_counting() -> None:
    settled = Totals(1, 2, 3, 1, 0)
    snap = Snapshot(targets=(
        TargetSnapshot(A, settled_until=100, settled=settled, catchup_remaining=0),
        TargetSnapshot(B, settled_until=50, settled=settled, counting=False,
                       catchup_remaining=3600),
    ))
    assert samples(snap, "uminfer_settled_timestamp_seconds") == [
        f"uminfer_settled_timestamp_seconds{{{LA}}} 100",
        f"uminfer_settled_timestamp_seconds{{{LB}}} 50"]
    assert samples(snap, "uminfer_settled_tokens_total") == [
        f"uminfer_settled_tokens_total{{{LA}}} 3"]
    assert samples(snap, "uminfer_catchup_remaining_seconds") == [
        f"uminfer_catchup_remaining_seconds{{{LA}}} 0",
        f"uminfer_catchup_remaining_seconds{{{LB}}} 3600"]
    assert samples(snap, "uminfer_input_tokens_total") == [f"uminfer_input_tokens_total{{{LA}}} 0"]


def test_cost_by_currency_only_while_counting_and_window_cost_by_window() -> None:
    snap = Snapshot(targets=(
        TargetSnapshot(A, cost=(("USD", Decimal("0.1")), ("C\"NY", Decimal(3))),
                       window_cost=((HOUR, "USD", Decimal("0.25")),)),
        TargetSnapshot(B, cost=(("USD", Decimal(1)),), counting=False,
                       window_cost=((HOUR, "USD", Decimal("1.50")),)),
    ))
    assert samples(snap, "uminfer_cost_total") == [
        f'uminfer_cost_total{{{LA},currency="USD"}} 0.1',
        f'uminfer_cost_total{{{LA},currency="C\\"NY"}} 3']
    assert samples(snap, "uminfer_window_cost") == [
        f'uminfer_window_cost{{{LA},window="1h",currency="USD"}} 0.25',
        f'uminfer_window_cost{{{LB},window="1h",currency="USD"}} 1.5']


def test_given_up_seconds_sum_over_targets_by_reason_beyond_the_categories_too() -> None:
    snap = Snapshot(targets=(
        TargetSnapshot(A, given_up=(("http", 60), ("window_semantics", 5))),
        TargetSnapshot(B, given_up=(("http", 30), ("window_semantics", 7))),
    ))
    lines = samples(snap, "uminfer_given_up_seconds_by_reason_total")
    assert 'uminfer_given_up_seconds_by_reason_total{reason="http"} 90' in lines
    assert 'uminfer_given_up_seconds_by_reason_total{reason="network"} 0' in lines
    assert lines[-1] == 'uminfer_given_up_seconds_by_reason_total{reason="window_semantics"} 12'
    assert samples(snap, "uminfer_given_up_seconds_total") == [
        f"uminfer_given_up_seconds_total{{{LA}}} 65", f"uminfer_given_up_seconds_total{{{LB}}} 37"]
    assert samples(Snapshot(), "uminfer_given_up_seconds_by_reason_total") == []


def test_budgets_each_with_its_limit_use_and_period_end() -> None:
    snap = Snapshot(budgets=(
        BudgetSnapshot('team "a"', "daily", "tokens", Decimal(1000), Decimal(250), 0, 86400),
        BudgetSnapshot("spend", "monthly", "US\\D", Decimal("10.5"), Decimal("0.25"), 0, 2678400),
    ))
    a = 'budget="team \\"a\\"",period="daily",unit="tokens"'
    s = 'budget="spend",period="monthly",unit="US\\\\D"'
    assert samples(snap, "uminfer_budget_limit") == [
        f"uminfer_budget_limit{{{a}}} 1000", f"uminfer_budget_limit{{{s}}} 10.5"]
    assert samples(snap, "uminfer_budget_used") == [
        f"uminfer_budget_used{{{a}}} 250", f"uminfer_budget_used{{{s}}} 0.25"]
    assert samples(snap, "uminfer_budget_period_end_timestamp_seconds") == [
        f"uminfer_budget_period_end_timestamp_seconds{{{a}}} 86400",
        f"uminfer_budget_period_end_timestamp_seconds{{{s}}} 2678400"]


def test_discovery_gauges_once_refreshed_and_its_time_once_one_succeeded() -> None:
    failing = Snapshot(discovery=DiscoverySnapshot(3, 5, 4, 1, None, 2))
    assert [line for name in ("targets", "keys", "selected_keys", "dropped_targets",
                              "last_success_timestamp_seconds", "failures_total")
            for line in samples(failing, f"uminfer_discovery_{name}")] == [
        "uminfer_discovery_targets 3", "uminfer_discovery_keys 5",
        "uminfer_discovery_selected_keys 4", "uminfer_discovery_dropped_targets 1",
        "uminfer_discovery_failures_total 2"]
    working = Snapshot(discovery=DiscoverySnapshot(last_success=1_700_000_000.0))
    assert samples(working, "uminfer_discovery_last_success_timestamp_seconds") == [
        "uminfer_discovery_last_success_timestamp_seconds 1700000000"]
    assert not any(line.startswith("uminfer_discovery_") for line in
                   render(Snapshot(targets=(TargetSnapshot(A),))).decode().splitlines())


def test_key_health_names_the_account_only_with_several_and_both_periods() -> None:
    keys = KeysSnapshot((
        KeyHealth("p", "k1", "n", 1, False, None, None, None, Decimal(100), Decimal("2.5"),
                  account='acc "1"'),
        KeyHealth("p", "k2", "n", 0, False, 99, Decimal(5), None, None, None),
    ), None, (("refused", 2),))
    snap = Snapshot(keys=keys)
    one = 'project_id="p",key_id="k1",account="acc \\"1\\""'
    two = 'project_id="p",key_id="k2"'
    assert samples(snap, "uminfer_key_info") == [
        f'uminfer_key_info{{{one},key_name="n",status="1"}} 1',
        f'uminfer_key_info{{{two},key_name="n",status="0"}} 1']
    assert samples(snap, "uminfer_key_expiry_timestamp_seconds") == [
        f"uminfer_key_expiry_timestamp_seconds{{{two}}} 99"]
    assert samples(snap, "uminfer_key_limit_amount") == [
        f'uminfer_key_limit_amount{{{one},period="monthly"}} 100',
        f'uminfer_key_limit_amount{{{two},period="daily"}} 5']
    assert samples(snap, "uminfer_key_used_amount") == [
        f'uminfer_key_used_amount{{{one},period="monthly"}} 2.5']
    assert samples(snap, "uminfer_key_listing_last_success_timestamp_seconds") == []
    assert 'uminfer_key_listing_failures_total{reason="refused"} 2' in samples(
        snap, "uminfer_key_listing_failures_total")
    assert not any(line.startswith("uminfer_key_") for line in
                   render(Snapshot(targets=(TargetSnapshot(A),))).decode().splitlines())

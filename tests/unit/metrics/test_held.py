"""While the state file cannot be written, /metrics holds the counted values last published and
shows each target's health as of now (exporter.metrics.held, ExpositionCache.hold)."""

from __future__ import annotations

from decimal import Decimal

from exporter.accounting.snapshot import KeysSnapshot, Snapshot, TargetSnapshot
from exporter.config import Target, Window
from exporter.core.usage import Totals
from exporter.cost.budgets import BudgetSnapshot
from exporter.metrics.exposition import ExpositionCache
from exporter.metrics.held import held
from tests.harness import parse_metrics

SHOWN = Target("key-a", "m", "p")
NEW = Target("key-b", "m", "p")
HOUR = Window("1h", 3600)


def budget(used: int) -> BudgetSnapshot:
    return BudgetSnapshot("team", "daily", "tokens", Decimal(1000), Decimal(used), 0, 86400)


def published() -> Snapshot:
    return Snapshot(targets=(
        TargetSnapshot(SHOWN, Totals(10, 5, 15, 2, 0), ((HOUR, Totals(1, 1, 2, 1, 0)),), 100.0,
                       up=True, last_success=100.0, settled_until=90, revisions=1,
                       cost=(("USD", Decimal("0.5")),), catchup_remaining=0),
    ), generated_at=100.0, budgets=(budget(15),))


def now() -> Snapshot:
    """A later cycle: the counters moved on (but were not saved), health changed, a target
    appeared, the budget was used more."""
    return Snapshot(targets=(
        TargetSnapshot(SHOWN, Totals(40, 20, 60, 8, 0), ((HOUR, Totals(9, 9, 18, 3, 0)),), 200.0,
                       up=False, last_success=150.0, settled_until=190, revisions=2,
                       failures=(("timeout", 3),), cost=(("USD", Decimal(2)),),
                       catchup_remaining=0),
        TargetSnapshot(NEW, Totals(7, 7, 14, 1, 0), up=True, last_success=200.0,
                       failures=(("http", 1),), catchup_remaining=60),
    ), generated_at=200.0, budgets=(budget(60),), keys=KeysSnapshot((), 200.0),
        unpriced=(("m", "no_price"),))


def test_held_keeps_the_published_counts_and_takes_health_and_the_rest_from_now() -> None:
    before, current = published(), now()
    assert held(before, current) == Snapshot(
        targets=(
            # Counted values as published, health (up, last success, failures) as of now.
            TargetSnapshot(SHOWN, Totals(10, 5, 15, 2, 0), ((HOUR, Totals(1, 1, 2, 1, 0)),),
                           100.0, up=False, last_success=150.0, settled_until=90, revisions=1,
                           failures=(("timeout", 3),), cost=(("USD", Decimal("0.5")),),
                           catchup_remaining=0),
            # Never published: its health and catch-up only, not counting, no counters.
            TargetSnapshot(NEW, up=True, last_success=200.0, failures=(("http", 1),),
                           counting=False, catchup_remaining=60),
        ),
        generated_at=200.0, budgets=(budget(15),), keys=KeysSnapshot((), 200.0),
        unpriced=(("m", "no_price"),))


def test_held_shows_only_the_targets_of_now() -> None:
    gone = Snapshot(targets=(TargetSnapshot(NEW, up=True),), generated_at=300.0)
    assert held(published(), gone).targets == (
        TargetSnapshot(NEW, up=True, counting=False),)


def test_a_held_body_shows_the_published_counter_and_the_current_health() -> None:
    cache = ExpositionCache()
    cache.publish(published())
    cache.hold(now())
    samples = parse_metrics(cache.body(compressed=False).decode())
    shown = frozenset({"project_id": "p", "key_id": "key-a", "model": "m"}.items())
    new = frozenset({"project_id": "p", "key_id": "key-b", "model": "m"}.items())
    assert samples[("uminfer_tokens_total", shown)] == 15  # not 60: that was never saved
    assert ("uminfer_tokens_total", new) not in samples
    assert samples[("uminfer_up", shown)] == 0
    assert samples[("uminfer_up", new)] == 1
    assert samples[("uminfer_target_failures_total", shown | {("reason", "timeout")})] == 3
    assert cache.shown() == held(published(), now())
    cache.publish(now())  # written again: the counters resume where they are
    samples = parse_metrics(cache.body(compressed=False).decode())
    assert samples[("uminfer_tokens_total", shown)] == 60
    assert samples[("uminfer_tokens_total", new)] == 14

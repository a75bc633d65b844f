"""What /metrics shows while the state file cannot be written: the last published numbers, with
each target's health as of now, so the operator sees why and which targets are up."""

from __future__ import annotations

from dataclasses import replace

from exporter.accounting.snapshot import Snapshot, TargetSnapshot


def held(published: Snapshot, now: Snapshot) -> Snapshot:
    """``now`` with the counted values (counters, cost, windows, budgets) of ``published``.

    A counter shown now that a restart took back would be read by Prometheus as a reset and
    counted again; health (up, last success, failures) is never taken back, so it is current.
    """
    before = {t.target: t for t in published.targets}
    targets = tuple(_held(before.get(t.target), t) for t in now.targets)
    return replace(now, targets=targets, budgets=published.budgets)


def _held(published: TargetSnapshot | None, now: TargetSnapshot) -> TargetSnapshot:
    if published is None:  # never shown: its health only, no counters yet
        return TargetSnapshot(now.target, up=now.up, last_success=now.last_success,
                              failures=now.failures, counting=False,
                              catchup_remaining=now.catchup_remaining)
    return replace(published, up=now.up, last_success=now.last_success, failures=now.failures)

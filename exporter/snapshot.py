"""Immutable results of a poll cycle: what the exposition renders and the server serves."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.config import Target, Window
from exporter.usage import ZERO, Totals


@dataclass(frozen=True, slots=True)
class TargetSnapshot:
    """Everything exported about one target, as of the end of a poll cycle."""

    target: Target
    counters: Totals = ZERO
    windows: tuple[tuple[Window, Totals], ...] = ()
    windows_at: float | None = None  # wall-clock end of the window reads
    up: bool = False
    last_success: float | None = None
    settled_until: int | None = None
    failures: tuple[tuple[str, int], ...] = ()  # category -> count, since start
    revisions: int = 0  # readings lower than an earlier one (kept the higher)
    late_after_settle: Totals = ZERO  # usage that appeared after its period settled


@dataclass(frozen=True, slots=True)
class Snapshot:
    """All targets, in configuration order."""

    targets: tuple[TargetSnapshot, ...] = ()
    generated_at: float = 0.0

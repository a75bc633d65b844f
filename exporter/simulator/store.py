"""The simulator's usage events, indexed per target so a window sum costs O(log n + k)."""

from __future__ import annotations

import threading
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass

from exporter.simulator.buckets import BucketPolicy
from exporter.simulator.usage import Usage

#: ``Usages[].Type`` for each Usage field, in field order (``total`` repeats in + out).
ROW_TYPES = ("in", "out", "total", "request_count", "image_generation")

Row = tuple[str, int, int, str]
"""One ``Usages`` entry: (Type, Count, bucket Timestamp, Model)."""

_TargetKey = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class Event:
    """Usage that happened at ``ts`` and shows in the API from ``visible_at`` on."""

    ts: int
    visible_at: float
    project: str
    key: str
    model: str
    totals: Usage


class _Series:
    """One target's events as parallel arrays sorted by ts.

    A Python object per event would not fit a day of history for 10,000 targets;
    seven machine-word columns do.
    """

    def __init__(self) -> None:
        self.ts = array("q")
        self.visible = array("d")
        self.counts = tuple(array("q") for _ in ROW_TYPES)

    def add(self, event: Event) -> None:
        t = event.totals
        # Attribute access, not a method call: this runs once per event, millions of times.
        values = (t.input_tokens, t.output_tokens, t.tokens, t.requests, t.image_generations)
        # Traffic arrives in ts order, so appending is the common case; injected
        # events may land in the past and pay for an insert.
        i = len(self.ts)
        if i and self.ts[-1] > event.ts:
            i = bisect_right(self.ts, event.ts)
        self.ts.insert(i, event.ts)
        self.visible.insert(i, event.visible_at)
        for column, value in zip(self.counts, values, strict=True):
            column.insert(i, value)

    def indexes(self, start: int, end: int, at: float) -> list[int]:
        """Positions of events with start <= ts <= end that are visible at ``at``."""
        visible = self.visible
        span = range(bisect_left(self.ts, start), bisect_right(self.ts, end))
        return [i for i in span if visible[i] <= at]

    def total(self, indexes: Iterable[int]) -> Usage:
        chosen = list(indexes)
        return Usage(*(sum(column[i] for i in chosen) for column in self.counts))

    def buckets(self, indexes: Iterable[int], policy: BucketPolicy) -> dict[int, list[int]]:
        """Per-bucket sums of the five quantities, keyed by the bucket's first second."""
        sums: dict[int, list[int]] = {}
        for i in indexes:
            row = sums.setdefault(policy.label(self.ts[i]), [0] * len(ROW_TYPES))
            for field, column in enumerate(self.counts):
                row[field] += column[i]
        return sums


class EventStore:
    """All simulated usage; safe to share between the traffic generator and server threads."""

    def __init__(self) -> None:
        self._series: dict[_TargetKey, _Series] = {}
        self._count = 0
        self._lock = threading.Lock()

    def add(self, event: Event) -> None:
        """Record one event."""
        self.add_many((event,))

    def add_many(self, events: Iterable[Event]) -> None:
        """Record several events under one lock acquisition."""
        with self._lock:
            for event in events:
                key = (event.project, event.key, event.model)
                series = self._series.get(key)
                if series is None:
                    series = self._series[key] = _Series()
                series.add(event)
                self._count += 1

    def query(  # noqa: PLR0917 -- the API's own parameters, in the API's order
        self, project: str, key: str, model: str, start: int, end: int, at: float,
        policy: BucketPolicy | None = None,
    ) -> Usage:
        """Sum of the events the window ``[start, end]`` counts under ``policy`` (by default:
        start <= ts <= end) that are visible at ``at``."""
        if policy is not None:
            start, end = policy.event_range(start, end)
        with self._lock:
            series = self._series.get((project, key, model))
            if series is None:
                return Usage()
            return series.total(series.indexes(start, end, at))

    def rows(  # noqa: PLR0917 -- the API's own parameters, in the API's order
        self, project: str, key: str, model: str, start: int, end: int, at: float,
        policy: BucketPolicy,
    ) -> list[Row]:
        """The ``Usages`` list of what the window counts under ``policy``: one row per non-zero
        (bucket, type), buckets ascending."""
        start, end = policy.event_range(start, end)
        with self._lock:
            series = self._series.get((project, key, model))
            if series is None:
                return []
            sums = series.buckets(series.indexes(start, end, at), policy)
        return [
            (kind, count, ts, model)
            for ts in sorted(sums)
            for kind, count in zip(ROW_TYPES, sums[ts], strict=True)
            if count
        ]

    def truth(self, project: str, key: str, model: str, start: int, end: int) -> Usage:
        """Everything that happened in [start, end], visible yet or not."""
        return self.query(project, key, model, start, end, float("inf"))

    def models(self, project: str, key: str) -> list[str]:
        """Models with any usage for (project, key), sorted."""
        with self._lock:
            return sorted(m for p, k, m in self._series if (p, k) == (project, key))

    def __len__(self) -> int:
        """Number of events held."""
        with self._lock:
            return self._count

"""Exact counters from a windowed usage API: which intervals to read, and what they add up to."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any, Literal

from exporter.usage import ZERO, Totals

DAY = 86400
AUDIT_KEEP = 8  # closed stretches awaiting their audit; beyond this the oldest go unaudited


@dataclass(frozen=True)
class Read:
    """One API call: usage in ``[start, end]`` (inclusive) for the periods starting at ``periods``.

    ``kind`` is "count" (changes counters) or "audit" (only measures usage that arrived too late).
    """

    start: int
    end: int
    periods: tuple[int, ...]
    kind: Literal["count", "audit"] = "count"


@dataclass(frozen=True)
class _Segment:
    """A stretch ``[start, end]`` with its highest reading; ``final`` once a read settled it."""

    start: int
    end: int
    totals: Totals = ZERO
    final: bool = False


def _clip(t: Totals) -> Totals:
    """Negative fields to zero: only the amount by which one reading exceeds another."""
    return Totals(*(max(0, v) for v in t.values()))


def _check(period: int, settle: int) -> None:
    """Reject a grid the accounting cannot work with."""
    if period <= 0 or DAY % period:
        raise ValueError(f"period must divide 86400 seconds (one day), got {period}")
    if settle < 0:
        raise ValueError(f"settle must not be negative, got {settle}")


class Ledger:
    """Accounting for one target: open periods are re-read until settled, then folded into a sum."""

    def __init__(self, origin: int, period: int, settle: int, *, audit: bool = False) -> None:
        _check(period, settle)
        self.origin, self.period, self.settle, self.audit = origin, period, settle, audit
        self.revisions = 0  # readings lower than an earlier one (the higher one is kept)
        self.revised_away = ZERO  # how much those readings were lower, summed
        self.late_after_settle = ZERO  # usage audits found after its period closed (not counted)
        self.skipped_seconds = 0  # seconds rebase gave up on (never counted)
        self._cursor = origin  # first second not closed yet
        self._closed = ZERO
        self._open: dict[int, _Segment] = {}  # read-at-least-once open stretches, by start
        self._audits: list[_Segment] = []  # recently closed stretches, final totals

    def retune(self, period: int, settle: int) -> None:
        """Use a new grid and horizon; stretches already read keep their bounds, nothing shifts."""
        _check(period, settle)
        self.period, self.settle = period, settle

    def counters(self) -> Totals:
        """Everything counted so far: closed sum plus the latest reading of each open stretch."""
        return sum((s.totals for s in self._open.values()), self._closed)

    def settled_totals(self) -> Totals:
        """The closed part of :meth:`counters`: final, never read again."""
        return self._closed

    def settled_until(self) -> int:
        """Last second up to which every period is closed (``origin - 1`` when none is)."""
        return self._cursor - 1

    def plan(self, now: int, max_reads: int | None = None) -> list[Read]:
        """The reads to make at ``now``, oldest first; ``max_reads`` paces a catch-up."""
        reads = list(islice(self._count_reads(now), max_reads))
        audit = self._due_audit(now) if self.audit else None
        if audit is not None and (max_reads is None or len(reads) < max_reads):
            reads.append(audit)
        return reads

    def record(self, read: Read, totals: Totals, read_at: int) -> bool:
        """Apply a successful read sent at ``read_at``; False (ignored) if the ledger moved on."""
        if read.kind == "audit":
            return self._record_audit(read, totals)
        segs = self._covered(read)
        if segs is None:
            return False
        # Only stretches read before hold totals; a catch-up may span many unread ones.
        old = sum((s.totals for s in segs if s.start in self._open), ZERO)
        if not totals.dominates(old):
            self.revisions += 1
            self.revised_away += _clip(old - totals)
        last = segs[-1]
        final = read.end >= last.end and read_at >= last.end + self.settle
        for s in segs:
            self._open.pop(s.start, None)  # unread ones were never stored
        self._open[read.start] = _Segment(read.start, last.end, totals.maximum(old), final)
        self._close_prefix()
        return True

    def rebase(self, now: int, max_backfill: int) -> int:
        """Give up on open time older than ``now - max_backfill``; return the seconds given up."""
        keep_from = now - max_backfill
        if self._cursor >= keep_from:
            return 0
        settled = 0
        for seg in sorted(self._open.values(), key=lambda s: s.start):
            if seg.end >= keep_from:
                break
            # Folded, not dropped: what was read stays counted, counters never go down.
            del self._open[seg.start]
            self._closed += seg.totals
            settled += (seg.end - seg.start + 1) if seg.final else 0
        straddling = [s.start for s in self._open.values() if s.start < keep_from]
        # A stretch already read is kept whole: re-reading only its tail would count its head twice.
        new_cursor = min(straddling, default=keep_from)
        skipped = new_cursor - self._cursor - settled
        self._cursor = new_cursor
        self.skipped_seconds += skipped
        return skipped

    def _grid_end(self, pos: int) -> int:
        return (pos // self.period + 1) * self.period - 1

    def _walk(self, until: int) -> Iterator[_Segment]:
        """Open stretches from the cursor starting at or before ``until``; unread ones at zero."""
        starts = sorted(self._open)
        pos = self._cursor
        while pos <= until:
            seg = self._open.get(pos)
            if seg is None:
                i = bisect_right(starts, pos)
                # Capped at the next read stretch, whose bounds may come from an older grid.
                nxt = starts[i] - 1 if i < len(starts) else self._grid_end(pos)
                seg = _Segment(pos, min(self._grid_end(pos), nxt))
            yield seg
            pos = seg.end + 1

    def _count_reads(self, now: int) -> Iterator[Read]:
        """Settling stretches merged up to a day per read; the others read one by one."""
        group: list[_Segment] = []
        for seg in self._walk(now):
            closing = not seg.final and seg.end + self.settle <= now
            if group and (not closing or seg.end - group[0].start >= DAY):
                yield Read(group[0].start, group[-1].end, tuple(s.start for s in group))
                group = []
            if closing:
                group.append(seg)
            elif not seg.final:  # a final one only waits for an older one to close
                yield Read(seg.start, min(seg.end, now), (seg.start,))
        if group:
            yield Read(group[0].start, group[-1].end, tuple(s.start for s in group))

    def _covered(self, read: Read) -> list[_Segment] | None:
        """The open stretches ``read`` was planned for, or None if they are no longer open."""
        segs = [s for s in self._walk(read.end) if s.start >= read.start]
        starts = tuple(s.start for s in segs)
        if not segs or starts != read.periods or starts[0] != read.start or read.end > segs[-1].end:
            return None
        return segs

    def _close_prefix(self) -> None:
        """Fold settled stretches into the closed sum, oldest first, so closed time is a prefix."""
        while (seg := self._open.get(self._cursor)) is not None and seg.final:
            del self._open[seg.start]
            self._closed += seg.totals
            self._cursor = seg.end + 1
            if self.audit:
                self._audits = [*self._audits, seg][-AUDIT_KEEP:]

    def _due_audit(self, now: int) -> Read | None:
        """One closed stretch to re-read once it is ``2 * settle`` old, if any is due."""
        for seg in self._audits:
            if seg.end + 2 * self.settle <= now:
                return Read(seg.start, seg.end, (seg.start,), "audit")
        return None

    def _record_audit(self, read: Read, totals: Totals) -> bool:
        """Count what arrived after the close, without changing the counters."""
        for seg in self._audits:
            if (seg.start, seg.end) == (read.start, read.end):
                self._audits.remove(seg)
                self.late_after_settle += _clip(totals - seg.totals)
                return True
        return False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form: numbers only."""
        return {
            "origin": self.origin, "period": self.period, "settle": self.settle,
            "audit": self.audit, "cursor": self._cursor, "closed": self._closed.as_dict(),
            "revisions": self.revisions, "revised_away": self.revised_away.as_dict(),
            "late_after_settle": self.late_after_settle.as_dict(),
            "skipped_seconds": self.skipped_seconds,
            "open": [_seg_dict(s) for s in sorted(self._open.values(), key=lambda s: s.start)],
            "audits": [_seg_dict(s) for s in self._audits],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Ledger:
        """Inverse of :meth:`to_dict`; ValueError/KeyError/TypeError on anything inconsistent."""
        led = cls(int(data["origin"]), int(data["period"]), int(data["settle"]),
                  audit=bool(data["audit"]))
        led._cursor = int(data["cursor"])
        led._closed = _totals(data["closed"])
        led.revisions = int(data["revisions"])
        led.revised_away = _totals(data["revised_away"])
        led.late_after_settle = _totals(data["late_after_settle"])
        led.skipped_seconds = int(data["skipped_seconds"])
        led._audits = [_seg_from(d) for d in data["audits"]]
        pos = led._cursor
        for seg in sorted((_seg_from(d) for d in data["open"]), key=lambda s: s.start):
            if seg.start < pos:
                raise ValueError(f"open stretch at {seg.start} overlaps closed or open time")
            led._open[seg.start] = seg
            pos = seg.end + 1
        return led


def _seg_dict(seg: _Segment) -> dict[str, Any]:
    return {"start": seg.start, "end": seg.end, "totals": seg.totals.as_dict(), "final": seg.final}


def _seg_from(data: dict[str, Any]) -> _Segment:
    seg = _Segment(int(data["start"]), int(data["end"]), _totals(data["totals"]),
                   bool(data["final"]))
    if not 0 <= seg.end - seg.start < DAY:
        raise ValueError(f"stretch [{seg.start}, {seg.end}] is empty or longer than a day")
    return seg


def _totals(data: dict[str, Any]) -> Totals:
    if not isinstance(data, dict):
        raise TypeError(f"totals must be an object, got {type(data).__name__}")
    totals = Totals.from_dict(data)
    if min(totals.values()) < 0:
        raise ValueError(f"totals must not be negative: {data}")
    return totals

"""Exact counters from a usage API that answers totals over a range: which ranges to read, and
what they add up to.

Vocabulary (one meaning each):

- **range**: the interval ``[start, end]`` one API call asks about; one call is a **read**.
  (A *window* is only ever one of the trailing gauges, ``uminfer_window_*``.)

- **period**: a cell of the ledger's grid (see ``core.grid``: the provider's days, whose
  lines are bucket boundaries under every bucketing the API may use); planning starts a new one
  at each grid line.
- **stretch**: a contiguous interval ``[start, end]`` that is read as one and holds one reading.
  A stretch is one period, or several never-read periods merged by a catch-up read (at most a
  day), or a period of an older grid kept whole after the grid changed.
- **baseline**: a ledger that begins now (first start, a new target, a lost ledger) takes the
  first reading of its first stretch (the one starting at its origin) as its baseline and counts
  only the growth above it: counting starts at the first poll, usage from before it is not
  counted, and no stretch boundary falls inside an API bucket.
- **open** / **closed**: a stretch is open until a *final* read (one sent at or after
  ``end + settle`` by the API's clock) settles it; closed time is always a prefix
  ``[origin, cursor)``, folded into one sum.

Every time here is a Unix second **by the API's clock** (see ``api.clock``); the ledger never
sees the local wall clock or the monotonic clock.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, replace
from itertools import islice
from typing import Any, Literal

from exporter.core.grid import DAY, LONGEST, Grid, GridError
from exporter.core.usage import ZERO, Totals


@dataclass(frozen=True)
class Read:
    """One API call: usage in ``[start, end]`` (inclusive) for the stretches starting at
    ``stretches``.

    ``kind`` is "count" (changes counters) or "audit" (only measures usage that arrived too late).
    """

    start: int
    end: int
    stretches: tuple[int, ...]
    kind: Literal["count", "audit"] = "count"


@dataclass(frozen=True)
class Recorded:
    """What recording a read did: whether it applied (False: the ledger moved on), and, for an
    audit whose one read came out below the sum of its stretches' final readings (an
    additivity error, see api.buckets), by how much. True when it applied."""

    applied: bool
    shortfall: Totals | None = None

    def __bool__(self) -> bool:
        return self.applied


@dataclass(frozen=True)
class _Stretch:
    """``[start, end]`` with its highest reading so far.

    ``read_to`` is the end of the widest read recorded (``start - 1`` when never read): a later
    read never covers less, so a clock that goes back cannot pass a shorter read for a lower
    reading. ``final`` once a read settled it.
    """

    start: int
    end: int
    totals: Totals = ZERO
    final: bool = False
    read_to: int = -1


def _clip(t: Totals) -> Totals:
    """Negative fields to zero: only the amount by which one reading exceeds another."""
    return Totals(*(max(0, v) for v in t.values()))


def _grid(grid: Grid | int, offset: int) -> Grid:
    """``grid`` itself, or a fixed grid of that many seconds (tests, older state files)."""
    if isinstance(grid, Grid):
        return grid
    try:
        return Grid.every(grid, offset)
    except GridError as error:
        raise ValueError(str(error)) from None


def _check(settle: int) -> None:
    if settle < 0:
        raise ValueError(f"settle must not be negative, got {settle}")


class Ledger:
    """Accounting for one target: open stretches are re-read until settled, then folded."""

    def __init__(self, origin: int, grid: Grid | int, settle: int, *, audit: bool = False,
                 offset: int = 0, fresh: bool = False) -> None:
        """Periods are the cells of ``grid`` (a number: a fixed grid of that many seconds from
        ``offset``); ``origin`` should be a line of it. ``fresh``: the ledger begins now, at
        its first successful read, with a baseline (see the module docstring); until that
        read it moves its origin to the period holding the time it plans for."""
        _check(settle)
        self.grid = _grid(grid, offset)
        self.origin, self.settle, self.audit = origin, settle, audit
        self.fresh = fresh
        self.baseline = ZERO  # the first reading of a fresh ledger: never counted
        self.began: int | None = None  # API time its baseline was read: counting began then
        self.revisions = 0  # readings lower than an earlier one (the higher one is kept)
        self.revised_away = ZERO  # how much those readings were lower, summed
        self.late_after_settle = ZERO  # usage audits found after its stretch closed (not counted)
        self.skipped_seconds = 0  # seconds a restart's max_backfill gave up on (never counted)
        self.given_up: dict[str, int] = {}  # seconds given up because the API rejected them
        self.additivity_errors = 0  # audits whose one read came out below its parts' sum
        self.additivity_excess = ZERO  # by how much, summed
        self._cursor = origin  # first second not closed yet
        self._closed = ZERO
        self._open: dict[int, _Stretch] = {}  # open stretches read at least once, by start
        self._audits: list[_Stretch] = []  # closed stretches awaiting their audit, oldest first

    @property
    def period(self) -> int:
        """The length of a fixed grid's period (a day on a grid of days)."""
        return self.grid.period

    def retune(self, grid: Grid | int, settle: int, offset: int = 0) -> None:
        """Use a new grid and horizon; stretches already read keep their bounds, nothing shifts,
        except that an open stretch starting on a line of a new grid widens to its cell: a wider
        read never counts less, and the rest of the cell may not be readable apart from it."""
        _check(settle)
        new = _grid(grid, offset)
        regrid = new != self.grid
        self.grid, self.settle = new, settle
        if regrid:
            self._widen()

    def _widen(self) -> None:
        starts = sorted(self._open)
        for i, start in enumerate(starts):
            stretch = self._open[start]
            if stretch.final or not self.grid.on_line(start):
                continue
            end = self._grid_end(start)
            if i + 1 < len(starts):
                end = min(end, starts[i + 1] - 1)
            if end > stretch.end:
                self._open[start] = replace(stretch, end=end)

    def counters(self) -> Totals:
        """Everything counted so far: closed sum plus the latest reading of each open stretch
        (above its baseline)."""
        return sum((self._counted(s) for s in self._open.values()), self._closed)

    def _counted(self, stretch: _Stretch) -> Totals:
        """What a stretch adds to the counters: the first one, above the baseline."""
        return stretch.totals - self.baseline if stretch.start == self.origin else stretch.totals

    def settled_totals(self) -> Totals:
        """The closed part of :meth:`counters`: final, never read again."""
        return self._closed

    def settled_until(self) -> int:
        """Last second up to which every stretch is closed (``origin - 1`` when none is)."""
        return self._cursor - 1

    def read_frontier(self) -> int:
        """First second, from the origin on, that no successful read has covered yet: what a
        catch-up still has to read starts here (a stretch given up counts as covered)."""
        pos = self._cursor
        for start in sorted(self._open):
            stretch = self._open[start]
            if start != pos:
                return pos
            if not stretch.final and stretch.read_to < stretch.end:
                return stretch.read_to + 1
            pos = stretch.end + 1
        return pos

    def counts_from(self, origin: int) -> bool:
        """Whether every second from ``origin`` (a line of its grid) on is counted: the ledger
        begins there and left nothing out as a baseline."""
        return self.origin == origin and not self.fresh and self.baseline == ZERO

    def begin_at(self, origin: int) -> bool:
        """Count from ``origin``, a line of the grid at or before this ledger's origin (an
        ``accounting.origin`` set after the ledger began); False when it already does, or
        begins earlier (counters never go down: it keeps counting from there).

        What was counted stays counted: the closed prefix becomes one stretch read before (not
        read again, not audited), the baseline is counted too, and the time from ``origin``
        up to the old origin is read like any catch-up, so the counters only grow."""
        if origin > self.origin or self.counts_from(origin):
            return False
        if self._cursor > self.origin:
            self._open[self.origin] = _Stretch(self.origin, self._cursor - 1,
                                               self._closed + self.baseline, final=True,
                                               read_to=self.origin - 1)
        self.origin = self._cursor = origin
        self._closed, self.baseline, self.began, self.fresh = ZERO, ZERO, None, False
        self._audits = []  # they must lie in the closed prefix, which starts afresh
        return True

    def keep_counts(self, replaced: Ledger) -> None:
        """Keep the larger of each of this ledger's problem counts and ``replaced``'s (the same
        target's ledger that this one replaces, a peer's taken over): they are exported as
        counters, which never go down. The larger, not the sum: both replicas read and audit
        the same stretches, so they count the same events."""
        self.revisions = max(self.revisions, replaced.revisions)
        self.revised_away = self.revised_away.maximum(replaced.revised_away)
        self.late_after_settle = self.late_after_settle.maximum(replaced.late_after_settle)
        self.skipped_seconds = max(self.skipped_seconds, replaced.skipped_seconds)
        for reason, seconds in replaced.given_up.items():
            self.given_up[reason] = max(self.given_up.get(reason, 0), seconds)
        self.additivity_errors = max(self.additivity_errors, replaced.additivity_errors)
        self.additivity_excess = self.additivity_excess.maximum(replaced.additivity_excess)

    def settled(self) -> Ledger:
        """A copy holding only the closed prefix (what no later read can change) and the
        ledger's own counts: what a peer may take over and continue from."""
        data = self.to_dict()
        data["open"], data["audits"], data["audit"] = [], [], False
        return Ledger.from_dict(data)

    def plan(self, now: int, max_reads: int | None = None) -> list[Read]:
        """The reads to make at ``now``, oldest first, then a due audit.

        ``max_reads`` paces a catch-up. When it cuts the list, the newest read is kept in place
        of the last old one, so a long backlog (or a range the API keeps rejecting) never stops
        the current period from being counted; a due audit keeps one slot of its own, so audits
        run whatever ``settle / period`` is.
        """
        if self.fresh and not self._open:  # begins at its first successful read
            self.origin = self._cursor = self.grid.start(now)
        audit = self._due_audit(now) if self.audit else None
        limit = max_reads
        if max_reads is not None and audit is not None and max_reads > 1:
            limit = max_reads - 1
        if limit is None:
            reads = list(self._count_reads(now))
        else:
            reads = list(islice(self._count_reads(now), limit + 1))
            if len(reads) > limit:
                newest = self._newest_read(now)
                reads = reads[:limit]
                if newest is not None and newest not in reads and limit > 1:
                    reads[-1] = newest
        if audit is not None and (max_reads is None or len(reads) < max_reads):
            reads.append(audit)
        return reads

    def record(self, read: Read, totals: Totals, read_at: int | None) -> Recorded:
        """Apply a successful read sent at ``read_at`` (None: the API's time is not settled
        yet, so nothing may close); not applied (ignored) if the ledger moved on."""
        if read.kind == "audit":
            return self._record_audit(read, totals)
        covered = self._covered(read)
        if covered is None:
            return Recorded(applied=False)
        last = covered[-1]
        before = self._open.get(read.start)
        if before is not None:  # a stretch read before is always read alone (see _count_reads)
            if read.end >= before.read_to and not totals.dominates(before.totals):
                self.revisions += 1
                self.revised_away += _clip(before.totals - totals)
            totals = totals.maximum(before.totals)
        elif self.fresh and read.start == self.origin:
            # The first reading: counting starts above it.
            self.baseline, self.fresh, self.began = totals, False, read_at
        final = (read_at is not None and read.end >= last.end
                 and read_at >= last.end + self.settle)
        read_to = max(read.end, before.read_to if before is not None else read.end)
        self._open[read.start] = _Stretch(read.start, last.end, totals, final, read_to)
        self._close_prefix(read_at)
        return Recorded(applied=True)

    def give_up(self, read: Read, reason: str) -> int:
        """Stop reading the stretches of a ``read`` the API keeps rejecting; return the seconds
        given up. Of a count read, what was read stays counted and the rest never is; an audit
        read is dropped from the queue (0 seconds: it counts nothing, and usage arriving late in
        it goes unreported), so the audits behind it go on."""
        if read.kind == "audit":
            self._take_audited(read)
            return 0
        covered = self._covered(read)
        if covered is None:
            return 0
        seconds = covered[-1].end - read.start + 1
        first = self._open.get(read.start) or _Stretch(read.start, read.end,
                                                       read_to=read.start - 1)
        # read_to stays at the widest read recorded (the rejected one was not): a stretch given
        # up is never taken for one read whole, so it is never audited (the API would reject
        # the audit's read again, and the audits behind it would wait for ever).
        self._open[read.start] = replace(first, end=covered[-1].end, final=True)
        self.given_up[reason] = self.given_up.get(reason, 0) + seconds
        self._close_prefix(None)
        return seconds

    def rebase(self, now: int, max_backfill: int) -> int:
        """On a restart only: give up on open time older than ``now - max_backfill``; return the
        seconds given up. A running process never calls this (it catches everything up)."""
        # On a grid line: a line inside an API bucket would count part of it twice or never.
        keep_from = self.grid.start(now - max_backfill)
        if self._cursor >= keep_from:
            return 0
        settled = 0
        for stretch in sorted(self._open.values(), key=lambda s: s.start):
            if stretch.end >= keep_from:
                break
            # Folded, not dropped: what was read stays counted, counters never go down.
            del self._open[stretch.start]
            self._closed += self._counted(stretch)
            settled += (stretch.end - stretch.start + 1) if stretch.final else 0
        straddling = [s.start for s in self._open.values() if s.start < keep_from]
        # A stretch already read is kept whole: re-reading only its tail would count its head twice.
        new_cursor = min(straddling, default=keep_from)
        skipped = new_cursor - self._cursor - settled
        self._cursor = new_cursor
        self.skipped_seconds += skipped
        self._audits = []  # the time between is no longer a contiguous closed prefix
        return skipped

    def _grid_end(self, pos: int) -> int:
        return self.grid.end(pos)

    def _walk(self, until: int) -> Iterator[_Stretch]:
        """Open stretches from the cursor starting at or before ``until``; unread ones at zero."""
        starts = sorted(self._open)
        pos = self._cursor
        while pos <= until:
            stretch = self._open.get(pos)
            if stretch is None:
                i = bisect_right(starts, pos)
                # Capped at the next read stretch, whose bounds may come from an older grid.
                nxt = starts[i] - 1 if i < len(starts) else self._grid_end(pos)
                stretch = _Stretch(pos, min(self._grid_end(pos), nxt), read_to=pos - 1)
            yield stretch
            pos = stretch.end + 1

    def _count_reads(self, now: int) -> Iterator[Read]:
        """Settling stretches never read before are merged, up to a day per read; a stretch
        read before is read alone, so a lowered reading of it is seen as a revision."""
        group: list[_Stretch] = []
        for stretch in self._walk(now):
            closing = not stretch.final and stretch.end + self.settle <= now
            mergeable = closing and stretch.start not in self._open
            if group and (not mergeable or stretch.end - group[0].start >= DAY):
                yield self._merged(group)
                group = []
            if mergeable:
                group.append(stretch)
            elif closing:
                yield Read(stretch.start, stretch.end, (stretch.start,))
            elif not stretch.final:  # a final one only waits for an older one to close
                yield self._current(stretch, now)
        if group:
            yield self._merged(group)

    @staticmethod
    def _merged(group: list[_Stretch]) -> Read:
        return Read(group[0].start, group[-1].end, tuple(s.start for s in group))

    @staticmethod
    def _current(stretch: _Stretch, now: int) -> Read:
        """A stretch not yet closing, read up to now (never less far than it was read before)."""
        return Read(stretch.start, min(stretch.end, max(now, stretch.read_to)), (stretch.start,))

    def _newest_read(self, now: int) -> Read | None:
        """The read of the stretch holding ``now``, if it is open and not yet closing."""
        starts = sorted(s for s in self._open if s <= now)
        start = max(self._cursor, self.grid.start(now))
        if starts and self._open[starts[-1]].end >= start:
            start = starts[-1]  # ``now`` lies in a stretch already read (maybe an older grid)
        elif starts:
            start = max(start, self._open[starts[-1]].end + 1)
        if start > now:
            return None
        stretch = self._open.get(start)
        if stretch is None:
            later = [s for s in self._open if s > start]
            end = min(self._grid_end(start), min(later, default=start + DAY) - 1)
            stretch = _Stretch(start, end, read_to=start - 1)
        if stretch.final or stretch.end + self.settle <= now:
            return None
        return self._current(stretch, now)

    def _covered(self, read: Read) -> list[_Stretch] | None:
        """The open stretches ``read`` was planned for, or None if they are no longer open."""
        stretches = [s for s in self._walk(read.end) if s.start >= read.start]
        starts = tuple(s.start for s in stretches)
        if (not stretches or starts != read.stretches or starts[0] != read.start
                or read.end > stretches[-1].end):
            return None
        return stretches

    def _close_prefix(self, read_at: int | None) -> None:
        """Fold settled stretches into the closed sum, oldest first, so closed time is a prefix;
        each joins the audit queue (given-up ones are not audited: they were never read whole)."""
        while (stretch := self._open.get(self._cursor)) is not None and stretch.final:
            del self._open[stretch.start]
            self._closed += self._counted(stretch)
            self._cursor = stretch.end + 1
            if self.audit and read_at is not None and stretch.read_to >= stretch.end:
                self._queue_audit(stretch, read_at)

    def _queue_audit(self, stretch: _Stretch, now: int) -> None:
        """Queue a closed stretch; one already due joins a due neighbour (a run of up to
        max(settle, period)), and due runs gather into one read (see _due_audit), so a catch-up
        of many stretches costs a few audit reads, and the queue stays short: at most
        ``settle / period + 2`` stretches wait to become due."""
        last = self._audits[-1] if self._audits else None
        due = self._is_due(stretch, now)
        # A run that is ready to be audited takes no more, and a run spans at most
        # max(settle, period): while a catch-up closes a stretch every poll, a run that took
        # them all would push its own readiness ahead of it and never be audited. Nor more than
        # a day: it is read in one call (a settle of days would make runs of days).
        if (last is not None and due and self._is_due(last, now) and not self._ready(last, now)
                and last.end + 1 == stretch.start
                and stretch.end - last.start < min(max(self.settle, self.period), DAY)):
            self._audits[-1] = replace(last, end=stretch.end, totals=last.totals + stretch.totals,
                                       read_to=stretch.end)
            return
        self._audits.append(replace(stretch, final=True, read_to=stretch.end))

    def _is_due(self, stretch: _Stretch, now: int) -> bool:
        return stretch.end + 2 * self.settle <= now

    def _ready(self, stretch: _Stretch, now: int) -> bool:
        """Due, and waited ``max(settle, period)`` more for neighbours to gather with it."""
        return stretch.end + 2 * self.settle + max(self.settle, self.period) <= now

    def _due_audit(self, now: int) -> Read | None:
        """One read over the oldest closed stretches that are ``2 * settle`` old, once the oldest
        has waited ``max(settle, period)`` more: audits gather into one read per that span
        (or per day) instead of one per closed stretch."""
        if not self._audits or not self._ready(self._audits[0], now):
            return None
        group: list[_Stretch] = []
        for stretch in self._audits:
            if not self._is_due(stretch, now) or (group and (
                    group[-1].end + 1 != stretch.start or stretch.end - group[0].start >= DAY)):
                break
            group.append(stretch)
        if not group:
            return None
        return Read(group[0].start, group[-1].end, tuple(s.start for s in group), "audit")

    def _take_audited(self, read: Read) -> list[_Stretch]:
        """Remove and return the queued stretches the audit ``read`` is for: the head of the
        queue, exactly its stretches and its end; none when it is for anything else (a read
        planned before a restart or a rebase, say)."""
        queued = self._audits[:len(read.stretches)]
        if (not queued or tuple(s.start for s in queued) != read.stretches
                or queued[-1].end != read.end):
            return []
        del self._audits[:len(queued)]
        return queued

    def _record_audit(self, read: Read, totals: Totals) -> Recorded:
        """Count what arrived after the close, without changing the counters."""
        queued = self._take_audited(read)
        if not queued:
            return Recorded(applied=False)
        final = sum((s.totals for s in queued), ZERO)
        self.late_after_settle += _clip(totals - final)
        if totals.dominates(final):
            return Recorded(applied=True)
        shortfall = _clip(final - totals)  # the whole below its parts: see api.buckets
        self.additivity_errors += 1
        self.additivity_excess += shortfall
        return Recorded(applied=True, shortfall=shortfall)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form: numbers only."""
        return {
            "origin": self.origin, "grid": self.grid.to_dict(), "fresh": self.fresh,
            "baseline": self.baseline.as_dict(), "began": self.began,
            "settle": self.settle, "audit": self.audit, "cursor": self._cursor,
            "closed": self._closed.as_dict(),
            "revisions": self.revisions, "revised_away": self.revised_away.as_dict(),
            "late_after_settle": self.late_after_settle.as_dict(),
            "skipped_seconds": self.skipped_seconds, "given_up": dict(self.given_up),
            "additivity_errors": self.additivity_errors,
            "additivity_excess": self.additivity_excess.as_dict(),
            "open": [_stretch_dict(s) for s in sorted(self._open.values(), key=lambda s: s.start)],
            "audits": [_stretch_dict(s) for s in self._audits],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Ledger:
        """Inverse of :meth:`to_dict`; ValueError/KeyError/TypeError on anything inconsistent."""
        if "grid" in data:
            grid = Grid.from_dict(data["grid"])
        else:  # saved before grids of days: a fixed grid
            grid = _grid(_int(data["period"]), _int(data.get("offset", 0)))
        led = cls(_int(data["origin"]), grid, _int(data["settle"]), audit=bool(data["audit"]),
                  fresh=bool(data.get("fresh", False)))
        led.baseline = _totals(data.get("baseline", {}))
        began = data.get("began")
        led.began = None if began is None else _int(began)
        led._cursor = _int(data["cursor"])
        if led._cursor < led.origin:
            raise ValueError("cursor before origin")
        led._closed = _totals(data["closed"])
        led.revisions = _int(data["revisions"])
        led.revised_away = _totals(data["revised_away"])
        led.late_after_settle = _totals(data["late_after_settle"])
        led.skipped_seconds = _int(data["skipped_seconds"])
        led.additivity_errors = _int(data.get("additivity_errors", 0))
        led.additivity_excess = _totals(data.get("additivity_excess", {}))
        given_up = data.get("given_up", {})
        if not isinstance(given_up, dict):
            raise TypeError("given_up must be an object")
        led.given_up = {str(k): _int(v) for k, v in given_up.items()}
        pos = led.origin
        for stretch in (_stretch_from(d) for d in data["audits"]):
            if stretch.start < pos or stretch.end >= led._cursor:
                raise ValueError(f"audit stretch at {stretch.start} is not closed time in order")
            led._audits.append(stretch)
            pos = stretch.end + 1
        pos = led._cursor
        for stretch in sorted((_stretch_from(d) for d in data["open"]), key=lambda s: s.start):
            if stretch.start < pos:
                raise ValueError(f"open stretch at {stretch.start} overlaps closed or open time")
            if stretch.start == led.origin and not stretch.totals.dominates(led.baseline):
                raise ValueError(f"open stretch at {stretch.start} reads below the baseline")
            led._open[stretch.start] = stretch
            pos = stretch.end + 1
        return led


def _stretch_dict(s: _Stretch) -> dict[str, Any]:
    return {"start": s.start, "end": s.end, "totals": s.totals.as_dict(), "final": s.final,
            "read_to": s.read_to}


def _stretch_from(data: dict[str, Any]) -> _Stretch:
    start, end = _int(data["start"]), _int(data["end"])
    # Version 1 files have no read_to: the stretch was read to its end or to some point
    # before; its start - 1 means "no bound", which is what version 1 did.
    read_to = _int(data.get("read_to", start - 1))
    stretch = _Stretch(start, end, _totals(data["totals"]), bool(data["final"]), read_to)
    # One read covers at most a day; a stretch never read as one (what a ledger counted before
    # it began at an earlier origin, see Ledger.begin_at) is final and may be longer.
    longest = 2**62 if stretch.final and read_to < end else LONGEST
    if not 0 <= stretch.end - stretch.start < longest:
        raise ValueError(f"stretch [{stretch.start}, {stretch.end}] is empty or longer than a day")
    if not start - 1 <= read_to:
        raise ValueError(f"stretch at {start}: read_to {read_to} before its start")
    return stretch


#: Unix seconds and counts this far from zero are not time or usage but damage.
_LIMIT = 2**62


def _int(value: Any) -> int:
    """A JSON integer (not a bool, float or string) within a sane range."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    if not -_LIMIT < value < _LIMIT:
        raise ValueError(f"integer out of range: {value}")
    return value


def _totals(data: dict[str, Any]) -> Totals:
    if not isinstance(data, dict):
        raise TypeError(f"totals must be an object, got {type(data).__name__}")
    totals = Totals(*(_int(data.get(name, 0)) for name in Totals.NAMES))
    if min(totals.values()) < 0:
        raise ValueError(f"totals must not be negative: {data}")
    return totals

"""How the simulated API aggregates usage in time: the bucket its ``Usages`` rows are labelled
with, and which usage a range ``[StartTime, EndTime]`` counts.

The real service documents neither, so the simulator can play each plausible API:

- ``exact``: a range counts the usage whose own timestamp lies inside it; buckets only label
  the rows (what the simulator always did: minute labels, second-exact totals).
- ``buckets``: usage is aggregated into buckets first; a range counts the buckets whose label
  (first second) lies inside it.
- ``outward``: a range is rounded outward to whole buckets: it counts every bucket it touches.

Buckets start at multiples of ``seconds`` in a time zone ``utc_offset`` seconds east of UTC
(daily buckets at UTC+8 start at 16:00 UTC), or, with ``zone``, at the local midnights of that
IANA zone (days of 23 or 25 hours where daylight saving changes). With ``rows`` off the answers
carry no ``Usages`` (the field is optional), so only the additivity audit can tell the modes
apart.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo

RangeMode = Literal["exact", "buckets", "outward"]
MODES: tuple[RangeMode, ...] = ("exact", "buckets", "outward")


@dataclass(frozen=True, slots=True)
class BucketPolicy:
    """The simulated API's time aggregation (see the module docstring)."""

    seconds: int = 60
    utc_offset: int = 0
    mode: RangeMode = "exact"
    rows: bool = True
    zone: str | None = None

    def __post_init__(self) -> None:
        if self.zone is not None:
            try:
                ZoneInfo(self.zone)
            except (KeyError, ValueError, OSError):
                raise ValueError(f"unknown time zone {self.zone!r}") from None
        if self.seconds < 1:
            raise ValueError(f"bucket must be at least 1 second, got {self.seconds}")
        if not -86400 < self.utc_offset < 86400:
            raise ValueError(f"bucket UTC offset must be within a day, got {self.utc_offset}")
        if self.mode not in MODES:
            raise ValueError(f"range mode must be one of {', '.join(MODES)}, got {self.mode!r}")

    def label(self, ts: int) -> int:
        """The first second of the bucket holding ``ts``."""
        if self.zone is not None:
            zone = ZoneInfo(self.zone)
            day = datetime.datetime.fromtimestamp(ts, zone).date()
            start = int(datetime.datetime.combine(day, datetime.time(0), zone).timestamp())
            return start if start <= ts else self.label(ts - 3600)
        return ts - (ts + self.utc_offset) % self.seconds

    def following(self, label: int) -> int:
        """The first second of the bucket after the one starting at ``label``."""
        if self.zone is not None:  # the next local date's noon: past a day of any length
            zone = ZoneInfo(self.zone)
            day = datetime.datetime.fromtimestamp(label, zone).date() + datetime.timedelta(1)
            return self.label(int(datetime.datetime.combine(day, datetime.time(12), zone)
                                  .timestamp()))
        return label + self.seconds

    def event_range(self, start: int, end: int) -> tuple[int, int]:
        """The event timestamps a range ``[start, end]`` counts (empty when first > last)."""
        if self.mode == "exact":
            return start, end
        last = self.following(self.label(end)) - 1  # every bucket labelled at or before end
        if self.mode == "outward":
            return self.label(start), last
        first = self.label(start)
        return (first if first == start else self.following(first)), last

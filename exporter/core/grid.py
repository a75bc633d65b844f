"""Where stretches may begin and end: the provider's days, so windows always add up.

Adjacent windows of GetUMInferTokenUsage add up to the window covering both whenever the line
between them is a bucket boundary of the API, whatever the API does inside a bucket (counts
exact timestamps, counts whole buckets labelled inside the range, or rounds the range outward
to whole buckets), and only then. A provider's midnight is a bucket boundary for minute, hourly
and daily buckets alike, so counting that cuts time only there is exact under all of them, and
stays exact when the API changes its buckets: nothing needs to be measured first.

A :class:`Grid` is the days of an IANA time zone (``api.time_zone``, default ``Asia/Shanghai``,
UTC+8: daily buckets start at 16:00 UTC), read through ``zoneinfo``, so a 23- or 25-hour day
under daylight saving is still one cell. A fixed grid (``period`` seconds from ``offset``) is
kept for ledgers saved by older versions, which cut hours, and for fast tests.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAY = 86400
#: The longest cell, and what one read may span: the longest day in tzdata since 1970,
#: Antarctica/Vostok's 1994-01-31 (31 h; Antarctica/Casey had days of 27 h until 2023, most
#: zones 25 h when daylight saving ends).
LONGEST = 31 * 3600
DEFAULT_ZONE = "Asia/Shanghai"


class GridError(ValueError):
    """A grid that cannot be used; the message names the value."""


@dataclass(frozen=True, slots=True)
class Grid:
    """Cells counting cuts time into: the days of ``zone``, or ``period`` seconds from
    ``offset`` when ``zone`` is None (a divisor of a day)."""

    zone: str | None = DEFAULT_ZONE
    period: int = DAY
    offset: int = 0

    def __post_init__(self) -> None:
        if self.zone is not None:
            _zone(self.zone)  # GridError when unknown
            if (self.period, self.offset) != (DAY, 0):
                raise GridError("a grid of days takes no period or offset")
            return
        if self.period <= 0 or DAY % self.period:
            raise GridError(f"period must divide 86400 seconds (one day), got {self.period}")
        if not 0 <= self.offset < self.period:
            raise GridError(f"grid offset must be in [0, period), got {self.offset}")

    @classmethod
    def every(cls, period: int, offset: int = 0) -> Grid:
        """A fixed grid: lines at ``offset + k * period``."""
        return cls(None, period, offset)

    def start(self, t: int) -> int:
        """The first second of the cell holding ``t``."""
        if self.zone is None:
            return t - (t - self.offset) % self.period
        return _day_start(self.zone, t)

    def end(self, t: int) -> int:
        """The last second of the cell holding ``t``."""
        if self.zone is None:
            return t + self.period - 1 - (t - self.offset) % self.period
        # The next local date's first second, whatever this day's length (a skipped date's
        # midnight maps into the date after it).
        return _day_start(self.zone, _midnight(self.zone, _day(self.zone, t) + 1)) - 1

    def on_line(self, t: int) -> bool:
        """Whether a cell begins at ``t``."""
        return self.start(t) == t

    def describe(self) -> str:
        """The grid as an operator would name it."""
        if self.zone is not None:
            return f"days of {self.zone}"
        return f"{self.period} s periods at offset {self.offset} s"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form for the state and the handoff."""
        if self.zone is not None:
            return {"zone": self.zone}
        return {"period": self.period, "offset": self.offset}

    @classmethod
    def from_dict(cls, data: Any) -> Grid:
        """Inverse of :meth:`to_dict`; GridError/TypeError when malformed."""
        if not isinstance(data, dict):
            raise TypeError("grid must be an object")
        zone = data.get("zone")
        if zone is not None:
            if not isinstance(zone, str) or len(zone) > 64:
                raise GridError("grid zone must be a time zone name")
            return cls(zone)
        period, offset = data.get("period"), data.get("offset", 0)
        for value in (period, offset):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError("grid period and offset must be integers")
        return cls.every(int(period), int(offset))  # type: ignore[arg-type]


def check_zone(name: str) -> str | None:
    """None when ``name`` is a time zone this machine knows, else why not (for the config)."""
    try:
        _zone(name)
    except GridError as error:
        return str(error)
    return None


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise GridError(f"unknown time zone {name!r} (an IANA name such as Asia/Shanghai or "
                        "UTC)") from None


def _day_start(zone: str, t: int) -> int:
    """The first second of ``zone``'s day holding ``t``."""
    return _midnight(zone, _day(zone, t))


def _day(zone: str, t: int) -> int:
    """The ordinal of ``zone``'s local date whose cell holds ``t``."""
    day = datetime.datetime.fromtimestamp(t, _zone(zone)).date().toordinal()
    # A midnight that a jump skips maps to the day's first real second when the jump starts at
    # midnight; one that starts before it (Toronto, 1919-03-30, 23:30 -> 00:30) puts midnight
    # after that second, and the seconds between stay in the day before: no cell starts late.
    return day if _midnight(zone, day) <= t else day - 1


@lru_cache(maxsize=4096)
def _midnight(zone: str, ordinal: int) -> int:
    day = datetime.date.fromordinal(ordinal)
    return int(datetime.datetime.combine(day, datetime.time(0), _zone(zone)).timestamp())

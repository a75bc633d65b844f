"""What the simulator has been asked, so tests can assert what polling costs."""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

UsageCall = tuple[int, int, str, str]
"""(StartTime, EndTime, KeyId, Model) of one answered usage call; Model "" when omitted."""

NO_RESPONSE = 0
"""The status recorded when the connection was dropped without an HTTP response."""


@dataclass(frozen=True)
class StatsSnapshot:
    """Counters since start (or the last reset)."""

    by_action: dict[str, int]
    by_retcode: dict[int, int]
    by_status: dict[int, int]
    usage_calls: tuple[UsageCall, ...]

    @property
    def calls(self) -> int:
        """API calls received, whatever happened to them."""
        return sum(self.by_status.values())

    def as_json(self) -> dict[str, Any]:
        """JSON-ready form (object keys become strings)."""
        return {
            "by_action": self.by_action,
            "by_retcode": {str(k): v for k, v in self.by_retcode.items()},
            "by_status": {str(k): v for k, v in self.by_status.items()},
            "usage_calls": [list(call) for call in self.usage_calls],
        }


class CallStats:
    """Thread-safe counters; the list of usage calls keeps only the most recent ``limit``."""

    def __init__(self, limit: int = 100_000) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Start counting from zero."""
        with self._lock:
            self._actions: Counter[str] = Counter()
            self._retcodes: Counter[int] = Counter()
            self._statuses: Counter[int] = Counter()
            self._usage: deque[UsageCall] = deque(maxlen=self._limit)

    def action(self, action: str) -> None:
        """Count a call by its Action ("" when missing)."""
        with self._lock:
            self._actions[action] += 1

    def outcome(self, status: int, retcode: int | None) -> None:
        """Count the HTTP status sent (NO_RESPONSE for drops) and the RetCode, if any."""
        with self._lock:
            self._statuses[status] += 1
            if retcode is not None:
                self._retcodes[retcode] += 1

    def usage(self, call: UsageCall) -> None:
        """Remember a usage call that was answered with data."""
        with self._lock:
            self._usage.append(call)

    def snapshot(self) -> StatsSnapshot:
        """A consistent copy of the counters."""
        with self._lock:
            return StatsSnapshot(
                dict(self._actions),
                dict(self._retcodes),
                dict(self._statuses),
                tuple(self._usage),
            )

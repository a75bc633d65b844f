"""Keeps the poll loop and reloads alive: unexpected errors are counted and logged once (a
loader's bug is a rejected reload), and a heartbeat tells /-/healthy whether cycles still
finish. With the worker pool's, these are the only catch-alls."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from prometheus_client import Counter

from exporter.config import Config, ConfigError
from exporter.core.clock import Clock
from exporter.core.once import Once

T = TypeVar("T")

#: The parts of a cycle, in order; each can fail without stopping the others or the loop.
STAGES = ("clock", "discovery", "keys", "poll", "cost", "state", "publish", "loop")
#: /-/healthy fails when no cycle finished for this many times the longest a cycle may take.
STALE_FACTOR = 5

log = logging.getLogger("exporter.service")


class StageGuard:
    """Runs cycle stages so that no exception ends the loop; counts and logs what escapes."""

    def __init__(self, errors: Counter) -> None:
        self._errors = errors
        for stage in STAGES:
            errors.labels(stage)  # every stage exported at 0, so rate() and alerts work at once
        self._seen = Once()

    def run(self, stage: str, work: Callable[[], T], fallback: T) -> T:
        """``work()``, or ``fallback`` after counting and logging what it raised."""
        try:
            return work()
        except Exception as error:  # noqa: BLE001 -- the point: nothing may end the poll loop
            self.failed(stage, error)
            return fallback

    def failed(self, stage: str, error: Exception) -> None:
        """Count ``error`` under ``stage``; log the first of each kind (traceback at debug)."""
        self._errors.labels(stage).inc()
        kind = (stage, type(error).__name__)
        if not self._seen.first(kind):
            return
        log.error("unexpected %s in the poll loop's %s stage: %s; the loop goes on (counted in "
                  "uminfer_poll_errors_total, traceback at debug level)", kind[1], stage,
                  _short(error))
        log.debug("traceback of the %s in the %s stage", kind[1], stage, exc_info=error)


class Heartbeat:
    """When the poll loop last finished a cycle, and whether that is recent enough."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._last = clock.monotonic()  # the first cycle is measured from the start

    def beat(self) -> None:
        """A cycle finished (whatever failed inside it: the loop is alive)."""
        self._last = self._clock.monotonic()

    def fresh(self, interval: float, timeout: float) -> bool:
        """Whether a cycle finished within STALE_FACTOR x the longest one may take: the
        interval or the API timeout, whichever is longer, plus one timeout for discovery."""
        longest = max(interval, timeout) + timeout
        return self._clock.monotonic() - self._last <= STALE_FACTOR * longest


def loaded(load: Callable[[], Config]) -> Config | str:
    """``load()``'s config, or why there is none in one line: its problems, or an unexpected
    error's type (a loader bug must not kill a reload's reply or thread; traceback at debug)."""
    try:
        return load()
    except ConfigError as error:
        return "; ".join(error.problems)
    except Exception as error:
        log.debug("traceback of the failed config load", exc_info=error)
        return (f"unexpected {type(error).__name__} while loading the config (traceback at "
                "debug level)")


def pause(interval: float, elapsed: float, aligned_now: float | None) -> float:
    """Seconds until the next cycle: ``interval`` after the last one started, or, given the
    API's time (``aligned_now``, with ``accounting.origin``), at its next multiple of
    ``interval``, so replicas read at the same instants and their open periods differ as
    little as their clocks' estimates do."""
    if aligned_now is None:
        return max(0.0, interval - elapsed)
    return interval - aligned_now % interval


def _short(error: Exception) -> str:
    text = "".join(c if c.isprintable() else "?" for c in str(error)[:200])
    return text or "(no message)"

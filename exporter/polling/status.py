"""What polling is doing now, in words: each failing target's reason, since when counting runs,
and API failures logged once across the targets that share them, not once per target."""

from __future__ import annotations

import logging
import threading

from exporter.api.errors import ApiError

log = logging.getLogger("exporter.polling.poller")  # the poller's lines, as before
NOT_ANSWERED = "the API has not answered yet"


class PollStatus:
    """Failures and successes of the targets' polls; thread-safe (targets poll concurrently).

    A failure is logged at warning level by the first target that meets it; other targets
    failing the same way meanwhile are logged at debug level (the metrics count each), so an
    API that is down for every target says so, and why, in one line.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failing: dict[str, str] = {}  # target -> the message of its current failure
        self._sharing: dict[str, int] = {}  # message -> targets failing with it now
        self._warned: set[str] = set()  # targets whose failure was logged at warning level
        self._since: dict[str, int] = {}  # target -> when its counting began (API seconds)
        self._unanswered: str | None = None  # why the API did not answer the first call
        self._alone: set[tuple[str, str]] = set()  # windows read on their own, and why

    def no_answer(self, reason: str | None) -> None:
        """The API did not answer the first call, for ``reason`` (None: not said)."""
        with self._lock:
            self._unanswered = reason

    def not_answered(self) -> ApiError:
        """The failure of a target that cannot be read before the API first answers."""
        with self._lock:
            why = f" ({self._unanswered})" if self._unanswered else ""
        return ApiError("network", f"{NOT_ANSWERED}{why}: counting begins at the first poll it "
                                   "answers", transient=True)

    def failed(self, target: str, error: ApiError) -> None:
        """``target`` fails with ``error`` now (a new failure, or a different one)."""
        message = error.message
        with self._lock:
            self._forget(target)
            self._failing[target] = message
            first = message not in self._sharing
            self._sharing[message] = self._sharing.get(message, 0) + 1
            if first:
                self._warned.add(target)
        if first:
            log.warning("target %s failing: %s", target, message)
        else:
            log.debug("target %s failing: %s (as logged for another target)", target, message)

    def succeeded(self, target: str, counting_since: int | None) -> None:
        """``target`` was read; its counting began at ``counting_since`` (API seconds; None:
        its first answer waits for the API's time to settle)."""
        with self._lock:
            if counting_since is not None:
                self._since[target] = counting_since
            if target not in self._failing:
                return
            self._forget(target)
            self._unanswered = None
            warned = target in self._warned
            self._warned.discard(target)
        log.log(logging.INFO if warned else logging.DEBUG, "target %s recovered", target)

    def window_read_alone(self, window: str, why: str) -> None:
        """The ``window`` gauges are read on their own, not summed from a wider window's rows,
        because of ``why`` (what the API's answers lack): said once per window and reason in a
        process."""
        with self._lock:
            if (window, why) in self._alone:
                return
            self._alone.add((window, why))
        log.info("window %s is read with a call of its own, not summed from the widest "
                 "window's answer: %s", window, why)

    def reasons(self) -> dict[str, str]:
        """Why each failing target fails now."""
        with self._lock:
            return dict(self._failing)

    def counting_since(self, targets: set[str]) -> int | None:
        """When the earliest of ``targets`` began counting (API seconds), if any has."""
        with self._lock:
            known = [since for target, since in self._since.items() if target in targets]
        return min(known, default=None)

    def _forget(self, target: str) -> None:
        message = self._failing.pop(target, None)
        if message is None:
            return
        self._sharing[message] -= 1
        if not self._sharing[message]:
            del self._sharing[message]

"""Key health: one paged ListUMInferAPIKey per polled project every ``keys.interval``.

Quotas, use and expiry of the keys that targets poll (static and discovered alike); a key no
target polls gets no series. The listing goes through the shared client (rate limit, retries,
``uminfer_api_requests_total``), and a failure never touches counting: it is a metric and one
log line per change of state. The secret ``Key`` never reaches here (``api.keys`` drops it).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from exporter.accounting.snapshot import KeyHealth, KeysSnapshot
from exporter.api.errors import UNSUPPORTED_RETCODE, ApiError
from exporter.api.keys import LIST_KEYS, ApiKey
from exporter.api.sources import KeyApi
from exporter.config.types import KeysConfig, Target
from exporter.core.clock import Clock
from exporter.core.failures import KEY_LISTING_REASONS, ListingReason

log = logging.getLogger(__name__)
#: ``reason`` label values besides the error categories: the cloud lacks the action, or refuses
#: it (a permanent RetCode such as an IAM denial); both drop the key series until it answers.
UNSUPPORTED, REFUSED = KEY_LISTING_REASONS[:2]


def health(project: str, key: ApiKey, account: str = "") -> KeyHealth:
    """The exported facts of a listed key."""
    return KeyHealth(project, key.key_id, key.name, key.status, key.disabled, key.expires,
                     key.daily_limit, key.daily_used, key.monthly_limit, key.monthly_used,
                     account)


def polled_keys(targets: Iterable[Target]) -> dict[str, set[str]]:
    """Key ids by project, of the targets polled now."""
    keys: dict[str, set[str]] = {}
    for target in targets:
        keys.setdefault(target.project, set()).add(target.key)
    return keys


def reason(error: ApiError) -> ListingReason:
    """The failure's ``reason`` label: unsupported, refused, or how the call failed."""
    if error.retcode == UNSUPPORTED_RETCODE:
        return UNSUPPORTED
    if error.retcode is not None and not error.transient:
        return REFUSED
    category = error.category
    return category if category in KEY_LISTING_REASONS else "internal"


class KeyHealthRunner:
    """Lists the polled projects' keys when due; keeps the last good health on a transient
    failure, drops it when the cloud lacks or refuses the action."""

    def __init__(self, clock: Clock, account: str = "") -> None:
        """``account`` names the keys' account, with several (else "")."""
        self._clock = clock
        self._account = account
        self._next = 0.0  # monotonic
        self._keys: tuple[KeyHealth, ...] = ()
        self._last_success: float | None = None
        self._failures: dict[str, int] = {}
        self._failing: str | None = None  # the reason logged, until a listing succeeds

    def refresh_if_due(self, source: KeyApi, config: KeysConfig, targets: Iterable[Target],
                       deadline: float) -> None:
        """One listing per project of ``targets`` when ``config.interval`` has passed."""
        if not config.enabled or self._clock.monotonic() < self._next:
            return
        self._next = self._clock.monotonic() + config.interval
        wanted = polled_keys(targets)
        found: dict[tuple[str, str], KeyHealth] = {}
        try:
            for project in sorted(wanted):
                for key in source.list_keys(project, deadline):
                    if key.key_id in wanted[project]:  # paging may show a key twice: one wins
                        found[(project, key.key_id)] = health(project, key, self._account)
        except ApiError as error:
            self._failed(error)
            return
        if self._failing is not None:
            log.info("key health recovered: %s answers again", LIST_KEYS)
        self._keys, self._failing = tuple(found.values()), None
        self._last_success = self._clock.time()

    def _failed(self, error: ApiError) -> None:
        why = reason(error)
        self._failures[why] = self._failures.get(why, 0) + 1
        if why in {UNSUPPORTED, REFUSED}:
            self._keys = ()  # the cloud's answer is "no": show no key rather than an old one
        if self._failing != why:  # once per change of state, not every interval
            log.warning("key health: %s failed (%s), %s; usage counting is unaffected: %s",
                        LIST_KEYS, why, "no key series until it answers"
                        if why in {UNSUPPORTED, REFUSED} else "keeping the last listing",
                        error.message)
        self._failing = why

    def snapshot(self, config: KeysConfig, targets: Iterable[Target]) -> KeysSnapshot | None:
        """Health of the keys polled now (a key no longer polled loses its series at once);
        None when key health is off."""
        if not config.enabled:
            return None
        wanted = polled_keys(targets)
        keys = tuple(k for k in self._keys if k.key_id in wanted.get(k.project, ()))
        return KeysSnapshot(keys, self._last_success, tuple(sorted(self._failures.items())))

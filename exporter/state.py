"""JSON persistence of all ledgers, written atomically: a crash never leaves half a file."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from exporter.atomicfile import write_json
from exporter.clock import Clock, SystemClock
from exporter.ledger import Ledger
from exporter.safejson import STATE_FILE, SetAsideError, load_or_set_aside

VERSION = 1


class StateError(OSError):
    """The state file could not be read or written; the message says what to do.

    An OSError, so a caller guarding its file I/O with ``except OSError`` also catches it.
    """


@dataclass(frozen=True)
class Reconciled:
    """The ledgers to run with, and the seconds of old usage rebasing gave up on (all targets)."""

    ledgers: dict[str, Ledger]
    skipped_seconds: int


class StateStore:
    """One JSON file holding every target's ledger, keyed by ident ("project/key/model")."""

    def __init__(self, path: str, clock: Clock | None = None) -> None:
        self.path = path
        self._clock: Clock = clock or SystemClock()

    def save(
        self, ledgers: Mapping[str, Ledger], meta: Mapping[str, int | float | str] | None = None
    ) -> None:
        """Replace the file atomically: temp file in the same directory, fsync, rename, fsync dir.

        ``meta`` is for plain facts (e.g. the exporter version); never put a secret in it.
        """
        doc = {
            "version": VERSION,
            "saved_at": int(self._clock.time()),
            "meta": dict(meta or {}),
            "targets": {ident: led.to_dict() for ident, led in ledgers.items()},
        }
        try:
            write_json(self.path, doc)
        except OSError as exc:
            raise StateError(f"cannot write state file {self.path}: {exc}; check that its "
                             "directory exists and is writable, and free space") from exc

    def load(self) -> dict[str, Ledger]:
        """Every ledger in the file; {} if there is none; StateError (file moved aside) if bad."""
        try:
            ledgers = load_or_set_aside(self.path, STATE_FILE, _parse, "state",
                                        self._clock.time())
        except SetAsideError as exc:
            raise StateError(f"{exc}; counters start afresh") from exc
        return ledgers or {}


def _parse(doc: Any) -> dict[str, Ledger]:
    """The ledgers of a decoded document, checking its version first."""
    if not isinstance(doc, dict) or doc.get("version") != VERSION:
        version = doc.get("version") if isinstance(doc, dict) else None
        raise ValueError(f"version {version!r}, expected {VERSION}")
    targets = doc["targets"]
    if not isinstance(targets, dict):
        raise TypeError("targets must be an object")
    return {str(ident): Ledger.from_dict(data) for ident, data in targets.items()}


def reconcile(  # noqa: PLR0917 -- positional order is the agreed interface for the service
    loaded: Mapping[str, Ledger],
    idents: Iterable[str],
    now: int,
    period: int,
    settle: int,
    max_backfill: int,
    *,
    audit: bool = False,
) -> Reconciled:
    """Ledgers for exactly ``idents``: loaded ones retuned and rebased, new ones start at ``now``.

    Idents no longer configured are dropped. A changed period applies to time not yet read.
    """
    ledgers: dict[str, Ledger] = {}
    skipped = 0
    for ident in idents:
        led = loaded.get(ident)
        if led is None:
            led = Ledger(now, period, settle, audit=audit)
        else:
            led.retune(period, settle)
            led.audit = audit
            skipped += led.rebase(now, max_backfill)
        ledgers[ident] = led
    return Reconciled(ledgers, skipped)

"""The state document: every ledger, cost meter and budget's use, in one file written atomically.

One document, so a crash or a lost file can never leave cost ahead of or behind the counters it
prices. Version 1 kept cost in a second file (``<path>.cost.json``); it is read once, migrated,
and removed after the first version 2 write.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from exporter.accounting.ledger import Ledger
from exporter.core.atomicfile import write_json
from exporter.core.clock import Clock, SystemClock
from exporter.core.grid import Grid
from exporter.core.safejson import (
    SHAPE_ERRORS,
    STATE_FILE,
    SetAsideError,
    UnsafeJsonError,
    load_file,
    load_or_set_aside,
)
from exporter.cost.meters import CostMeter, budget_use

log = logging.getLogger(__name__)

VERSION = 2
LEGACY_COST_SUFFIX = ".cost.json"


class StateError(OSError):
    """The state file could not be read or written; the message says what to do.

    An OSError, so a caller guarding its file I/O with ``except OSError`` also catches it.
    """


@dataclass
class StateDocument:
    """What the exporter persists.

    ``ledgers`` holds every target's ledger, polled or parked; ``parked`` says since when (API
    seconds) a target has not been polled (removed by a reload, or gone from discovery), so a
    target that returns continues. ``meters`` are cost per target, ``budgets`` their use,
    ``seeds`` the targets whose budget seed (see polling.seeding) is still to be counted.
    """

    ledgers: dict[str, Ledger] = field(default_factory=dict)
    parked: dict[str, int] = field(default_factory=dict)
    meters: dict[str, CostMeter] = field(default_factory=dict)
    budgets: dict[str, dict[str, Any]] = field(default_factory=dict)
    seeds: list[str] = field(default_factory=list)  # targets whose budget seed is still due


class StateStore:
    """One JSON file holding the :class:`StateDocument`, keyed by ident ("project/key/model")."""

    def __init__(self, path: str, clock: Clock | None = None) -> None:
        self.path = path
        self._clock: Clock = clock or SystemClock()
        self._legacy: str | None = None  # a version 1 cost file to remove once migrated

    def save(self, doc: StateDocument, meta: Mapping[str, int | float | str] | None = None
             ) -> None:
        """Replace the file atomically: temp file in the same directory, fsync, rename, fsync dir.

        ``meta`` is for plain facts (e.g. the exporter version); never put a secret in it.
        """
        data = {
            "version": VERSION,
            "saved_at": int(self._clock.time()),
            "meta": dict(meta or {}),
            "targets": {ident: _target_dict(ident, led, doc)
                        for ident, led in doc.ledgers.items()},
            "budgets": doc.budgets,
            "budget_seeds": doc.seeds,
        }
        try:
            write_json(self.path, data)
        except OSError as exc:
            raise StateError(f"cannot write state file {self.path}: {exc}; check that its "
                             "directory exists and is writable, and free space") from exc
        if self._legacy is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._legacy)
            self._legacy = None

    def load(self) -> StateDocument:
        """The saved document; empty if there is none; StateError (file moved aside) if bad:
        size, depth and numbers are bounded (core.safejson), shapes checked, never a traceback."""
        try:
            doc = load_or_set_aside(self.path, STATE_FILE, self._document, "state",
                                    self._clock.time())
        except SetAsideError as exc:
            raise StateError(f"{exc}; counters and cost start afresh") from exc
        return doc or StateDocument()

    def _document(self, data: object) -> StateDocument:
        if isinstance(data, dict) and data.get("version") == 1:
            return self._migrate(data)
        return _parse(data)

    def _migrate(self, data: dict[str, Any]) -> StateDocument:
        """A version 1 state file, with its cost file beside it when that is readable."""
        targets = data["targets"]
        if not isinstance(targets, dict):
            raise TypeError("targets must be an object")
        doc = StateDocument({str(i): Ledger.from_dict(d) for i, d in targets.items()})
        legacy = self.path + LEGACY_COST_SUFFIX
        try:
            cost: Any = load_file(legacy, STATE_FILE)
            doc.meters = {str(i): CostMeter.from_dict(m) for i, m in cost["meters"].items()}
            doc.budgets = budget_use(cost["budgets"])
        except FileNotFoundError:
            pass
        except (OSError, UnsafeJsonError, *SHAPE_ERRORS):
            # Unusable cost: priced afresh from here (meters start at the counters).
            doc.meters, doc.budgets = {}, {}
        self._legacy = legacy
        return doc


def _target_dict(ident: str, led: Ledger, doc: StateDocument) -> dict[str, Any]:
    entry: dict[str, Any] = {"ledger": led.to_dict()}
    meter = doc.meters.get(ident)
    if meter is not None:
        entry["cost"] = meter.to_dict()
    if ident in doc.parked:
        entry["parked_at"] = doc.parked[ident]
    return entry


def _parse(data: Any) -> StateDocument:
    """The document of a decoded version 2 file."""
    if not isinstance(data, dict) or data.get("version") != VERSION:
        version = data.get("version") if isinstance(data, dict) else None
        raise ValueError(f"version {version!r}, expected {VERSION}")
    targets = data["targets"]
    if not isinstance(targets, dict):
        raise TypeError("targets must be an object")
    doc = StateDocument(budgets=budget_use(data.get("budgets", {})))
    seeds = data.get("budget_seeds", [])
    if not isinstance(seeds, list) or not all(isinstance(s, str) for s in seeds):
        raise TypeError("budget_seeds must be a list of target idents")
    doc.seeds = list(seeds)
    for ident, entry in targets.items():
        if not isinstance(entry, dict):
            raise TypeError(f"target {ident!r} must be an object")
        doc.ledgers[str(ident)] = Ledger.from_dict(entry["ledger"])
        if "cost" in entry:
            doc.meters[str(ident)] = CostMeter.from_dict(entry["cost"])
        parked = entry.get("parked_at")
        if parked is not None:
            if isinstance(parked, bool) or not isinstance(parked, int):
                raise TypeError(f"target {ident!r}: parked_at must be an integer")
            doc.parked[str(ident)] = parked
    return doc


@dataclass(frozen=True)
class Reconciled:
    """The ledgers to run with, and the seconds of old usage rebasing gave up on (all targets)."""

    ledgers: dict[str, Ledger]
    skipped_seconds: int


GridOf = Callable[[str], Grid]
"""The grid a target's ledger runs on, by ident (its account's ``api.time_zone``)."""


def restart(loaded: Mapping[str, Ledger], now: int, grid_of: GridOf, settle: int,
            max_backfill: int, *, origin: int | None = None, audit: bool = False) -> Reconciled:
    """Loaded ledgers, retuned, begun at ``origin`` (see :func:`retarget`) and rebased: the one
    place ``state.max_backfill`` applies.

    Every loaded ledger is rebased, polled or parked, because the time the process was down is
    time no process read. Within a process (reload, discovery change) nothing is rebased.
    ``now`` must not run ahead of the API's clock (see api.clock): it decides what is skipped.
    """
    ledgers = retarget(loaded, loaded, grid_of, settle, origin=origin, audit=audit,
                       starting=True)
    skipped = sum(led.rebase(now, max_backfill) for led in ledgers.values())
    return Reconciled(ledgers, skipped)


def retarget(known: Mapping[str, Ledger], idents: Iterable[str], grid_of: GridOf, settle: int,
             *, origin: int | None = None, audit: bool = False,
             starting: bool = False) -> dict[str, Ledger]:
    """The known ledgers of ``idents``, retuned (never rebased): a changed grid or horizon
    applies to time not yet read. Targets without one get theirs from the poller.

    With ``accounting.origin``, a ledger that began after its day (before the origin was set,
    or with a baseline) counts from it from now on (:meth:`Ledger.begin_at`: what it counted
    stays, the rest is caught up), so every replica's counters mean usage since the origin;
    one that began before it keeps counting from there (counters never go down). Said once:
    the first at once, the second at a start (``starting``)."""
    ledgers: dict[str, Ledger] = {}
    later: list[str] = []
    earlier: list[str] = []
    for ident in idents:
        led = known.get(ident)
        if led is None:
            continue
        grid = grid_of(ident)
        led.retune(grid, settle)
        led.audit = audit
        if origin is not None:
            start = grid.start(origin)
            if led.begin_at(start):
                later.append(ident)
            elif not led.counts_from(start):
                earlier.append(ident)
        ledgers[ident] = led
    if later:
        log.warning("%d targets began counting after accounting.origin's day (%s first): they "
                    "count from it now; what they counted stays and the time before is read "
                    "from the API (uminfer_catchup_remaining_seconds)", len(later), later[0][:200])
    if earlier and starting:
        log.warning("%d targets began counting before accounting.origin's day (%s first): they "
                    "keep counting from there, since counters never go down; a peer refuses "
                    "their ledgers and counts less. Remove the state file to count from the "
                    "origin (their counters start again once)", len(earlier), earlier[0][:200])
    return ledgers

"""The settled ledgers one replica hands another: built, bounded, checked before any is used.

Only closed time travels (what no later read can change): the receiver reads the open rest
itself. A document is taken only when the terms that define a settled value (origin, settle,
and each ledger's grid of provider days) are the receiver's own, and it is bounded and checked
like the state file, so a peer with another config, a peer that answers garbage or a peer whose
clock runs ahead cannot put a number in the receiver's counters that the API would not give it.
It holds target identities and numbers only, never a credential.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from exporter.accounting.ledger import Ledger
from exporter.core.grid import Grid
from exporter.core.safejson import SHAPE_ERRORS, STATE_FILE, UnsafeJsonError, loads

KIND = "uminfer-settled-ledgers"
VERSION = 2
#: How far a peer's settled time may run ahead of the receiver's estimate of the API's clock
#: (both are estimates of one clock, each late by about a second; more is a peer not to trust).
CLOCK_SLACK = 120
#: The largest document taken: the state file's bound (one body read, then parsed bounded).
MAX_BYTES = STATE_FILE.max_bytes


class HandoffError(ValueError):
    """The peer's document is not taken; the message says why (never its content)."""


@dataclass(frozen=True)
class Terms:
    """What makes one replica's settled value another's: the same origin (Unix seconds) and
    ``poll.settle`` (and each ledger's grid, checked ledger by ledger)."""

    origin: int
    settle: int

    def describe(self) -> str:
        """The terms as an operator writes them."""
        return f"accounting.origin={self.origin}, poll.settle={self.settle}s"


@dataclass(frozen=True)
class Handoff:
    """A peer's settled ledgers."""

    terms: Terms
    ledgers: dict[str, Ledger]
    replica: str = ""  # the sender's random id for this process: a replica never takes its own


def render(terms: Terms, ledgers: Mapping[str, Ledger], *, replica: str = "") -> bytes:
    """The document for ``ledgers`` (their settled parts only), sent by ``replica``."""
    return json.dumps({
        "kind": KIND, "version": VERSION, "replica": replica, "terms": asdict(terms),
        "targets": {ident: led.settled().to_dict() for ident, led in ledgers.items()},
    }, separators=(",", ":")).encode()


def parse(body: bytes) -> Handoff:
    """The document in ``body``; HandoffError when it is too large, not JSON, or misshapen."""
    if len(body) > MAX_BYTES:
        raise HandoffError(f"answer larger than {MAX_BYTES} bytes")
    try:
        data = loads(body, STATE_FILE)
        return _handoff(data)
    except UnsafeJsonError as error:
        raise HandoffError(f"answer is not a ledger document: {error}") from None
    except HandoffError:
        raise
    except SHAPE_ERRORS as error:
        raise HandoffError(f"answer is not a ledger document: {type(error).__name__}: "
                           f"{str(error)[:200]}") from None


def _handoff(data: Any) -> Handoff:
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise HandoffError("answer is not a ledger document (wrong kind)")
    if data.get("version") != VERSION:
        raise HandoffError(f"document version {str(data.get('version'))[:20]!r}, expected "
                           f"{VERSION}: run the same exporter version on every replica")
    raw = data["terms"]
    terms = Terms(_int(raw["origin"]), _int(raw["settle"]))
    targets = data["targets"]
    if not isinstance(targets, dict):
        raise TypeError("targets must be an object")
    ledgers = {str(ident): Ledger.from_dict(entry) for ident, entry in targets.items()}
    return Handoff(terms, ledgers, str(data.get("replica", ""))[:64])


def check(handoff: Handoff, terms: Terms, now: int, grid_of: Callable[[str], Grid]) -> None:
    """HandoffError unless every ledger is valid here at ``now`` (the API's time): same terms,
    each ledger on this replica's grid for it (``grid_of``), counting from the origin's day,
    holding only closed time that the API's clock allows to be closed."""
    if handoff.terms != terms:
        raise HandoffError(f"the peer counts with {handoff.terms.describe()}, this replica with "
                           f"{terms.describe()}; make them identical on every replica")
    for ident, led in handoff.ledgers.items():
        what = f"target {ident[:200]!r}"
        grid = grid_of(ident)
        if led.grid != grid:
            raise HandoffError(f"{what} is cut into {led.grid.describe()}, here into "
                               f"{grid.describe()}: set the same api.time_zone on every replica")
        if led.fresh or led.origin != grid.start(terms.origin):
            raise HandoffError(f"{what} does not count from accounting.origin")
        if led.counters() != led.settled_totals():
            raise HandoffError(f"{what} holds time that is not settled")
        if led.settled_until() + terms.settle > now + CLOCK_SLACK:
            raise HandoffError(f"{what} is settled up to {led.settled_until()}, which the API's "
                               f"clock ({now}) does not allow yet: is the peer's clock ahead?")


def takeover(theirs: Mapping[str, Ledger], mine: Mapping[str, Ledger],
             wanted: Iterable[str]) -> dict[str, Ledger]:
    """The peer's ledgers to take for the ``wanted`` targets: where this replica has none, or
    one settled less far whose counters (open readings included) the peer's settled value
    already covers, so no counter this replica has shown can go down."""
    taken: dict[str, Ledger] = {}
    for ident in wanted:
        peer, own = theirs.get(ident), mine.get(ident)
        if peer is None:
            continue
        if own is None or (peer.settled_until() > own.settled_until()
                           and peer.settled_totals().dominates(own.counters())):
            taken[ident] = peer
    return taken


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value

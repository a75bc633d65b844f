"""The settled ledgers one replica hands another: built, bounded, checked before any is used.

Only closed time travels (what no later read can change): the receiver reads the open rest
itself. A document is taken only when the terms that define a settled value (the cloud accounts
read, origin, settle, and each ledger's grid of provider days) are the receiver's own, and only
ledgers that count every second from the origin (no baseline); it is bounded and checked
like the state file and more: no negative number, give-up reasons from a closed set, every
total within MAX_PER_SECOND a second of the time it covers (so 2**62, the state's limit, stays
out of reach), a bounded number of targets. A replica that has its own ledger for a target
takes the peer's only within what its own reading explains (:func:`takeover`). It holds target
identities and numbers only, never a credential. A peer is authenticated, not trusted: these
checks are what stands between a hostile or spoofed peer and the receiver's counters.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from exporter.accounting.ledger import Ledger
from exporter.core.failures import CATEGORIES
from exporter.core.grid import DAY, Grid
from exporter.core.safejson import SHAPE_ERRORS, STATE_FILE, UnsafeJsonError, loads

log = logging.getLogger(__name__)

KIND = "uminfer-settled-ledgers"
VERSION = 3
#: How far a peer's settled time may run ahead of the receiver's estimate of the API's clock
#: (both are estimates of one clock, each late by about a second; more is a peer not to trust).
CLOCK_SLACK = 120
#: The largest document taken: the state file's bound (one body read, then parsed bounded).
MAX_BYTES = STATE_FILE.max_bytes
#: Most targets one document may hold (discovery.max_targets is 1,000 by default).
MAX_TARGETS = 100_000
#: No quantity of one target grows faster than this a second, averaged over the time its
#: ledger covers (a billion tokens a second is far beyond any real key). Totals past it are
#: damage or a lie; and with it, even an origin in 1970 leaves counters under 2**61.
MAX_PER_SECOND = 10**9
#: A replica with its own ledger takes a peer's settled totals only where they exceed its own
#: counters by at most this many times its own average rate over the time it has read, for the
#: time the peer has settled beyond that reading plus ``settle`` (late usage), and only when
#: that time is at most one day (what one API read would verify). Anything else it reads
#: from the API itself.
MAX_SURGE = 10
#: Why time may be given up: the failure categories, and one that versions before the grid of
#: provider days gave (their ledgers may still carry it).
GIVE_UP_REASONS = (*CATEGORIES, "window_semantics")


class HandoffError(ValueError):
    """The peer's document is not taken; the message says why (never its content)."""


@dataclass(frozen=True)
class Terms:
    """What makes one replica's settled value another's: the same cloud accounts (by name,
    "" alone with one account, each with a fingerprint of its public key: the same target ids
    in another account or on another cloud are other usage; the endpoint URL may differ, as
    through two proxies), origin (Unix seconds) and ``poll.settle`` (and each ledger's grid,
    checked ledger by ledger)."""

    origin: int
    settle: int
    accounts: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        """The terms as an operator writes them."""
        keys = "".join(f"{'account ' + repr(name) if name else 'the account'} of public key "
                       f"{fingerprint}, " for name, fingerprint in self.accounts)
        return f"{keys}accounting.origin={self.origin}, poll.settle={self.settle}s"


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
    terms = Terms(_int(raw["origin"]), _int(raw["settle"]), _accounts(raw["accounts"]))
    targets = data["targets"]
    if not isinstance(targets, dict):
        raise TypeError("targets must be an object")
    if len(targets) > MAX_TARGETS:
        raise HandoffError(f"{len(targets)} targets, more than {MAX_TARGETS}")
    ledgers = {str(ident): _settled_ledger(entry) for ident, entry in targets.items()}
    return Handoff(terms, ledgers, str(data.get("replica", ""))[:64])


def _settled_ledger(entry: Any) -> Ledger:
    """A settled ledger as :meth:`Ledger.settled` makes it: no open or audit stretch, and
    give-up reasons from the closed set, each a number of seconds (not negative)."""
    if not isinstance(entry, dict):
        raise TypeError("a target's ledger must be an object")
    if entry.get("open", []) != [] or entry.get("audits", []) != []:
        raise HandoffError("a ledger holds time that is not settled")
    given_up = entry.get("given_up", {})
    if not isinstance(given_up, dict):
        raise TypeError("given_up must be an object")
    for reason, seconds in given_up.items():
        if reason not in GIVE_UP_REASONS:
            raise HandoffError(f"a ledger gives up for {str(reason)[:40]!r}, not one of "
                               f"{', '.join(GIVE_UP_REASONS)}")
        if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
            raise HandoffError("a ledger gives up a negative or non-integer number of seconds")
    return Ledger.from_dict(entry)


def check(handoff: Handoff, terms: Terms, now: int, grid_of: Callable[[str], Grid]) -> None:
    """HandoffError unless every ledger is valid here at ``now`` (the API's time): same terms,
    each ledger on this replica's grid for it (``grid_of``), counting from the origin's day,
    holding only closed time that the API's clock allows to be closed, and every number within
    the bounds of the time it covers (:func:`_bounded`)."""
    if handoff.terms != terms:
        raise HandoffError(f"the peer counts with {handoff.terms.describe()}, this replica with "
                           f"{terms.describe()}; make them identical on every replica")
    for ident, led in handoff.ledgers.items():
        what = f"target {ident[:200]!r}"
        grid = grid_of(ident)
        if led.grid != grid:
            raise HandoffError(f"{what} is cut into {led.grid.describe()}, here into "
                               f"{grid.describe()}: set the same api.time_zone on every replica")
        if not led.counts_from(grid.start(terms.origin)):
            raise HandoffError(f"{what} does not count every second from accounting.origin")
        if led.counters() != led.settled_totals():
            raise HandoffError(f"{what} holds time that is not settled")
        if led.settled_until() + terms.settle > now + CLOCK_SLACK:
            raise HandoffError(f"{what} is settled up to {led.settled_until()}, which the API's "
                               f"clock ({now}) does not allow yet: is the peer's clock ahead?")
        if (problem := _bounded(led, now)) is not None:
            raise HandoffError(f"{what} {problem}")


def _bounded(led: Ledger, now: int) -> str | None:
    """Why a ledger's numbers cannot be true of the time it covers, or None: no negative
    count, no total beyond MAX_PER_SECOND a second of its settled time, no more seconds given
    up or skipped than have passed since its origin."""
    covered = max(1, led.settled_until() - led.origin + 1)
    most = MAX_PER_SECOND * covered
    totals = {"settled totals": led.settled_totals(), "revised_away": led.revised_away,
              "late_after_settle": led.late_after_settle,
              "additivity_excess": led.additivity_excess}
    for name, value in totals.items():
        if max(value.values()) > most:
            return (f"holds {name} above {MAX_PER_SECOND:,} a second of the {covered} seconds "
                    f"it covers")
    counts = {"revisions": led.revisions, "additivity_errors": led.additivity_errors}
    if any(not 0 <= count <= most for count in counts.values()):
        return "holds a count of revisions or additivity errors out of range"
    seconds = [led.skipped_seconds, *led.given_up.values()]
    if any(second < 0 for second in seconds) or sum(seconds) > max(1, now - led.origin + 1):
        return "gives up or skips more seconds than have passed since its origin"
    return None


def takeover(theirs: Mapping[str, Ledger], mine: Mapping[str, Ledger],
             wanted: Iterable[str]) -> dict[str, Ledger]:
    """The peer's ledgers to take for the ``wanted`` targets: where this replica has none, or
    one settled less far whose counters (open readings included) the peer's settled value
    already covers, so no counter this replica has shown can go down, and exceeds by no more
    than this replica's own reading explains (:func:`explained`). A ledger taken in place of
    one's own keeps the larger of each problem count (:meth:`Ledger.keep_counts`)."""
    taken: dict[str, Ledger] = {}
    unexplained: list[str] = []
    for ident in wanted:
        peer, own = theirs.get(ident), mine.get(ident)
        if peer is None:
            continue
        if own is None:
            taken[ident] = peer
        elif (peer.settled_until() > own.settled_until()
              and peer.settled_totals().dominates(own.counters())):
            if explained(peer, own):
                peer.keep_counts(own)
                taken[ident] = peer
            else:
                unexplained.append(ident)
    if unexplained:
        log.warning("the peer's settled totals of %d targets (%r first) exceed what this "
                    "replica's own ledgers explain (at most %d times their own rate, for at "
                    "most a day); they catch up from the API instead", len(unexplained),
                    unexplained[0][:200], MAX_SURGE)
    return taken


def explained(peer: Ledger, own: Ledger) -> bool:
    """Whether ``peer``'s settled totals exceed ``own``'s counters by no more than late usage
    and the time ``own`` has not read explain: MAX_SURGE times ``own``'s average rate over
    the time it has read, for the time ``peer`` settled beyond it plus ``settle``, which must
    be at most a day (one API read would verify it)."""
    frontier = own.read_frontier()
    beyond = peer.settled_until() + 1 - frontier
    if beyond > DAY:
        return False
    read = max(1, frontier - own.origin)
    excess = peer.settled_totals() - own.counters()
    allowed = max(0, beyond) + own.settle
    return all(MAX_SURGE * have * allowed >= extra * read
               for have, extra in zip(own.counters().values(), excess.values(), strict=True))


def fingerprint(public_key: str) -> str:
    """What names an account in the terms: a short hash of its public key (the key itself
    is not sent)."""
    return "sha256:" + hashlib.sha256(public_key.encode()).hexdigest()[:12]


def _accounts(value: Any) -> tuple[tuple[str, str], ...]:
    """The terms' (account, fingerprint) pairs: a short list of pairs of short strings."""
    if not isinstance(value, list) or len(value) > 1000:
        raise TypeError("accounts must be a list")
    pairs = []
    for pair in value:
        if (not isinstance(pair, list) or len(pair) != 2
                or not all(isinstance(x, str) and len(x) <= 200 for x in pair)):
            raise TypeError("an account must be an [account, fingerprint] pair")
        pairs.append((pair[0], pair[1]))
    return tuple(pairs)


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value

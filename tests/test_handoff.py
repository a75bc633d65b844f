"""The settled ledgers a replica hands its peer: read frontier, settled copy, the document, its
checks against another config, garbage and a clock ahead, which ledgers a replica takes, and
that a replica listed among its own peers skips itself."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from exporter.accounting.handoff import (
    CLOCK_SLACK,
    HandoffError,
    Terms,
    check,
    fingerprint,
    parse,
    render,
    takeover,
)
from exporter.accounting.ledger import Ledger, Read
from exporter.config import HaConfig
from exporter.core.clock import FakeClock
from exporter.core.grid import DAY, Grid
from exporter.core.usage import Totals
from exporter.polling.peers import fetch

H = 3600
SETTLE = 600
T0 = 1_700_000_000 // DAY * DAY
TERMS = Terms(T0, SETTLE)


def HOURS(_: str) -> Grid:  # noqa: N802 (reads as the constant it stands for)
    """This replica's grid for every target: hours (the ledgers here are cut so)."""
    return Grid.every(H)


def tok(n: int) -> Totals:
    return Totals(input_tokens=n, tokens=n)


def counted(hours: int, per_hour: int = 5, open_reading: int = 3) -> Ledger:
    """A ledger from T0 whose first ``hours`` hours are settled, and the next one read open."""
    led = Ledger(T0, H, SETTLE, audit=True)
    for h in range(hours):
        start = T0 + h * H
        led.record(Read(start, start + H - 1, (start,)), tok(per_hour), start + H + SETTLE)
    now = T0 + hours * H + 100
    led.record(Read(now - 100, now, (now - 100,)), tok(open_reading), now)
    return led


def test_read_frontier_is_the_first_second_no_read_covered() -> None:
    led = Ledger(T0, H, SETTLE)
    assert led.read_frontier() == T0
    led.record(Read(T0, T0 + 100, (T0,)), tok(1), T0 + 100)
    assert led.read_frontier() == T0 + 101
    led.record(Read(T0, T0 + H - 1, (T0,)), tok(2), T0 + H + 5)
    assert led.read_frontier() == T0 + H  # read whole, still open: covered
    led.record(Read(T0 + H, T0 + H + 5, (T0 + H,)), tok(0), T0 + H + 5)
    assert led.read_frontier() == T0 + H + 6


def test_a_capped_catch_up_leaves_the_frontier_at_the_first_unread_period() -> None:
    led = Ledger(T0, H, SETTLE)
    now = T0 + 20 * DAY
    reads = led.plan(now, max_reads=8)
    for read in reads[:-1]:
        led.record(read, tok(1), now)
    led.record(reads[-1], tok(1), now)  # the newest, kept in place of an old one
    assert T0 < led.read_frontier() < now - DAY


def test_settled_copy_holds_only_closed_time() -> None:
    led = counted(3)
    copy = led.settled()
    assert copy.counters() == copy.settled_totals() == tok(15)
    assert led.counters() == tok(18)
    assert copy.settled_until() == led.settled_until() == T0 + 3 * H - 1
    assert copy.read_frontier() == T0 + 3 * H  # the open rest is the receiver's to read


def test_the_document_round_trips_and_carries_no_open_reading() -> None:
    body = render(TERMS, {"p/k/m": counted(3)})
    handoff = parse(body)
    check(handoff, TERMS, T0 + 4 * H, HOURS)
    assert handoff.ledgers["p/k/m"].counters() == tok(15)
    assert json.loads(body)["targets"]["p/k/m"]["open"] == []


@pytest.mark.parametrize(("terms", "reason"), [
    (Terms(T0 + H, SETTLE), "the peer counts with accounting.origin=%d, poll.settle=600s, "
                            "this replica with accounting.origin=%d"),
    (Terms(T0, 60), "poll.settle=60s; make them identical on every replica"),
    # The same target ids in another account are other usage: both sides are named.
    (Terms(T0, SETTLE, (("", fingerprint("other-public-key")),)),
     "the peer counts with accounting.origin=%d, poll.settle=600s, this replica with "
     f"the account of public key {fingerprint('other-public-key')}, accounting.origin=%d"),
])
def test_a_peer_with_other_terms_is_refused_with_the_reason(terms: Terms, reason: str) -> None:
    handoff = parse(render(TERMS, {"p/k/m": counted(3)}))
    with pytest.raises(HandoffError) as refused:
        check(handoff, terms, T0 + 4 * H, HOURS)
    expected = reason % (T0, terms.origin) if "%d" in reason else reason
    assert expected in str(refused.value)


def test_a_peer_settled_beyond_the_apis_clock_is_refused() -> None:
    handoff = parse(render(TERMS, {"p/k/m": counted(3)}))
    settled_end = T0 + 3 * H - 1
    check(handoff, TERMS, settled_end + SETTLE - CLOCK_SLACK, HOURS)
    with pytest.raises(HandoffError, match="is the peer's clock ahead"):
        check(handoff, TERMS, settled_end + SETTLE - CLOCK_SLACK - 1, HOURS)


def _doc(**changes: object) -> bytes:
    data = json.loads(render(TERMS, {"p/k/m": counted(3)}))
    entry = data["targets"]["p/k/m"]
    for key, value in changes.items():
        if key in entry:
            entry[key] = value
        else:
            data[key] = value
    return json.dumps(data).encode()


@pytest.mark.parametrize(("body", "reason"), [
    (b"<html>proxy error</html>", "not a ledger document: not JSON"),
    (b"[]", "wrong kind"),
    (_doc(version=2), "document version '2', expected 3"),
    (_doc(closed={"tokens": -5}), "totals must not be negative"),
    (_doc(cursor=T0 - 1), "cursor before origin"),
    (_doc(targets=[]), "targets must be an object"),
    (b'{"kind": "uminfer-settled-ledgers", "version": 3, "terms": {"origin": 1e400}}',
     "not a ledger document"),
    (b"[" * 100 + b"]" * 100, "not a ledger document: nested"),
])
def test_garbage_from_a_peer_is_refused_not_raised(body: bytes, reason: str) -> None:
    with pytest.raises(HandoffError) as refused:
        parse(body)
    assert reason in str(refused.value)


def test_open_time_or_another_origin_in_a_ledger_is_refused() -> None:
    data = json.loads(render(TERMS, {"p/k/m": counted(3)}))
    data["targets"]["p/k/m"]["open"] = [{"start": T0 + 3 * H, "end": T0 + 4 * H - 1,
                                         "totals": {"tokens": 9}, "final": False}]
    with pytest.raises(HandoffError, match="holds time that is not settled"):
        check(parse(json.dumps(data).encode()), TERMS, T0 + 5 * H, HOURS)
    for begins in (T0 - H, T0 + H, T0 + 24 * H):  # before, or after (an hour, exactly a day)
        other = render(TERMS, {"p/k/m": Ledger(begins, H, SETTLE)})
        with pytest.raises(HandoffError, match=r"does not count every second from accounting"):
            check(parse(other), TERMS, T0 + 30 * H, HOURS)


def test_a_ledger_on_the_origin_that_left_out_a_baseline_is_refused() -> None:
    """A ledger that began on the origin's day but after its start left the usage before its
    first read out (its baseline): taking it would make a peer count less than the truth."""
    led = Ledger(T0, H, SETTLE, fresh=True)
    led.plan(T0 + 600)
    led.record(Read(T0, T0 + 600, (T0,)), tok(7), T0 + 600)
    led.record(Read(T0, T0 + H - 1, (T0,)), tok(9), T0 + H + SETTLE)
    assert led.settled_totals() == tok(2)
    with pytest.raises(HandoffError, match=r"does not count every second from accounting"):
        check(parse(render(TERMS, {"p/k/m": led})), TERMS, T0 + 5 * H, HOURS)


def test_a_peer_cutting_other_days_is_refused() -> None:
    handoff = parse(render(TERMS, {"p/k/m": counted(3)}))
    with pytest.raises(HandoffError, match=r"set the same api\.time_zone on every replica"):
        check(handoff, TERMS, T0 + 4 * H, lambda _: Grid("Asia/Shanghai"))


def test_a_replica_takes_newer_ledgers_only_where_its_counters_cannot_go_down() -> None:
    theirs = {"new": counted(3), "older-here": counted(3), "ahead-here": counted(3),
              "read-higher-here": counted(3), "not-polled": counted(3)}
    theirs = {ident: led.settled() for ident, led in theirs.items()}
    mine = {"older-here": counted(1), "ahead-here": counted(4),
            "read-higher-here": counted(2, open_reading=9)}
    taken = takeover(theirs, mine, ["new", "older-here", "ahead-here", "read-higher-here"])
    # read-higher-here: 2 settled hours (10) + an open reading of 9 is above the peer's 15.
    assert sorted(taken) == ["new", "older-here"]


def test_a_ledger_taken_in_place_of_ones_own_keeps_its_problem_counts() -> None:
    """Counters exported from the replaced ledger (late usage after settle, revisions, given-up
    seconds, additivity errors) never go down when a restarted replica takes a peer's."""
    mine = counted(2)
    mine.late_after_settle, mine.revisions, mine.given_up = tok(500), 2, {"throttled": 60}
    peer = parse(render(TERMS, {"p/k/m": counted(3)})).ledgers["p/k/m"]
    peer.revisions = 5
    taken = takeover({"p/k/m": peer}, {"p/k/m": mine}, ["p/k/m"])["p/k/m"]
    assert (taken.late_after_settle, taken.revisions, taken.given_up) == (
        tok(500), 5, {"throttled": 60})


def test_a_replica_listed_among_its_own_peers_never_takes_its_own_ledgers() -> None:
    body = {"/self": render(TERMS, {"p/k/m": counted(3)}, replica="me"),
            "/other": render(TERMS, {"p/k/m": counted(2)}, replica="peer")}

    class Peer(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            answer = body[self.path.removesuffix("/-/ledgers")]
            self.send_response(200)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), Peer) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_address[1]}"
        ha = HaConfig(peers=(f"{base}/self", f"{base}/other"))
        fetched = fetch(ha, TERMS, lambda: T0 + 5 * H, FakeClock(), replica="me",
                        grid_of=HOURS)
        server.shutdown()
    assert fetched is not None
    assert fetched.url == f"{base}/other"
    assert fetched.handoff.ledgers["p/k/m"].counters() == tok(10)


# --- A peer is an untrusted input (issue #26, N3 to N5) ---

def _entry_doc(entry_changes: dict[str, object], ledger: Ledger | None = None) -> bytes:
    data = json.loads(render(TERMS, {"p/k/m": (ledger or counted(3)).settled()}))
    data["targets"]["p/k/m"].update(entry_changes)
    return json.dumps(data).encode()


def _refused(body: bytes, now: int = T0 + 5 * H) -> str:
    with pytest.raises(HandoffError) as refused:
        check(parse(body), TERMS, now, HOURS)
    return str(refused.value)


def test_totals_beyond_what_the_time_covered_allows_are_refused() -> None:
    # 3 settled hours: a billion a second is 1.08e13; the real ledger holds 15 tokens.
    inflated = {"tokens": 15 * 10**9 * 1000, "input_tokens": 15}
    assert "settled totals above 1,000,000,000 a second of the 10800 seconds" in _refused(
        _entry_doc({"closed": inflated}))
    poison = {"tokens": 2**62 - 10}  # just under the state's limit: usage on top overflowed it
    assert "settled totals above" in _refused(_entry_doc({"closed": poison}))
    assert "revised_away above" in _refused(_entry_doc({"revised_away": {"requests": 2**61}}))


def test_invented_or_negative_give_ups_and_counts_are_refused() -> None:
    invented = {f"reason-{i}": 1 for i in range(50_000)}
    assert "gives up for 'reason-0', not one of network, timeout" in _refused(
        _entry_doc({"given_up": invented}))
    assert "negative or non-integer" in _refused(
        _entry_doc({"given_up": {"http": -2**61}}))
    assert "more seconds than have passed" in _refused(
        _entry_doc({"given_up": {"http": 10 * DAY}}))
    assert "revisions or additivity errors out of range" in _refused(
        _entry_doc({"revisions": -5}))
    assert "more seconds than have passed" in _refused(_entry_doc({"skipped_seconds": -1}))


def test_a_document_with_open_or_audit_stretches_or_too_many_targets_is_refused() -> None:
    stretch = {"start": T0, "end": T0 + H - 1, "totals": {"tokens": 1}, "final": True}
    assert "holds time that is not settled" in _refused(_entry_doc({"audits": [stretch]}))
    data = json.loads(render(TERMS, {}))
    data["targets"] = {f"t{i}": {} for i in range(100_001)}
    with pytest.raises(HandoffError, match="100001 targets, more than 100000"):
        parse(json.dumps(data).encode())


def test_a_replica_with_its_own_ledger_takes_only_what_its_reading_explains() -> None:
    own = counted(3, per_hour=1000)  # 3,000 settled, 3 open
    fair = counted(4, per_hour=1000).settled()  # an hour more, at the same rate
    assert takeover({"t": fair}, {"t": own}, ["t"]) == {"t": fair}
    inflated = Ledger.from_dict({**fair.to_dict(), "closed": tok(4000 * 10**9).as_dict()})
    assert takeover({"t": inflated}, {"t": own}, ["t"]) == {}
    days_ahead = counted(30, per_hour=1000).settled()  # beyond what one API read covers
    assert takeover({"t": days_ahead}, {"t": own}, ["t"]) == {}
    idle = Ledger(T0, H, SETTLE)  # a ledger of its own that has read nothing explains nothing
    assert takeover({"t": fair}, {"t": idle}, ["t"]) == {}


class _Recording(BaseHTTPRequestHandler):
    """A peer that records what it was sent; ``dribble`` sends the answer a byte at a time."""

    body = b""
    dribble = 0.0
    seen: list[dict[str, str]] = []

    def do_GET(self) -> None:
        self.seen.append(dict(self.headers.items()))
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        if not self.dribble:
            self.wfile.write(self.body)
            return
        for byte in self.body[:40]:
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            time.sleep(self.dribble)

    def log_message(self, *args: object) -> None:
        pass


def _serve(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_credentials_never_go_to_an_http_peer_without_the_opt_out(
        caplog: pytest.LogCaptureFixture) -> None:
    class Peer(_Recording):
        body = render(TERMS, {"p/k/m": counted(2).settled()}, replica="peer")
        seen: list[dict[str, str]] = []

    server = _serve(Peer)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        ha = HaConfig(peers=(url,), username="replica", password="ha-Secret-PW")
        assert fetch(ha, TERMS, lambda: T0 + 5 * H, FakeClock(), replica="me",
                     grid_of=HOURS) is None
        assert Peer.seen == []  # not even asked: the password would have gone in clear
        assert "go only to https:// peers" in caplog.text
        opted = HaConfig(peers=(url,), username="replica", password="ha-Secret-PW",
                         insecure_http_auth=True)
        assert fetch(opted, TERMS, lambda: T0 + 5 * H, FakeClock(), replica="me",
                     grid_of=HOURS) is not None
        assert Peer.seen[0]["Authorization"].startswith("Basic ")
    finally:
        server.shutdown()
        server.server_close()
    assert "ha-Secret-PW" not in caplog.text


def test_environment_proxies_are_not_used_for_peers(monkeypatch: pytest.MonkeyPatch) -> None:
    class Peer(_Recording):
        body = render(TERMS, {"p/k/m": counted(2).settled()}, replica="peer")
        seen: list[dict[str, str]] = []

    with socket.socket() as dead:  # a proxy address where nothing listens
        dead.bind(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{dead.getsockname()[1]}"
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.setenv(name, proxy)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "")
    server = _serve(Peer)
    try:
        ha = HaConfig(peers=(f"http://127.0.0.1:{server.server_address[1]}",))
        fetched = fetch(ha, TERMS, lambda: T0 + 5 * H, FakeClock(), replica="me", grid_of=HOURS)
    finally:
        server.shutdown()
        server.server_close()
    assert fetched is not None  # straight to the peer, not through the dead proxy


def test_a_peer_that_trickles_its_answer_is_given_up_at_ha_timeout(
        caplog: pytest.LogCaptureFixture) -> None:
    class Peer(_Recording):
        body = render(TERMS, {"p/k/m": counted(2).settled()}, replica="peer")
        dribble = 0.2  # each byte well within a per-read timeout of 1 s
        seen: list[dict[str, str]] = []

    server = _serve(Peer)
    try:
        ha = HaConfig(peers=(f"http://127.0.0.1:{server.server_address[1]}",), timeout=1.0)
        began = time.monotonic()
        fetched = fetch(ha, TERMS, lambda: T0 + 5 * H, FakeClock(), replica="me", grid_of=HOURS)
        took = time.monotonic() - began
        time.sleep(0.3)
        # The call given up on is hung up on, not left reading in the background.
        assert not [t for t in threading.enumerate() if t.name == "peer-fetch"]
    finally:
        server.shutdown()
        server.server_close()
    assert fetched is None
    assert took < 1.5, f"{took:.1f}s"
    assert "no whole answer within ha.timeout (1s)" in caplog.text

"""The settled ledgers a replica hands its peer: read frontier, settled copy, the document, its
checks against another config, garbage and a clock ahead, which ledgers a replica takes, and
that a replica listed among its own peers skips itself."""

from __future__ import annotations

import base64
import json
import logging
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from exporter.accounting.handoff import (
    CLOCK_SLACK,
    MAX_BYTES,
    Handoff,
    HandoffError,
    Terms,
    check,
    explained,
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
from exporter.polling.peers import Fetched, fetch
from tests.certs import Pki, make_pki

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


# --- The peer fetch through a real peer (issue #33) ---

class _Protected(BaseHTTPRequestHandler):
    """A peer whose web config asks for basic auth: 401 without ``replica:ha-Secret-PW``."""

    body = b""
    seen: list[str] = []

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("Authorization", ""))
        expected = "Basic " + base64.b64encode(b"replica:ha-Secret-PW").decode()
        if self.headers.get("Authorization") != expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="uminfer"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


def _serve_tls(handler: type[BaseHTTPRequestHandler], pki: Pki) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_protected_https_peer_is_read_with_its_ca_and_credentials(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pki = make_pki(tmp_path)

    class Peer(_Protected):
        body = render(TERMS, {"p/k/m": counted(2).settled()}, replica="peer")
        seen: list[str] = []

    server = _serve_tls(Peer, pki)
    url = f"https://127.0.0.1:{server.server_address[1]}"

    def ha(**changes: object) -> HaConfig:
        settings: dict[str, object] = {"peers": (url,), "username": "replica",
                                       "password": "ha-Secret-PW", "ca_file": str(pki.ca),
                                       "timeout": 5.0, **changes}
        return HaConfig(**settings)  # type: ignore[arg-type]

    def fetched(config: HaConfig) -> Fetched | None:
        return fetch(config, TERMS, lambda: T0 + 5 * H, FakeClock(), replica="me",
                     grid_of=HOURS)

    try:
        good = fetched(ha())
        assert good is not None and good.url == url
        assert good.handoff.ledgers["p/k/m"].counters() == tok(10)
        assert fetched(ha(password="wrong")) is None
        assert "the peer refused ha.username/ha.password (HTTP 401)" in caplog.text
        asked = len(Peer.seen)
        # Without ha.ca_file the system CAs judge the peer: its test CA is not among them.
        assert fetched(ha(ca_file=None)) is None
        assert "CERTIFICATE_VERIFY_FAILED" in caplog.text
        assert len(Peer.seen) == asked  # nothing, the password least of all, was sent
        (tmp_path / "other").mkdir()
        stranger = make_pki(tmp_path / "other")
        assert fetched(ha(ca_file=str(stranger.ca))) is None  # another CA's peer is refused
        assert len(Peer.seen) == asked
    finally:
        server.shutdown()
        server.server_close()
    assert "ha-Secret-PW" not in caplog.text


@pytest.mark.parametrize(("document", "now", "reason"), [
    (render(Terms(T0, SETTLE + 60), {"p/k/m": counted(2).settled()}, replica="peer"),
     T0 + 5 * H, "the peer counts with"),
    (render(Terms(T0 - H, SETTLE), {"p/k/m": counted(2).settled()}, replica="peer"),
     T0 + 5 * H, "the peer counts with"),
    # Settled two hours from T0: this replica's API clock says only one hour has passed.
    (render(TERMS, {"p/k/m": counted(2).settled()}, replica="peer"),
     T0 + H, "is the peer's clock ahead?"),
])
def test_fetch_refuses_a_peer_with_other_terms_or_a_clock_ahead(
        document: bytes, now: int, reason: str, caplog: pytest.LogCaptureFixture) -> None:
    class Peer(_Recording):
        body = document
        seen: list[dict[str, str]] = []

    server = _serve(Peer)
    try:
        ha = HaConfig(peers=(f"http://127.0.0.1:{server.server_address[1]}",))
        fetched = fetch(ha, TERMS, lambda: now, FakeClock(), replica="me", grid_of=HOURS)
    finally:
        server.shutdown()
        server.server_close()
    assert fetched is None
    assert len(Peer.seen) == 1
    assert "its ledgers are refused" in caplog.text and reason in caplog.text


def test_a_peer_answer_is_cut_at_the_parsers_limit_not_read_on(
        caplog: pytest.LogCaptureFixture) -> None:
    sent: list[int] = []

    class Endless(BaseHTTPRequestHandler):
        """A peer announcing and sending four times the limit, counting what it got out."""

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(4 * MAX_BYTES))
            self.end_headers()
            chunk, total = b"0" * (1 << 20), 0
            try:
                while total < 4 * MAX_BYTES:
                    self.wfile.write(chunk)
                    total += len(chunk)
            except OSError:
                pass
            sent.append(total)

        def log_message(self, *args: object) -> None:
            pass

    server = _serve(Endless)
    try:
        ha = HaConfig(peers=(f"http://127.0.0.1:{server.server_address[1]}",), timeout=20.0)
        fetched = fetch(ha, TERMS, lambda: T0 + 5 * H, FakeClock(), replica="me",
                        grid_of=HOURS)
        deadline = time.monotonic() + 10
        while not sent and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.shutdown()
        server.server_close()
    assert fetched is None
    assert f"answer larger than {MAX_BYTES} bytes" in caplog.text
    # What the socket buffers held beyond the limit at most, never the rest of the answer.
    assert sent and sent[0] <= MAX_BYTES + (16 << 20), sent


@pytest.mark.parametrize("late", [DAY, DAY // 2, H])
def test_a_ledger_that_does_not_begin_at_the_origin_is_refused(late: int) -> None:
    # A ledger whose counting began after the origin lacks the usage in between: a replica
    # that took it would show less than one that counted from the origin.
    grid = Grid("UTC")
    led = Ledger(T0 + late, grid, SETTLE)
    start = T0 + late
    led.record(Read(start, start + H - 1, (start,)), tok(5), start + H + SETTLE)
    handoff = parse(render(TERMS, {"p/k/m": led.settled()}, replica="peer"))
    with pytest.raises(HandoffError, match=r"does not count every second from accounting"):
        check(handoff, TERMS, T0 + late + 5 * H, lambda _: grid)


# --- Every refusal, in the words an operator reads (mutation survivors, #33) ---

def _edited(change: dict[str, object] | None = None, /, **entry: object) -> bytes:
    """A valid document of counted(3), with top-level ``change`` and ledger ``entry`` edits."""
    data = json.loads(render(TERMS, {"p/k/m": counted(3).settled()}, replica="peer"))
    data["targets"]["p/k/m"].update(entry)
    data.update(change or {})
    return json.dumps(data).encode()


def _parse_error(body: bytes) -> str:
    with pytest.raises(HandoffError) as refused:
        parse(body)
    return str(refused.value)


@pytest.mark.parametrize(("body", "message"), [
    (_edited({"kind": "other"}), "answer is not a ledger document (wrong kind)"),
    (_edited({"version": "9" * 30}), "document version '99999999999999999999', expected 3: run "
     "the same exporter version on every replica"),
    (_edited({"targets": []}), "answer is not a ledger document: TypeError: targets must be an "
     "object"),
    (_edited({"targets": {"p/k/m": 0}}), "answer is not a ledger document: TypeError: a target's "
     "ledger must be an object"),
    (_edited({"terms": {"origin": "1", "settle": SETTLE}}), "answer is not a ledger document: "
     "TypeError: expected an integer, got str"),
    (_edited({"terms": {"origin": True, "settle": SETTLE}}), "answer is not a ledger document: "
     "TypeError: expected an integer, got bool"),
    (_edited(open=[{"start": T0}]), "a ledger holds time that is not settled"),
    (_edited(audits=[{"start": T0}]), "a ledger holds time that is not settled"),
    (_edited(given_up=[]), "answer is not a ledger document: TypeError: given_up must be an "
     "object"),
    (_edited(given_up={"x" * 60: 1}), f"a ledger gives up for {'x' * 40!r}, not one of network, "
     "timeout, http, retcode, invalid_response, internal, window_semantics"),
    (_edited(given_up={"timeout": True}), "a ledger gives up a negative or non-integer number of "
     "seconds"),
    (_edited(given_up={"timeout": -1}), "a ledger gives up a negative or non-integer number of "
     "seconds"),
])
def test_each_misshapen_document_is_refused_with_its_reason(body: bytes, message: str) -> None:
    assert _parse_error(body) == message


def test_a_ledger_entry_must_say_it_has_no_open_time_but_may_omit_give_ups() -> None:
    for key in ("open", "audits"):
        data = json.loads(_edited())
        del data["targets"]["p/k/m"][key]
        assert _parse_error(json.dumps(data).encode()) == (
            f"answer is not a ledger document: KeyError: '{key}'")
    data = json.loads(_edited())
    del data["targets"]["p/k/m"]["given_up"]
    check(parse(json.dumps(data).encode()), TERMS, T0 + 5 * H, HOURS)


def test_the_document_and_its_target_count_are_bounded_exactly() -> None:
    assert _parse_error(b" " * (MAX_BYTES + 1)) == f"answer larger than {MAX_BYTES} bytes"
    assert _parse_error(b" " * MAX_BYTES).startswith("answer is not a ledger document: ")
    data = json.loads(render(TERMS, {}))
    data["targets"] = {f"t{i}": 0 for i in range(100_000)}  # at the cap: each entry is read
    assert _parse_error(json.dumps(data).encode()).endswith("ledger must be an object")


def test_a_ledger_giving_up_no_seconds_and_a_document_without_a_replica_are_taken() -> None:
    check(parse(_edited(given_up={"timeout": 0})), TERMS, T0 + 5 * H, HOURS)
    data = json.loads(_edited())
    del data["replica"]
    assert parse(json.dumps(data).encode()).replica == ""
    assert parse(render(TERMS, {})).replica == ""  # render's default: no replica id
    assert parse(render(TERMS, {}, replica="r" * 80)).replica == "r" * 64


def test_check_names_the_target_in_every_refusal() -> None:
    ident = "p/" + "k" * 300
    handoff = parse(render(TERMS, {ident: counted(3).settled()}))
    days = Grid("UTC")
    with pytest.raises(HandoffError) as refused:
        check(handoff, TERMS, T0 + 5 * H, lambda _: days)
    assert str(refused.value) == (f"target {ident[:200]!r} is cut into 3600 s periods at offset "
                                  "0 s, here into days of UTC: set the same api.time_zone on "
                                  "every replica")
    # Each target's own grid: the ledger of hours is checked against hours, not another's.
    check(handoff, TERMS, T0 + 5 * H, lambda name: HOURS(name) if name == ident else days)


def _checked(now: int = T0 + 5 * H, **entry: object) -> str | None:
    try:
        check(parse(_edited(**entry)), TERMS, now, HOURS)
    except HandoffError as error:
        return str(error)
    return None


def test_every_bound_of_check_holds_exactly_at_its_limit() -> None:
    most = 10**9 * 3 * H  # a billion a second over the three settled hours
    what = "target 'p/k/m'"
    assert _checked(closed={"tokens": most}) is None
    assert _checked(closed={"tokens": most + 1}) == (
        f"{what} holds settled totals above 1,000,000,000 a second of the {3 * H} seconds it "
        "covers")
    assert _checked(late_after_settle={"tokens": most + 1}) == (
        f"{what} holds late_after_settle above 1,000,000,000 a second of the {3 * H} seconds it "
        "covers")
    assert _checked(additivity_excess={"tokens": most + 1}) == (
        f"{what} holds additivity_excess above 1,000,000,000 a second of the {3 * H} seconds it "
        "covers")
    assert _checked(revisions=most) is None
    assert _checked(revisions=most + 1) == (
        f"{what} holds a count of revisions or additivity errors out of range")
    passed = 5 * H + 1  # seconds from the origin to now, both counted
    assert _checked(skipped_seconds=passed) is None
    assert _checked(skipped_seconds=passed + 1) == (
        f"{what} gives up or skips more seconds than have passed since its origin")


def test_a_ledger_with_nothing_settled_is_bounded_as_one_second() -> None:
    empty = Ledger(T0, H, SETTLE).settled()
    data = json.loads(render(TERMS, {"p/k/m": empty}))
    data["targets"]["p/k/m"]["revisions"] = 10**9
    check(parse(json.dumps(data).encode()), TERMS, T0 + H, HOURS)
    data["targets"]["p/k/m"]["revisions"] = 10**9 + 1
    with pytest.raises(HandoffError, match="out of range"):
        check(parse(json.dumps(data).encode()), TERMS, T0 + H, HOURS)


def test_takeover_keeps_each_peer_ledger_and_skips_targets_the_peer_lacks() -> None:
    peer = counted(3).settled()
    taken = takeover({"b": peer}, {}, ["a", "b"])  # "a": the peer has none, "b" still taken
    assert taken == {"b": peer} and taken["b"] is peer
    even = counted(3).settled()
    assert takeover({"t": peer}, {"t": even}, ["t"]) == {}  # settled as far: nothing to gain


def test_a_peer_settled_exactly_as_far_as_one_read_verifies_is_explained() -> None:
    own = counted(3, per_hour=1000)
    frontier = own.read_frontier()
    base = counted(28, per_hour=1000).settled().to_dict()
    for beyond, explained_ok in ((DAY, True), (DAY + 1, False)):
        peer = Ledger.from_dict({**base, "cursor": frontier + beyond})
        assert peer.settled_until() + 1 - frontier == beyond
        assert explained(peer, own) is explained_ok


@pytest.mark.parametrize("beyond", [0, H, 3 * H])
def test_the_surge_a_peer_may_bring_is_exactly_what_own_reading_explains(beyond: int) -> None:
    # beyond 0: the peer settled exactly up to where this replica's reading ends.
    own = counted(3, per_hour=1000)
    base = Ledger.from_dict({**counted(6, per_hour=1000).settled().to_dict(),
                             "cursor": own.read_frontier() + beyond})
    read = own.read_frontier() - own.origin
    allowed = beyond + own.settle
    have = own.counters()
    most = have.tokens + 10 * have.tokens * allowed // read  # MAX_SURGE: 10

    def peer(tokens: int) -> Ledger:
        totals = Totals(input_tokens=have.input_tokens, tokens=tokens)
        return Ledger.from_dict({**base.to_dict(), "closed": totals.as_dict()})

    assert explained(peer(most), own)
    assert not explained(peer(most + 1), own)


def test_unexplained_totals_are_logged_once_with_the_first_target(
        caplog: pytest.LogCaptureFixture) -> None:
    ident = "x" * 300
    own = counted(3, per_hour=1000)
    inflated = Ledger.from_dict({**counted(4, per_hour=1000).settled().to_dict(),
                                 "closed": tok(4000 * 10**9).as_dict()})
    assert takeover({ident: inflated}, {ident: own}, [ident]) == {}
    assert [r.getMessage() for r in caplog.records] == [
        f"the peer's settled totals of 1 targets ({ident[:200]!r} first) exceed what this "
        "replica's own ledgers explain (at most 10 times their own rate, for at most a day); "
        "they catch up from the API instead"]


# --- Which peers are asked, and what the log says of each (mutation survivors, #33) ---

def test_this_host_is_not_asked_and_each_failed_peer_is_followed_by_the_next(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)

    class Peer(_Recording):
        body = render(TERMS, {"p/k/m": counted(2).settled()}, replica="peer")
        seen: list[dict[str, str]] = []

    class Other(_Recording):
        body = render(Terms(T0, SETTLE + 60), {}, replica="other")
        seen: list[dict[str, str]] = []

    with socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))
        gone = f"http://127.0.0.1:{dead.getsockname()[1]}"
    own = f"http://{socket.gethostname().split('.')[0].upper()}.peers.invalid:1"
    good, other = _serve(Peer), _serve(Other)
    try:
        refused = f"http://127.0.0.1:{other.server_address[1]}"
        url = f"http://127.0.0.1:{good.server_address[1]}"
        ha = HaConfig(peers=(own, gone, refused, url), timeout=5.0)
        clock = FakeClock()
        clock.advance(100)  # monotonic time far from zero: the call took no fake time
        fetched = fetch(ha, TERMS, lambda: T0 + 5 * H, clock, replica="me", grid_of=HOURS)
    finally:
        for server in (good, other):
            server.shutdown()
            server.server_close()
    assert fetched is not None and (fetched.url, fetched.seconds) == (url, 0.0)
    assert (len(Peer.seen), len(Other.seen)) == (1, 1)
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "peers.invalid" in m]  # this host: not even tried
    [unreachable] = [m for m in messages if "unreachable" in m]
    prefix = f"peer {gone} unreachable: ConnectionError: "
    assert unreachable.startswith(prefix + "HTTPConnectionPool(")
    assert len(unreachable) == len(prefix) + 200  # the error's first line, cut at 200
    assert (f"peer {refused}: its ledgers are refused: the peer counts with "
            f"accounting.origin={T0}, poll.settle={SETTLE + 60}s, this replica with "
            f"accounting.origin={T0}, poll.settle={SETTLE}s; make them identical on every "
            "replica; catching up from the API instead") in messages


def test_a_document_this_replica_sent_is_skipped_and_said_so(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)

    class Peer(_Recording):
        body = render(TERMS, {}, replica="me")
        seen: list[dict[str, str]] = []

    server = _serve(Peer)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert fetch(HaConfig(peers=(url,)), TERMS, lambda: T0 + 5 * H, FakeClock(),
                     replica="me", grid_of=HOURS) is None
    finally:
        server.shutdown()
        server.server_close()
    assert [r.getMessage() for r in caplog.records] == [f"peer {url} is this replica; skipped"]


def test_an_error_without_words_is_logged_by_its_kind(caplog: pytest.LogCaptureFixture) -> None:
    class Silent(requests.Session):
        def get(self, *args: object, **kwargs: object) -> requests.Response:
            raise requests.ConnectionError()

    ha = HaConfig(peers=("http://127.0.0.1:1",), timeout=5.0)
    assert fetch(ha, TERMS, lambda: T0 + 5 * H, FakeClock(), replica="me", grid_of=HOURS,
                 session=Silent) is None
    assert [r.getMessage() for r in caplog.records] == [
        "peer http://127.0.0.1:1 unreachable: ConnectionError: "]


def test_the_call_runs_in_a_daemon_thread_named_for_it() -> None:
    """A peer that never finishes must not hold up an exit, and shows in a thread dump."""
    threads: list[tuple[str, bool]] = []

    class Peer(_Recording):
        body = render(TERMS, {"p/k/m": counted(2).settled()}, replica="peer")
        seen: list[dict[str, str]] = []

        def do_GET(self) -> None:
            threads.extend((t.name, t.daemon) for t in threading.enumerate()
                           if t.name == "peer-fetch")
            super().do_GET()

    server = _serve(Peer)
    try:
        ha = HaConfig(peers=(f"http://127.0.0.1:{server.server_address[1]}",))
        assert fetch(ha, TERMS, lambda: T0 + 5 * H, FakeClock(), replica="me",
                     grid_of=HOURS) is not None
    finally:
        server.shutdown()
        server.server_close()
    assert threads == [("peer-fetch", True)]


class _Routed(BaseHTTPRequestHandler):
    """A peer serving ``answers`` by path (status, headers, body); 404 elsewhere."""

    answers: dict[str, tuple[int, dict[str, str], bytes]] = {}

    def do_GET(self) -> None:
        status, headers, body = self.answers.get(self.path, (404, {}, b""))
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _fetch_logged(answers: dict[str, tuple[int, dict[str, str], bytes]], suffix: str = "",
                  ha: dict[str, object] | None = None) -> tuple[Fetched | None, list[str]]:
    class Peer(_Routed):
        pass

    Peer.answers = answers
    server = _serve(Peer)
    url = f"http://127.0.0.1:{server.server_address[1]}{suffix}"
    handler = logging.Handler()
    records: list[str] = []
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("exporter.polling.peers")
    logger.addHandler(handler)
    try:
        settings: dict[str, object] = {"peers": (url,), "timeout": 20.0, **(ha or {})}
        fetched = fetch(HaConfig(**settings), TERMS,  # type: ignore[arg-type]
                        lambda: T0 + 5 * H, FakeClock(), replica="me", grid_of=HOURS)
    finally:
        logger.removeHandler(handler)
        server.shutdown()
        server.server_close()
    return fetched, [m.replace(url, "PEER") for m in records]


def test_each_answer_a_peer_may_give_is_told_apart() -> None:
    doc = render(TERMS, {"p/k/m": counted(2).settled()}, replica="peer")
    fetched, _ = _fetch_logged({"/-/ledgers": (200, {}, doc)}, suffix="/")  # a trailing slash
    assert fetched is not None
    refusal = "PEER: its ledgers are refused: {}; catching up from the API instead"
    cases: list[tuple[dict[str, tuple[int, dict[str, str], bytes]], str]] = [
        ({}, "the peer does not serve /-/ledgers (an older version?)"),
        ({"/-/ledgers": (500, {}, b"")}, "the peer answered HTTP 500"),
        ({"/-/ledgers": (405, {}, b"")}, "the peer answered HTTP 405"),
        ({"/-/ledgers": (401, {}, b"")}, "the peer refused ha.username/ha.password (HTTP 401)"),
        # A redirect is not followed: credentials must not travel on to another address.
        ({"/-/ledgers": (302, {"Location": "/elsewhere"}, b""), "/elsewhere": (200, {}, doc)},
         "the peer answered HTTP 302"),
    ]
    for answers, why in cases:
        fetched, logged = _fetch_logged(answers)
        assert (fetched, logged) == (None, ["peer " + refusal.format(why)])
    fetched, logged = _fetch_logged({"/-/ledgers": (200, {}, doc)},
                                    ha={"username": "replica", "password": "pw"})
    assert (fetched, logged) == (None, ["peer " + refusal.format(
        "ha.username/ha.password go only to https:// peers (or set ha.insecure_http_auth: "
        "true)")])


def test_an_answer_of_exactly_the_limit_is_read_whole() -> None:
    fetched, logged = _fetch_logged({"/-/ledgers": (200, {}, b" " * MAX_BYTES)})
    assert fetched is None
    [line] = logged
    assert "answer is not a ledger document" in line  # read, then refused as no document


def test_skipped_seconds_are_bounded_by_one_second_at_the_origin_itself() -> None:
    terms = Terms(T0, 60)  # a settle short enough for a document checked at its origin
    data = json.loads(render(terms, {"p/k/m": Ledger(T0, H, 60).settled()}))
    for skipped, refused in ((1, False), (2, True)):
        data["targets"]["p/k/m"]["skipped_seconds"] = skipped
        handoff = parse(json.dumps(data).encode())
        if refused:
            with pytest.raises(HandoffError, match="more seconds than have passed"):
                check(handoff, terms, T0, HOURS)
        else:
            check(handoff, terms, T0, HOURS)


def test_a_peer_that_never_answers_leaves_no_call_behind() -> None:
    """Its answer never begins, so there is nothing to hang up on: the call's own read
    timeout (ha.timeout) is what ends it."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections are accepted by the kernel and never answered
        ha = HaConfig(peers=(f"http://127.0.0.1:{silent.getsockname()[1]}",), timeout=0.5)
        began = time.monotonic()
        assert fetch(ha, TERMS, lambda: T0 + 5 * H, FakeClock(), replica="me",
                     grid_of=HOURS) is None
        assert time.monotonic() - began < 1.5
        deadline = time.monotonic() + 3
        while ([t for t in threading.enumerate() if t.name == "peer-fetch"]
               and time.monotonic() < deadline):
            time.sleep(0.05)
        assert not [t for t in threading.enumerate() if t.name == "peer-fetch"]


# --- The accounts in the terms: named as an operator compares them, carried as pairs (#33) ---

def test_an_account_is_named_by_the_first_12_hex_digits_of_its_keys_sha256() -> None:
    # What two replicas' refusals show side by side: sha256 of "demo-public" is f62af5c736dc...
    assert fingerprint("demo-public") == "sha256:f62af5c736dc"


def test_the_terms_name_each_account_and_its_key_fingerprint_in_order() -> None:
    terms = Terms(T0, SETTLE, (("prod", fingerprint("a")), ("", fingerprint("b"))))
    assert terms.describe() == (
        "account 'prod' of public key sha256:ca978112ca1b, the account of public key "
        f"sha256:3e23e8160039, accounting.origin={T0}, poll.settle=600s")


def _with_accounts(accounts: object) -> bytes:
    data = json.loads(render(TERMS, {"p/k/m": counted(3).settled()}))
    data["terms"]["accounts"] = accounts
    return json.dumps(data).encode()


def test_the_terms_accounts_travel_as_pairs_and_must_match() -> None:
    terms = Terms(T0, SETTLE, (("prod", fingerprint("a")), ("", fingerprint("b"))))
    handoff = parse(render(terms, {"p/k/m": counted(3)}))
    assert handoff.terms == terms
    check(handoff, terms, T0 + 4 * H, HOURS)
    longest = [["a" * 200, "f" * 200]] * 1000  # the most accounts, the longest names, taken
    assert parse(_with_accounts(longest)).terms.accounts == (("a" * 200, "f" * 200),) * 1000


@pytest.mark.parametrize(("accounts", "problem"), [
    ({"": "sha256:x"}, "accounts must be a list"),
    ([["", "f"]] * 1001, "accounts must be a list"),
    (["ab"], "an account must be an [account, fingerprint] pair"),
    ([["", "f", "g"]], "an account must be an [account, fingerprint] pair"),
    ([["f"]], "an account must be an [account, fingerprint] pair"),
    ([["", 5]], "an account must be an [account, fingerprint] pair"),
    ([["a" * 201, "f"]], "an account must be an [account, fingerprint] pair"),
    ([["", "f" * 201]], "an account must be an [account, fingerprint] pair"),
])
def test_misshapen_accounts_in_the_terms_are_refused_with_the_reason(accounts: object,
                                                                     problem: str) -> None:
    assert _parse_error(_with_accounts(accounts)) == (
        f"answer is not a ledger document: TypeError: {problem}")


def test_check_refuses_open_time_in_a_handoff_it_is_given_directly() -> None:
    # parse() refuses open stretches first; check() holds on its own for any Handoff.
    with pytest.raises(HandoffError) as refused:
        check(Handoff(TERMS, {"p/k/m": counted(3)}), TERMS, T0 + 4 * H, HOURS)
    assert str(refused.value) == "target 'p/k/m' holds time that is not settled"


def test_a_replica_that_has_read_one_second_explains_by_that_one_second() -> None:
    own = Ledger(T0, H, SETTLE)
    own.record(Read(T0, T0, (T0,)), tok(1), T0)  # a first poll at the very start of its hour
    assert own.read_frontier() - own.origin == 1
    allowed = (H - 1) + SETTLE  # the rest of the hour the peer settled, plus late usage

    def peer(extra: int) -> Ledger:
        led = Ledger(T0, H, SETTLE)
        led.record(Read(T0, T0 + H - 1, (T0,)), tok(1 + extra), T0 + H + SETTLE)
        return led.settled()

    assert explained(peer(10 * allowed), own)  # MAX_SURGE (10) times one token a second
    assert not explained(peer(10 * allowed + 1), own)


def test_a_long_shape_error_is_cut_at_200_characters() -> None:
    # A hostile peer chooses what the error quotes (here its totals): the log shows 200
    # characters of it at most.
    closed = {"tokens": -1, "padding": "x" * 300}
    quoted = f"totals must not be negative: {closed}"
    assert _parse_error(_edited(closed=closed)) == (
        f"answer is not a ledger document: ValueError: {quoted[:200]}")

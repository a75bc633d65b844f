"""A hostile HA peer through the real process (issue #26, N5): a peer that answers 200 and then
trickles its document a byte at a time must delay a replica's start by ``ha.timeout`` at most;
the replica then catches up from the API, answers reloads and stops at once on SIGTERM."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from tests import fleet

pytestmark = pytest.mark.e2e


class Trickling(BaseHTTPRequestHandler):
    """200, a long Content-Length, then one byte every half second (each read is quick)."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "1000000")
        self.end_headers()
        for _ in range(120):
            try:
                self.wfile.write(b" ")
                self.wfile.flush()
            except OSError:
                return
            time.sleep(0.5)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def trickling_peer() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Trickling)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def peer_config(tmp_path: Path, peer: str, timeout: str) -> dict[str, Any]:
    """One target counting from an hour ago, with state, bootstrapping from ``peer``."""
    origin = datetime.fromtimestamp(time.time() // 3600 * 3600 - 3600, UTC)
    return fleet.fleet_config(
        "http://unused", ["k-peer"], state={"path": str(tmp_path / "state.json")},
        accounting={"origin": origin.strftime("%Y-%m-%dT%H:%M:%SZ")},
        ha={"peers": [peer], "timeout": timeout})


def test_a_trickling_peer_delays_the_start_by_ha_timeout_only(tmp_path: Path,
                                                              trickling_peer: str) -> None:
    config = peer_config(tmp_path, trickling_peer, "1s")
    with fleet.simulator() as sim:
        config["api"]["endpoint"] = sim.url
        with fleet.exporter(tmp_path, config, ready=False) as child:
            began = time.monotonic()
            child.wait_ready(timeout=8.0)  # before: never (the first cycle waited on the peer)
            assert "no whole answer within ha.timeout (1s)" in child.log()
            assert "catching up from accounting.origin through the API" in child.log()
            assert time.monotonic() - began < 8.0
            answer = requests.post(f"{child.url}/-/reload", timeout=5)
            assert answer.status_code == 200
            stopped = time.monotonic()
            assert child.stop(timeout=3.0) == 0
            assert time.monotonic() - stopped < 2.0


def test_reloads_and_stops_never_wait_for_a_peer(tmp_path: Path, trickling_peer: str) -> None:
    """The peer call runs outside the poll cycle's lock: while it trickles, POST /-/reload is
    answered and SIGTERM ends the process at once (before: the reload hung, and a reload
    waiting for the cycle kept the process alive after SIGTERM)."""
    config = peer_config(tmp_path, trickling_peer, "20s")
    with fleet.simulator() as sim:
        config["api"]["endpoint"] = sim.url
        with fleet.exporter(tmp_path, config, ready=False) as child:
            until = time.monotonic() + 10
            while child.status("/-/healthy") != 200 and time.monotonic() < until:
                time.sleep(0.1)
            time.sleep(1.0)  # the first cycle is in the peer call now
            assert child.status("/-/ready") == 503
            answer = requests.post(f"{child.url}/-/reload", timeout=5)
            assert answer.status_code == 200
            assert child.status("/-/ready") == 503  # still waiting on the peer
            stopped = time.monotonic()
            assert child.stop(timeout=3.0) == 0
            assert time.monotonic() - stopped < 2.0

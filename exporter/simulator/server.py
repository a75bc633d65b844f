"""The simulator on real loopback HTTP: the API at any path, admin endpoints under ``/_sim/``."""

from __future__ import annotations

import logging
import socket
import struct
import sys
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast
from urllib.parse import urlsplit

from exporter.simulator import api, mangle
from exporter.simulator.admin import Admin
from exporter.simulator.buckets import BucketPolicy
from exporter.simulator.catalog import Catalog, SimKey
from exporter.simulator.faults import Fault, FaultKind, FaultPlan, retcode_message
from exporter.simulator.outcome import Outcome, transport_outcome
from exporter.simulator.spend import metered
from exporter.simulator.stats import NO_RESPONSE, CallStats, StatsSnapshot
from exporter.simulator.store import EventStore
from exporter.simulator.traffic import TrafficGenerator
from exporter.simulator.usage import Clock

log = logging.getLogger(__name__)


class SimulatorServer:
    """GetUMInferTokenUsage as the gateway serves it, backed by an EventStore."""

    def __init__(
        self,
        store: EventStore,
        keys: Mapping[str, str],
        clock: Clock,
        faults: FaultPlan | None = None,
        traffic: TrafficGenerator | None = None,
        *,
        buckets: BucketPolicy | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        max_window: int = 86400 * 10,
        catalog: Catalog | None = None,
    ) -> None:
        self.store, self.clock, self.traffic = store, clock, traffic
        self.catalog = catalog if catalog is not None else Catalog()
        self.faults = faults if faults is not None else FaultPlan()
        self._keys, self._max_window = dict(keys), max_window
        self.buckets = buckets if buckets is not None else BucketPolicy()
        self._address = (host, port)
        self._stats = CallStats()
        self.admin = Admin(store, self.faults, self._stats, clock, traffic,
                           catalog=self.catalog)
        self.stopping = threading.Event()  # set on stop, so held requests let go at once
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL, once started."""
        if self._httpd is None:
            raise RuntimeError("the simulator is not running; call start() first")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/"

    def start(self) -> str:
        """Listen and serve in a background thread; return the base URL."""
        self.stopping.clear()
        self._httpd = _HTTPServer(self._address, self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
            name="uminfer-simulator",
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        self.stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> SimulatorServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stats(self) -> StatsSnapshot:
        """Calls by action, status and RetCode, and the recent usage calls."""
        return self._stats.snapshot()

    def reset_stats(self) -> None:
        """Start counting calls from zero."""
        self._stats.reset()

    def respond(self, params: Mapping[str, str]) -> Outcome:
        """Decide the fate of one API call (faults first, then the gateway's checks)."""
        self._stats.action(params.get("Action", ""))
        picked = self.faults.pick(params.get("KeyId"), params.get("Model"), params.get("Action"))
        delay = self.faults.latency() + sum(f.delay for f in picked if f.kind is FaultKind.LATENCY)
        fault = next((f for f in picked if f.kind is not FaultKind.LATENCY), None)
        outcome = transport_outcome(fault, delay)
        if outcome is None:
            if fault is not None and fault.kind is FaultKind.TIMEOUT:
                delay += fault.delay
            body = self._answer(params, fault)
            outcome = Outcome(delay, body=mangle.encode(body, fault), retcode=body["RetCode"])
        self._stats.outcome(NO_RESPONSE if outcome.drop else outcome.status, outcome.retcode)
        return outcome

    def _metered(self, key: SimKey) -> SimKey:
        """``key`` with the used amounts the cloud would show now (if it is metered)."""
        if not key.metered:
            return key
        now = self.clock.time()
        if self.traffic is not None:
            self.traffic.advance(now)
        return metered(key, self.store, self.catalog.prices(), now)

    def _answer(self, params: Mapping[str, str], fault: Fault | None) -> dict[str, Any]:
        action = params.get("Action", "")
        if fault is not None and fault.kind is FaultKind.RETCODE:
            return api.reply(action, fault.retcode, fault.message or retcode_message(fault.retcode))
        try:
            action = api.check_action(params)
            api.check_signature(params, self._keys)
            if action == api.LIST_KEYS_ACTION:
                return api.reply(action, data=api.list_keys_data(self.catalog, params,
                                                                 self._metered))
            if action == api.MODELS_ACTION:
                return api.reply(action, data=api.models_data(self.catalog, params))
            query = api.parse_usage(params, self._max_window)
        except api.GatewayError as rejection:
            return api.reply(action, rejection.retcode, rejection.message)
        now = self.clock.time()
        if self.traffic is not None:
            self.traffic.advance(now)
        self._stats.usage((query.start, query.end, query.key, query.model or ""))
        return api.reply(action, data=api.usage_data(self.store, query, now, self.buckets))


class _HTTPServer(ThreadingHTTPServer):
    """Threaded, with a deep accept queue (exporters call 16-32 at once) and real resets."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], sim: SimulatorServer) -> None:
        self.sim = sim
        self.resets: set[int] = set()
        self._resets_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        """One line at debug level: a client that gave up before a late answer is not news."""
        log.debug("connection from %s ended with an error: %s", client_address, sys.exc_info()[1])

    def mark_reset(self, conn: socket.socket) -> None:
        """Abort ``conn`` with a TCP RST instead of the usual orderly close."""
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with self._resets_lock:
            self.resets.add(id(conn))

    def shutdown_request(self, request: Any) -> None:
        """Skip the FIN for reset connections: closing with linger 0 sends the RST."""
        with self._resets_lock:
            reset = id(request) in self.resets
            self.resets.discard(id(request))
        if reset:
            self.close_request(request)
        else:
            super().shutdown_request(request)


class _Handler(BaseHTTPRequestHandler):
    """Reads a request, asks the SimulatorServer what to do, does it."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs' HTTP clients expect
    # Headers and body go out in two writes; with Nagle on, a keep-alive client's delayed ACK
    # would hold every body back 40 ms.
    disable_nagle_algorithm = True
    timeout = 30  # idle keep-alive connections must not pin threads forever

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The ``Date`` header by the simulator's clock: the API's time is the simulator's."""
        if timestamp is None:
            timestamp = cast(_HTTPServer, self.server).sim.clock.time()
        return super().date_time_string(timestamp)

    def do_GET(self) -> None:
        """API call with a query string, or an admin read."""
        self._route()

    def do_POST(self) -> None:
        """API call with a form or JSON body, or an admin write."""
        self._route()

    def do_DELETE(self) -> None:
        """Admin deletes."""
        self._route()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests and the demo would drown in access logs."""

    def _route(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        sim = cast(_HTTPServer, self.server).sim
        if url.path.startswith("/_sim/"):
            status, payload = sim.admin.handle(self.command, url.path, url.query, body)
            self._send(Outcome(status=status, body=mangle.encode(payload)))
            return
        content_type = self.headers.get("Content-Type", "")
        outcome = sim.respond(api.parse_params(url.query, body, content_type))
        if outcome.delay > 0 and sim.stopping.wait(outcome.delay):
            outcome = Outcome(drop=FaultKind.CLOSE)
        self._send(outcome)

    def _send(self, outcome: Outcome) -> None:
        if outcome.drop is not None:
            self.close_connection = True
            if outcome.drop is FaultKind.RESET:
                cast(_HTTPServer, self.server).mark_reset(self.connection)
            return
        self.send_response(outcome.status)
        self.send_header("Content-Type", outcome.content_type)
        self.send_header("Content-Length", str(len(outcome.body) * outcome.repeat))
        for name, value in outcome.headers:
            self.send_header(name, value)
        self.end_headers()
        for _ in range(outcome.repeat):
            self.wfile.write(outcome.body)

"""The simulator's server: what it decides for each call (faults, checks, spend, stats) and how
it serves that over loopback HTTP (status, headers, Date, admin routing, start and stop)."""

import json
import logging
import socket
import threading
import time
from email.utils import formatdate
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from exporter.api.signing import sign
from exporter.core.clock import FakeClock
from exporter.simulator import (
    BucketPolicy,
    Catalog,
    EventStore,
    Fault,
    FaultKind,
    FaultPlan,
    SimKey,
    SimModel,
    SimulatorServer,
    TargetSpec,
    TrafficGenerator,
)
from exporter.simulator.outcome import Outcome
from exporter.simulator.store import Event
from exporter.simulator.usage import Usage
from tests.conftest import StartSimulator

PUBLIC, PRIVATE = "pub-key", "priv-key"
NOW = 1_767_312_000 + 3600  # 2026-01-02 01:00 UTC


def usage_call(**extra: object) -> dict[str, str]:
    p = {"Action": "GetUMInferTokenUsage", "ProjectId": "p", "KeyId": "k", "Model": "m",
         "StartTime": NOW - 600, "EndTime": NOW, **extra}
    return sign(p, PUBLIC, PRIVATE)


def server(**options: Any) -> SimulatorServer:
    store = options.pop("store", EventStore())
    clock = options.pop("clock", FakeClock(float(NOW)))
    return SimulatorServer(store, {PUBLIC: PRIVATE}, clock, **options)


def answer(outcome: Outcome) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(outcome.body)
    return body


# -- deciding one call -----------------------------------------------------------------------


def test_a_plain_call_is_answered_at_once_with_its_data() -> None:
    store = EventStore()
    store.add(Event(NOW - 60, NOW - 60.0, "p", "k", "m", Usage(3, 4, 7, 1, 0)))
    sim = server(store=store)
    outcome = sim.respond(usage_call())
    assert (outcome.delay, outcome.status, outcome.retcode, outcome.drop) == (0.0, 200, 0, None)
    assert (outcome.content_type, outcome.headers, outcome.repeat) == ("application/json", (), 1)
    body = answer(outcome)
    assert (body["Action"], body["Data"]["Total"]) == ("GetUMInferTokenUsageResponse", 7)
    assert body["Data"]["Usages"][0] == {"Type": "in", "Count": 3, "Timestamp": NOW - 60,
                                         "Model": "m"}


def test_the_bucket_policy_shapes_the_answer() -> None:
    store = EventStore()
    store.add(Event(NOW - 60, NOW - 60.0, "p", "k", "m", Usage(3, 4, 7, 1, 0)))
    body = answer(server(store=store, buckets=BucketPolicy(rows=False)).respond(usage_call()))
    assert body["Data"]["Total"] == 7
    assert "Usages" not in body["Data"]


def test_a_call_that_fails_a_check_is_answered_with_its_action_and_retcode() -> None:
    sim = server()
    assert answer(sim.respond({"KeyId": "k"})) == {
        "RetCode": 160, "Action": "Response", "Message": "Missing Action"}
    body = answer(sim.respond(usage_call(EndTime=NOW - 700)))
    assert (body["RetCode"], body["Action"]) == (230, "GetUMInferTokenUsageResponse")
    assert sim.stats().by_retcode == {160: 1, 230: 1}


def test_the_window_limit_is_ten_days_unless_set() -> None:
    assert answer(server().respond(usage_call(StartTime=NOW - 864_000)))["RetCode"] == 0
    assert answer(server().respond(usage_call(StartTime=NOW - 864_001)))["RetCode"] == 110
    assert answer(server(max_window=600).respond(usage_call()))["RetCode"] == 0
    assert answer(server(max_window=599).respond(usage_call()))["RetCode"] == 110


def test_latency_faults_add_up_before_the_one_fault_that_acts() -> None:
    plan = FaultPlan()
    plan.add(Fault(FaultKind.LATENCY, delay=0.25))
    plan.add(Fault(FaultKind.LATENCY, delay=0.5))
    plan.add(Fault(FaultKind.RETCODE, retcode=153, delay=9.0), times=1)
    plan.set_latency(1.0)
    sim = server(faults=plan)
    outcome = sim.respond(usage_call())
    assert (outcome.delay, outcome.retcode) == (1.75, 153)
    assert answer(outcome)["Message"] == "Request frequency exceeds the limit"
    assert sim.respond(usage_call()).delay == 1.75


def test_a_retcode_fault_keeps_its_own_message() -> None:
    plan = FaultPlan()
    plan.add(Fault(FaultKind.RETCODE, retcode=299, message="no iam:GetUsage"))
    body = answer(server(faults=plan).respond(usage_call()))
    assert body == {"RetCode": 299, "Action": "GetUMInferTokenUsageResponse",
                    "Message": "no iam:GetUsage"}


def test_a_timeout_that_answers_holds_the_call_then_answers_it() -> None:
    plan = FaultPlan()
    plan.add(Fault(FaultKind.TIMEOUT, delay=2.0, then="answer"))
    plan.add(Fault(FaultKind.LATENCY, delay=0.5))
    outcome = server(faults=plan).respond(usage_call())
    assert (outcome.delay, outcome.retcode, outcome.drop) == (2.0, 0, None)
    plan.clear()
    plan.add(Fault(FaultKind.LATENCY, delay=0.5))
    plan.add(Fault(FaultKind.TIMEOUT, delay=2.0, then="answer"))
    assert server(faults=plan).respond(usage_call()).delay == 2.5


def test_a_body_fault_mangles_the_answer() -> None:
    plan = FaultPlan()
    plan.add(Fault(FaultKind.EMPTY_DATA))
    assert answer(server(faults=plan).respond(usage_call()))["Data"] == {}


def test_faults_match_on_the_calls_key_model_and_action() -> None:
    plan = FaultPlan()
    plan.add(Fault(FaultKind.RETCODE, retcode=292), key="k", model="m",
             action="GetUMInferTokenUsage")
    sim = server(faults=plan)
    assert sim.respond(usage_call(Model="n")).retcode == 0
    assert sim.respond(usage_call(KeyId="j")).retcode == 0
    assert sim.respond(usage_call()).retcode == 292


def test_drops_are_counted_as_no_response() -> None:
    plan = FaultPlan()
    plan.add(Fault(FaultKind.RESET), times=1)
    plan.add(Fault(FaultKind.HTTP, status=503), times=1)
    sim = server(faults=plan)
    assert sim.respond(usage_call()).drop is FaultKind.RESET
    assert sim.respond(usage_call()).status == 503
    sim.respond(usage_call())
    stats = sim.stats()
    assert (stats.by_status, stats.by_retcode) == ({0: 1, 503: 1, 200: 1}, {0: 1})
    assert stats.by_action == {"GetUMInferTokenUsage": 3}


def test_each_answered_usage_call_is_recorded_model_or_not() -> None:
    sim = server()
    sim.respond(usage_call())
    sim.respond(usage_call(Model=""))
    sim.respond(usage_call(StartTime="x"))
    assert sim.stats().usage_calls == ((NOW - 600, NOW, "k", "m"), (NOW - 600, NOW, "k", ""))
    sim.reset_stats()
    assert sim.stats().calls == 0


def server_with_traffic() -> SimulatorServer:
    """A server whose traffic (5 requests a second on p/k/m) began 600 s before NOW, its
    clock at NOW, the traffic not yet generated up to it."""
    clock = FakeClock(float(NOW - 600))
    store = EventStore()
    traffic = TrafficGenerator(store, [TargetSpec("k", "m", "p", rate=5.0)], 1, clock,
                               late_fraction=0.0)
    sim = server(store=store, clock=clock, traffic=traffic)
    clock.advance(600)
    return sim


def test_usage_is_answered_with_the_traffic_up_to_now() -> None:
    sim = server_with_traffic()
    body = answer(sim.respond(usage_call()))
    assert body["Data"]["RequestTotal"] > 0


def listing() -> dict[str, str]:
    return sign({"Action": "ListUMInferAPIKey", "ProjectId": "p"}, PUBLIC, PRIVATE)


def spending_catalog() -> Catalog:
    catalog = Catalog()
    catalog.add_key(SimKey("p", "k", "n", "s", daily_used="1", metered=True))
    catalog.add_key(SimKey("p", "fixed", "n", "s", daily_used="1"))
    catalog.add_model(SimModel("m", prompt=2.0, completion=8.0))
    return catalog


def test_a_listing_shows_what_a_metered_key_has_spent() -> None:
    store = EventStore()
    for key in ("k", "fixed"):
        store.add(Event(NOW - 60, NOW - 60.0, "p", key, "m", Usage(500_000, 0, 500_000, 1, 0)))
    outcome = server(store=store, catalog=spending_catalog()).respond(listing())
    rows = answer(outcome)["Data"]
    assert [(r["KeyId"], r["DailyUsedAmount"]) for r in rows] == [("k", "2.0000"),
                                                                   ("fixed", "1")]
    assert (outcome.retcode, answer(outcome)["Action"]) == (0, "ListUMInferAPIKeyResponse")


def test_a_listing_meters_the_traffic_up_to_now() -> None:
    clock = FakeClock(float(NOW - 600))
    store = EventStore()
    traffic = TrafficGenerator(store, [TargetSpec("k", "m", "p", rate=5.0)], 1, clock,
                               late_fraction=0.0)
    sim = server(store=store, clock=clock, traffic=traffic, catalog=spending_catalog())
    clock.advance(600)
    [metered, fixed] = answer(sim.respond(listing()))["Data"]
    assert float(metered["DailyUsedAmount"]) > 1
    assert fixed["DailyUsedAmount"] == "1"


def test_a_listing_that_fails_a_check_has_its_retcode() -> None:
    body = answer(server().respond(sign({"Action": "ListUMInferAPIKey", "Limit": 0}, PUBLIC,
                                        PRIVATE)))
    assert (body["RetCode"], body["Action"]) == (230, "ListUMInferAPIKeyResponse")


def test_the_models_action_answers_from_the_catalog() -> None:
    catalog = spending_catalog()
    p = sign({"Action": "GetUMInferAPIModel", "KeyId": "k"}, PUBLIC, PRIVATE)
    body = answer(server(catalog=catalog).respond(p))
    assert (body["RetCode"], [m["Name"] for m in body["Data"]]) == (0, ["m"])
    assert body["Action"] == "GetUMInferAPIModelResponse"


def test_a_server_without_a_catalog_knows_no_keys() -> None:
    sim = server()
    assert answer(sim.respond(listing()))["Data"] == []
    sim.admin.handle("POST", "/_sim/keys", "", b'{"key_id": "k", "project": "p"}')
    assert [r["KeyId"] for r in answer(sim.respond(listing()))["Data"]] == ["k"]


def test_the_admins_truth_brings_the_servers_traffic_up_to_now() -> None:
    sim = server_with_traffic()
    query = f"project=p&key=k&model=m&start={NOW - 600}&end={NOW}"
    status, truth = sim.admin.handle("GET", "/_sim/truth", query, b"")
    assert status == 200
    assert truth["visible"]["requests"] > 0


def test_the_admin_steers_the_servers_own_faults() -> None:
    sim = server()
    sim.admin.handle("POST", "/_sim/faults", "", b'{"kind": "retcode", "retcode": 150}')
    assert sim.respond(usage_call()).retcode == 150
    assert sim.admin.handle("GET", "/_sim/stats", "", b"")[1]["by_retcode"] == {"150": 1}


# -- serving HTTP ----------------------------------------------------------------------------


def test_url_needs_a_running_server() -> None:
    sim = server()
    with pytest.raises(RuntimeError) as caught:
        _ = sim.url
    assert str(caught.value) == "the simulator is not running; call start() first"


def test_start_listens_on_loopback_and_stop_closes() -> None:
    sim = server()
    url = sim.start()
    try:
        assert url == sim.url
        parts = urlsplit(url)
        assert (parts.scheme, parts.hostname, parts.path) == ("http", "127.0.0.1", "/")
        assert parts.port
        assert "uminfer-simulator" in [t.name for t in threading.enumerate()]
        assert requests.get(f"{url}_sim/stats", timeout=5).status_code == 200
    finally:
        sim.stop()
    with pytest.raises(RuntimeError):
        _ = sim.url
    assert "uminfer-simulator" not in [t.name for t in threading.enumerate()]
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}_sim/stats", timeout=5)
    sim.stop()


def test_stopping_a_server_never_started_is_harmless() -> None:
    sim = server()
    sim.stop()
    with pytest.raises(RuntimeError):
        _ = sim.url


def test_a_server_started_again_holds_calls_again() -> None:
    plan = FaultPlan()
    plan.add(Fault(FaultKind.LATENCY, delay=0.05))
    sim = server(faults=plan)
    sim.start()
    sim.stop()
    with sim:
        reply = requests.post(sim.url, data=usage_call(), timeout=5)
        assert (reply.status_code, reply.json()["RetCode"]) == (200, 0)


def test_stop_does_not_wait_for_idle_keep_alive_connections() -> None:
    sim = server()
    sim.start()
    with requests.Session() as session:
        assert session.post(sim.url, data=usage_call(), timeout=5).status_code == 200
        stopping = threading.Thread(target=sim.stop)
        stopping.start()
        stopping.join(10)
        assert not stopping.is_alive()


def test_the_date_header_is_the_simulators_time(start_simulator: StartSimulator) -> None:
    sim = start_simulator({PUBLIC: PRIVATE}, clock=FakeClock(float(NOW)))
    reply = requests.post(sim.url, data=usage_call(), timeout=5)
    assert reply.headers["Date"] == formatdate(NOW, usegmt=True)
    admin = requests.get(f"{sim.url}_sim/stats", timeout=5)
    assert admin.headers["Date"] == formatdate(NOW, usegmt=True)


def test_an_answer_has_its_type_and_length(start_simulator: StartSimulator) -> None:
    sim = start_simulator({PUBLIC: PRIVATE}, clock=FakeClock(float(NOW)))
    reply = requests.post(sim.url, data=usage_call(), timeout=5)
    assert reply.headers["Content-Type"] == "application/json"
    assert int(reply.headers["Content-Length"]) == len(reply.content)
    assert reply.json()["RetCode"] == 0


def test_a_crafted_answer_is_streamed_repeat_times(start_simulator: StartSimulator) -> None:
    plan = FaultPlan()
    plan.add(Fault(FaultKind.CRAFTED, status=202, body="ab", header="X-Sim: yes", repeat=3))
    sim = start_simulator({PUBLIC: PRIVATE}, clock=FakeClock(float(NOW)), faults=plan)
    reply = requests.post(sim.url, data=usage_call(), timeout=5)
    assert (reply.status_code, reply.content) == (202, b"ababab")
    assert (reply.headers["Content-Length"], reply.headers["X-Sim"]) == ("6", "yes")


def test_admin_requests_go_by_method_under_sim(start_simulator: StartSimulator) -> None:
    sim = start_simulator({PUBLIC: PRIVATE}, clock=FakeClock(float(NOW)))
    added = requests.post(f"{sim.url}_sim/keys", json={"key_id": "k", "project": "p"}, timeout=5)
    assert (added.status_code, added.json()) == (200, {"added": "k"})
    assert added.headers["Content-Type"] == "application/json"
    removed = requests.delete(f"{sim.url}_sim/keys?project=p&key_id=k", timeout=5)
    assert removed.json() == {"removed": 1}
    missing = requests.get(f"{sim.url}_sim/keys", timeout=5)
    assert (missing.status_code, missing.json()) == (
        404, {"error": "no admin endpoint GET /_sim/keys"})
    assert sim.stats().calls == 0


def test_a_path_that_only_starts_like_the_admins_is_an_api_call(
        start_simulator: StartSimulator) -> None:
    sim = start_simulator({PUBLIC: PRIVATE}, clock=FakeClock(float(NOW)))
    body = requests.post(f"{sim.url}_simulated", data=usage_call(), timeout=5).json()
    assert body["RetCode"] == 0
    assert sim.stats().calls == 1


def test_a_one_byte_body_is_read(start_simulator: StartSimulator) -> None:
    sim = start_simulator({PUBLIC: PRIVATE}, clock=FakeClock(float(NOW)))
    query = "&".join(f"{k}={v}" for k, v in usage_call().items())
    assert requests.get(f"{sim.url}?{query}", timeout=5).json()["RetCode"] == 0
    body = requests.post(f"{sim.url}?{query}", data="x", timeout=5).json()
    assert body["RetCode"] == 171


def test_a_reset_is_a_tcp_reset_on_the_wire(start_simulator: StartSimulator) -> None:
    plan = FaultPlan()
    plan.add(Fault(FaultKind.RESET), times=1)
    sim = start_simulator({PUBLIC: PRIVATE}, clock=FakeClock(float(NOW)), faults=plan)
    with pytest.raises(requests.ConnectionError) as caught:
        requests.post(sim.url, data=usage_call(), timeout=5)
    assert "reset" in str(caught.value).lower()
    assert requests.post(sim.url, data=usage_call(), timeout=5).json()["RetCode"] == 0


def test_an_aborted_connection_is_one_debug_line(caplog: pytest.LogCaptureFixture) -> None:
    sim = server()
    sim.start()
    try:
        httpd = sim._httpd  # the error hook, called as socketserver calls it
        assert httpd is not None
        with caplog.at_level(logging.DEBUG, logger="exporter.simulator.server"):
            try:
                raise ConnectionResetError("peer gone")
            except ConnectionResetError:
                httpd.handle_error(object(), ("127.0.0.1", 9))
    finally:
        sim.stop()
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.DEBUG, "connection from ('127.0.0.1', 9) ended with an error: peer gone")]


def test_a_held_call_is_answered_after_its_delay(start_simulator: StartSimulator) -> None:
    plan = FaultPlan()
    plan.add(Fault(FaultKind.LATENCY, delay=0.2))
    sim = start_simulator({PUBLIC: PRIVATE}, clock=FakeClock(float(NOW)), faults=plan)
    started = time.monotonic()
    assert requests.post(sim.url, data=usage_call(), timeout=5).json()["RetCode"] == 0
    assert time.monotonic() - started >= 0.2


def test_many_callers_at_once_are_all_answered(start_simulator: StartSimulator) -> None:
    sim = start_simulator({PUBLIC: PRIVATE}, clock=FakeClock(float(NOW)))
    address = urlsplit(sim.url)
    conns = [socket.create_connection((address.hostname, address.port), timeout=5)
             for _ in range(32)]
    try:
        for conn in conns:
            conn.sendall(b"GET /_sim/stats HTTP/1.1\r\nHost: x\r\n\r\n")
        assert all(conn.recv(12) == b"HTTP/1.1 200" for conn in conns)
    finally:
        for conn in conns:
            conn.close()


def test_servers_started_at_once_each_get_a_free_port() -> None:
    first, second = server(), server()
    with first, second:
        assert first.url != second.url
        for sim in (first, second):
            assert requests.get(f"{sim.url}_sim/stats", timeout=5).status_code == 200


def test_a_call_held_at_stop_is_closed_not_reset(caplog: pytest.LogCaptureFixture) -> None:
    plan = FaultPlan()
    plan.add(Fault(FaultKind.TIMEOUT, delay=30, then="answer"))
    sim = server(faults=plan)
    address = urlsplit(sim.start())
    body = "&".join(f"{k}={v}" for k, v in usage_call().items()).encode()
    head = (f"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection((address.hostname, address.port), timeout=5) as conn:
        conn.sendall(head + body)
        deadline = time.monotonic() + 5
        while not sim.stats().calls and time.monotonic() < deadline:
            time.sleep(0.01)  # poll until the request is being held
        with caplog.at_level(logging.DEBUG, logger="exporter.simulator.server"):
            sim.stop()
            assert conn.recv(65536) == b""
    assert caplog.records == []  # let go on purpose, not ended by an error


def raw_request(sim: SimulatorServer, request: bytes) -> bytes:
    address = urlsplit(sim.url)
    with socket.create_connection((address.hostname, address.port), timeout=5) as conn:
        conn.sendall(request)
        return conn.recv(65536)


def test_a_negative_content_length_reads_no_body(start_simulator: StartSimulator) -> None:
    sim = start_simulator({PUBLIC: PRIVATE}, clock=FakeClock(float(NOW)))
    request = b"DELETE /_sim/stats HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"
    assert raw_request(sim, request).startswith(b"HTTP/1.1 200")


def test_only_the_reset_connection_is_reset(start_simulator: StartSimulator) -> None:
    plan = FaultPlan()
    plan.add(Fault(FaultKind.RESET), times=1)
    sim = start_simulator({PUBLIC: PRIVATE}, clock=FakeClock(float(NOW)), faults=plan)
    body = "&".join(f"{k}={v}" for k, v in usage_call().items()).encode()
    request = (f"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
               f"Content-Type: application/x-www-form-urlencoded\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    with pytest.raises(ConnectionResetError):
        raw_request(sim, request)
    for _ in range(20):
        assert raw_request(sim, request).startswith(b"HTTP/1.1 200")

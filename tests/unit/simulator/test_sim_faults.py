"""Every injected fault produces its documented wire behaviour."""

import json
import re
import socket
import threading
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import requests

from exporter.api.signing import sign
from exporter.core.clock import FakeClock
from exporter.simulator import EventStore, Fault, FaultKind, FaultPlan, SimulatorServer
from exporter.simulator.faults import RETCODE_MESSAGES, retcode_message, rule_from_json
from exporter.simulator.store import Event
from exporter.simulator.usage import Usage
from tests.conftest import StartSimulator

#: The answer's Data fields as api.md names them: spelt here, not taken from either side.
DATA_FIELDS = ("InTotal", "OutTotal", "Total", "RequestTotal", "ImageGenerationNum")

PUBLIC, PRIVATE = "pub-key", "priv-key"
NOW = 1_700_003_600
TRUE = Usage(1200, 300, 1500, 4, 2)


@pytest.fixture
def plan() -> FaultPlan:
    return FaultPlan(seed=11)


@pytest.fixture
def sim(plan: FaultPlan, start_simulator: StartSimulator) -> SimulatorServer:
    store = EventStore()
    store.add(Event(NOW - 100, NOW - 100.0, "", "k", "m", TRUE))
    return start_simulator({PUBLIC: PRIVATE}, store=store, clock=FakeClock(float(NOW)),
                           faults=plan)


def signed(key: str = "k", model: str = "m") -> dict[str, str]:
    p = {"Action": "GetUMInferTokenUsage", "KeyId": key, "Model": model,
         "StartTime": NOW - 3600, "EndTime": NOW}
    return sign(p, PUBLIC, PRIVATE)


def post(sim: SimulatorServer, timeout: float = 5, **kw: str) -> requests.Response:
    return requests.post(sim.url, data=signed(**kw), timeout=timeout)


def data(sim: SimulatorServer) -> dict[str, Any]:
    body: dict[str, Any] = post(sim).json()
    assert body["RetCode"] in (0, "0")
    return body


def raw_exchange(sim: SimulatorServer) -> bytes:
    """Send one request on a bare socket and read until the server closes."""
    address = urlsplit(sim.url)
    body = urlencode(signed()).encode()
    head = (f"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection((address.hostname, address.port), timeout=5) as conn:
        conn.sendall(head + body)
        return conn.recv(65536)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_http_errors(sim: SimulatorServer, plan: FaultPlan, status: int) -> None:
    plan.add(Fault(FaultKind.HTTP, status=status))
    assert post(sim).status_code == status


def test_429_carries_retry_after(sim: SimulatorServer, plan: FaultPlan) -> None:
    plan.add(Fault(FaultKind.HTTP, status=429, retry_after=7))
    reply = post(sim)
    assert (reply.status_code, reply.headers["Retry-After"]) == (429, "7")


@pytest.mark.parametrize("code", [110, 130, 150, 153, 160, 161, 170, 171, 172, 174, 220, 230,
                                  292, 294, 299, 2001, 2999])
def test_retcodes(sim: SimulatorServer, plan: FaultPlan, code: int) -> None:
    plan.add(Fault(FaultKind.RETCODE, retcode=code))
    reply = post(sim)
    body = reply.json()
    assert (reply.status_code, body["RetCode"]) == (200, code)
    assert body["Message"] == RETCODE_MESSAGES.get(code, f"service error {code}")
    assert "Data" not in body


def test_retcode_with_custom_message(sim: SimulatorServer, plan: FaultPlan) -> None:
    plan.add(Fault(FaultKind.RETCODE, retcode=299, message="no iam:GetUsage"))
    assert post(sim).json()["Message"] == "no iam:GetUsage"


def test_timeout_then_drop(sim: SimulatorServer, plan: FaultPlan) -> None:
    plan.add(Fault(FaultKind.TIMEOUT, delay=0.5, then="drop"))
    with pytest.raises(requests.ReadTimeout):
        post(sim, timeout=0.2)
    plan.add(Fault(FaultKind.TIMEOUT, delay=0.2, then="drop"))
    started = time.monotonic()
    with pytest.raises(requests.ConnectionError):
        post(sim)
    assert time.monotonic() - started >= 0.2


def test_timeout_then_answer(sim: SimulatorServer, plan: FaultPlan) -> None:
    plan.add(Fault(FaultKind.TIMEOUT, delay=0.2, then="answer"))
    started = time.monotonic()
    assert post(sim).json()["RetCode"] == 0
    assert time.monotonic() - started >= 0.2


def test_reset_sends_rst_and_close_sends_eof(sim: SimulatorServer, plan: FaultPlan) -> None:
    plan.add(Fault(FaultKind.RESET), times=1)
    with pytest.raises(ConnectionResetError):
        raw_exchange(sim)
    plan.add(Fault(FaultKind.CLOSE), times=1)
    assert raw_exchange(sim) == b""
    assert raw_exchange(sim).startswith(b"HTTP/1.1 200")
    assert sim.stats().by_status == {0: 2, 200: 1}


def test_malformed_json(sim: SimulatorServer, plan: FaultPlan) -> None:
    plan.add(Fault(FaultKind.MALFORMED))
    reply = post(sim)
    assert reply.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(reply.text)


@pytest.mark.parametrize(("garbage", "kind"), [("string", str), ("float", float), ("bool", bool)])
def test_wrong_types(sim: SimulatorServer, plan: FaultPlan, garbage: str, kind: type) -> None:
    plan.add(Fault(FaultKind.WRONG_TYPE, garbage=garbage))
    body = data(sim)["Data"]
    for name in DATA_FIELDS:
        assert type(body[name]) is kind
    assert all(type(row["Count"]) is kind for row in body["Usages"])
    if garbage == "string":
        with pytest.raises(ValueError, match="invalid literal"):
            int(body["Total"])


def test_negative_and_absurd_numbers(sim: SimulatorServer, plan: FaultPlan) -> None:
    plan.add(Fault(FaultKind.NEGATIVE), times=1)
    plan.add(Fault(FaultKind.ABSURD), times=1)
    negative, absurd = data(sim)["Data"], data(sim)["Data"]
    assert all(negative[n] < 0 for n in DATA_FIELDS)
    assert all(absurd[n] > 2**63 for n in DATA_FIELDS)
    assert all(r["Count"] > 2**63 for r in absurd["Usages"])


def test_shape_faults(sim: SimulatorServer, plan: FaultPlan) -> None:
    plan.add(Fault(FaultKind.USAGES_OBJECT), times=1)
    plan.add(Fault(FaultKind.EMPTY_DATA), times=1)
    usages = data(sim)["Data"]["Usages"]
    assert isinstance(usages, dict)
    assert set(usages) == {"Type", "Count", "Timestamp", "Model"}
    assert data(sim)["Data"] == {}


def test_lenient_strings_keep_the_true_values(sim: SimulatorServer, plan: FaultPlan) -> None:
    plan.add(Fault(FaultKind.STRING_RETCODE), times=1)
    plan.add(Fault(FaultKind.STRING_COUNTS), times=1)
    first, second = data(sim), data(sim)
    assert first["RetCode"] == "0"
    assert Usage(*(first["Data"][n] for n in DATA_FIELDS)) == TRUE
    assert Usage(*(int(second["Data"][n]) for n in DATA_FIELDS)) == TRUE
    assert all(isinstance(second["Data"][n], str) for n in DATA_FIELDS)


def test_latency_rule_and_global_latency(sim: SimulatorServer, plan: FaultPlan) -> None:
    plan.add(Fault(FaultKind.LATENCY, delay=0.15), times=1)
    plan.add(Fault(FaultKind.RETCODE, retcode=153), times=1)
    started = time.monotonic()
    assert post(sim).json()["RetCode"] == 153  # latency combines with the next fault
    assert time.monotonic() - started >= 0.15
    plan.set_latency(0.1, 0.05)
    started = time.monotonic()
    assert post(sim).json()["RetCode"] == 0
    assert 0.1 <= time.monotonic() - started < 2


def test_matching_by_key_model_times_and_removal(sim: SimulatorServer, plan: FaultPlan) -> None:
    plan.add(Fault(FaultKind.RETCODE, retcode=299), key="k", model="other")
    second = plan.add(Fault(FaultKind.RETCODE, retcode=292), key="k2")
    plan.add(Fault(FaultKind.RETCODE, retcode=150), model="m", times=2)
    codes = [post(sim, model=m).json()["RetCode"] for m in ("other", "m", "m", "m")]
    assert codes == [299, 150, 150, 0]
    assert post(sim, key="k2").json()["RetCode"] == 292
    assert plan.remove(second)
    assert not plan.remove(second)
    assert len(plan) == 1


def test_matching_by_action(sim: SimulatorServer, plan: FaultPlan) -> None:
    """A rule for one action (e.g. discovery's listing) leaves the others alone."""
    rule = {"kind": "retcode", "retcode": 150, "action": "ListUMInferAPIKey"}
    added = requests.post(f"{sim.url}_sim/faults", json=rule, timeout=5)
    assert added.status_code == 200, added.text
    listing = sign({"Action": "ListUMInferAPIKey", "ProjectId": "p"}, PUBLIC, PRIVATE)
    assert requests.post(sim.url, data=listing, timeout=5).json()["RetCode"] == 150
    assert post(sim).json()["RetCode"] == 0
    assert len(plan) == 1


def test_probability_is_seeded(plan: FaultPlan) -> None:
    def fired(seed: int) -> list[bool]:
        p = FaultPlan(seed)
        p.add(Fault(FaultKind.CLOSE), probability=0.3)
        return [bool(p.pick("k", "m")) for _ in range(200)]

    assert fired(1) == fired(1)
    assert 30 < sum(fired(1)) < 90
    plan.add(Fault(FaultKind.CLOSE), probability=0.0)
    assert not any(plan.pick("k", "m") for _ in range(50))


def test_stop_releases_held_requests(plan: FaultPlan) -> None:
    server = SimulatorServer(EventStore(), {PUBLIC: PRIVATE}, FakeClock(float(NOW)), plan)
    server.start()
    plan.add(Fault(FaultKind.TIMEOUT, delay=30, then="answer"))
    errors: list[BaseException] = []

    def held_call() -> None:
        try:
            post(server, timeout=20)
        except requests.ConnectionError as exc:
            errors.append(exc)

    caller = threading.Thread(target=held_call)
    caller.start()
    while not server.stats().calls:  # wait until the request is being held
        time.sleep(0.01)
    started = time.monotonic()
    server.stop()
    caller.join(10)
    assert time.monotonic() - started < 5
    assert len(errors) == 1  # dropped, not answered late


def test_a_bare_fault_of_each_kind_does_the_common_thing(
        sim: SimulatorServer, plan: FaultPlan) -> None:
    plan.add(Fault(FaultKind.HTTP), times=1)
    plan.add(Fault(FaultKind.RETCODE), times=1)
    plan.add(Fault(FaultKind.WRONG_TYPE), times=1)
    assert post(sim).status_code == 500
    assert post(sim).json() == {"RetCode": 150, "Action": "GetUMInferTokenUsageResponse",
                                "Message": "Service unavailable"}
    assert data(sim)["Data"]["Total"] == "1500abc"
    plan.add(Fault(FaultKind.TIMEOUT, delay=0.01), times=1)
    with pytest.raises(requests.ConnectionError):
        post(sim)


def test_a_service_specific_retcode_gets_a_generic_message() -> None:
    assert retcode_message(2001) == "service error 2001"
    assert retcode_message(171) == "Signature verification failed"


@pytest.mark.parametrize(("fields", "message"), [
    ({"then": "wait"}, "then must be 'drop' or 'answer', got 'wait'"),
    ({"garbage": "null"}, "garbage must be 'string', 'float' or 'bool', got 'null'"),
    ({"kind": FaultKind.HTTP, "status": 399},
     "status must be an HTTP error status (400-599), got 399"),
    ({"kind": FaultKind.HTTP, "status": 600},
     "status must be an HTTP error status (400-599), got 600"),
    ({"repeat": 0}, "repeat must be at least 1, got 0"),
    ({"delay": -0.1}, "delay must not be negative, got -0.1"),
], ids=["then", "garbage", "status-399", "status-600", "repeat", "delay"])
def test_a_bad_fault_is_refused_when_made_saying_why(fields: dict[str, Any], message: str
                                                    ) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        Fault(**{"kind": FaultKind.CRAFTED, **fields})


def test_the_edges_of_each_fault_field_are_accepted() -> None:
    for status in (400, 599):
        assert Fault(FaultKind.HTTP, status=status).status == status
    assert Fault(FaultKind.CRAFTED, status=200, repeat=1, delay=0.0, then="answer",
                 garbage="float").status == 200
    assert Fault(FaultKind.WRONG_TYPE, garbage="bool").garbage == "bool"


def test_rules_come_from_admin_json_or_say_what_is_wrong() -> None:
    fault, match = rule_from_json({"kind": "http", "status": 503, "retry_after": 2,
                                   "key": "k", "model": "m", "times": 3, "probability": 0.5,
                                   "action": "GetUMInferTokenUsage"})
    assert fault == Fault(FaultKind.HTTP, status=503, retry_after=2)
    assert match == {"key": "k", "model": "m", "times": 3, "probability": 0.5,
                     "action": "GetUMInferTokenUsage"}
    assert rule_from_json({"kind": "reset"}) == (Fault(FaultKind.RESET), {})
    with pytest.raises(ValueError, match=r"^unknown fault fields: colour, keys$"):
        rule_from_json({"kind": "reset", "keys": "k", "colour": "red"})
    kinds = ("http, timeout, reset, close, retcode, malformed, wrong_type, negative, absurd, "
             "usages_object, empty_data, string_retcode, string_counts, latency, crafted")
    with pytest.raises(ValueError, match=f"^kind must be one of: {kinds}$"):
        rule_from_json({"status": 500})
    with pytest.raises(ValueError, match="repeat must be at least 1"):
        rule_from_json({"kind": "crafted", "repeat": 0})


def test_latency_rules_add_up_before_one_other_fault_and_each_spends_a_time() -> None:
    plan = FaultPlan()
    slow, slower = Fault(FaultKind.LATENCY, delay=1), Fault(FaultKind.LATENCY, delay=2)
    reset, close = Fault(FaultKind.RESET), Fault(FaultKind.CLOSE)
    plan.add(slow, times=1)
    plan.add(reset, key="k", times=1)
    plan.add(slower)
    plan.add(close)
    assert plan.pick("other", "m") == [slow, slower, close]
    assert plan.pick("k", "m") == [reset]
    assert plan.pick("k", "m") == [slower, close]
    assert len(plan) == 2
    assert plan.clear() == 2
    assert plan.pick("k", "m") == []
    assert plan.clear() == 0


def test_a_rule_matches_its_key_model_and_action_only() -> None:
    plan = FaultPlan()
    plan.add(Fault(FaultKind.RESET), key="k", model="m", action="A")
    assert plan.pick("k", "m", "A") == [Fault(FaultKind.RESET)]
    for key, model, action in (("x", "m", "A"), ("k", "x", "A"), ("k", "m", "B"),
                               ("k", "m", None), (None, "m", "A")):
        assert plan.pick(key, model, action) == []


def test_a_rule_for_some_times_ends_after_them() -> None:
    plan = FaultPlan()
    rule = plan.add(Fault(FaultKind.CLOSE), times=2)
    assert [len(plan.pick("k", "m")) for _ in range(3)] == [1, 1, 0]
    assert not plan.remove(rule)
    assert plan.add(Fault(FaultKind.CLOSE)) == rule + 1


def test_global_latency_is_fixed_plus_seeded_jitter_and_never_negative() -> None:
    plan = FaultPlan(seed=3)
    assert plan.latency() == 0
    plan.set_latency(0.5)
    assert [plan.latency() for _ in range(3)] == [0.5] * 3
    plan.set_latency(0.5, 0.25)
    draws = [plan.latency() for _ in range(200)]
    assert all(0.5 <= d <= 0.75 for d in draws)
    assert max(draws) - min(draws) > 0.2
    again = FaultPlan(seed=3)
    again.set_latency(0.5, 0.25)
    assert [again.latency() for _ in range(200)] == draws
    plan.set_latency(-1, -1)
    assert plan.latency() == 0


def test_a_plan_without_a_seed_is_seeded_with_zero_and_numbers_rules_from_one() -> None:
    unseeded, zero, one = FaultPlan(), FaultPlan(0), FaultPlan(1)
    for p in (unseeded, zero, one):
        p.set_latency(0, 1)
    draws = [unseeded.latency() for _ in range(5)]
    assert draws == [zero.latency() for _ in range(5)]
    assert draws != [one.latency() for _ in range(5)]
    assert [unseeded.add(Fault(FaultKind.CLOSE)) for _ in range(3)] == [1, 2, 3]

"""The simulator over real loopback HTTP: gateway checks, window semantics, admin, stats."""

import json
from typing import Any

import pytest
import requests
import yaml

from exporter.api.signing import sign
from exporter.core.clock import FakeClock
from exporter.simulator import EventStore, SimulatorServer, build_simulator
from exporter.simulator.__main__ import config_snippet, parse_args
from exporter.simulator.build import DEMO_MODELS, demo_targets
from exporter.simulator.store import Event
from exporter.simulator.usage import Usage
from tests.conftest import StartSimulator

#: The answer's Data fields as api.md names them: spelt here, not taken from either side.
DATA_FIELDS = ("InTotal", "OutTotal", "Total", "RequestTotal", "ImageGenerationNum")

PUBLIC, PRIVATE = "pub-key", "priv-key"
NOW = 1_700_003_600
A = NOW - 3000


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(float(NOW))


@pytest.fixture
def sim(clock: FakeClock, start_simulator: StartSimulator) -> SimulatorServer:
    return start_simulator({PUBLIC: PRIVATE}, clock=clock)


def params(start: int = A, end: int = NOW, **extra: object) -> dict[str, object]:
    base = {"Action": "GetUMInferTokenUsage", "ProjectId": "p", "KeyId": "k", "Model": "m"}
    return {**base, "StartTime": start, "EndTime": end, **extra}


def call(sim: SimulatorServer, p: dict[str, object], private: str = PRIVATE) -> dict[str, Any]:
    reply = requests.post(sim.url, data=sign(p, PUBLIC, private), timeout=5)
    assert reply.status_code == 200
    body: dict[str, Any] = reply.json()
    return body


def add(sim: SimulatorServer, ts: int, inp: int, out: int, visible: float | None = None,
        model: str = "m") -> None:
    at = float(ts) if visible is None else visible
    sim.store.add(Event(ts, at, "p", "k", model, Usage(inp, out, inp + out, 1, 0)))


def totals(body: dict[str, Any]) -> Usage:
    return Usage(*(body["Data"][api] for api in DATA_FIELDS))


def test_signed_call_returns_the_documented_envelope(sim: SimulatorServer) -> None:
    add(sim, A + 10, 100, 30)
    body = call(sim, params())
    assert body["RetCode"] == 0
    assert body["Action"] == "GetUMInferTokenUsageResponse"
    assert totals(body) == Usage(100, 30, 130, 1, 0)
    assert {"Type": "total", "Count": 130, "Timestamp": A + 10 - (A + 10) % 60, "Model": "m"} in (
        body["Data"]["Usages"]
    )


@pytest.mark.parametrize(
    ("mutate", "retcode", "message"),
    [
        (lambda s: {**s, "Signature": "0" * 40}, 171, "Signature verification failed"),
        (lambda s: {**s, "KeyId": "other"}, 171, "Signature verification failed"),
        (lambda s: {k: v for k, v in s.items() if k != "Signature"}, 170, "Missing signature"),
        (lambda s: {**s, "PublicKey": "nobody"}, 172, "user not exist"),
        (lambda s: {k: v for k, v in s.items() if k != "PublicKey"}, 172, "user not exist"),
    ],
)
def test_authentication_failures(sim: SimulatorServer, mutate: Any, retcode: int,
                                 message: str) -> None:
    signed = mutate(sign(params(), PUBLIC, PRIVATE))
    body = requests.post(sim.url, data=signed, timeout=5).json()
    assert (body["RetCode"], body["Message"]) == (retcode, message)
    assert "Data" not in body


def test_wrong_private_key_is_171(sim: SimulatorServer) -> None:
    assert call(sim, params(), private="guess")["RetCode"] == 171


@pytest.mark.parametrize(
    ("p", "retcode"),
    [
        ({"KeyId": "k"}, 160),
        ({"Action": "GetUMInferTokenUsageV9"}, 161),
        ({k: v for k, v in params().items() if k != "KeyId"}, 220),
        ({k: v for k, v in params().items() if k != "StartTime"}, 220),
        ({k: v for k, v in params().items() if k != "EndTime"}, 220),
        (params(start="yesterday"), 230),  # type: ignore[arg-type]
        (params(start=NOW, end=NOW - 1), 230),
        (params(start=NOW - 86400 * 10 - 1), 110),
    ],
)
def test_gateway_checks(sim: SimulatorServer, p: dict[str, object], retcode: int) -> None:
    assert call(sim, p)["RetCode"] == retcode


def test_ten_day_window_is_still_answered(sim: SimulatorServer) -> None:
    assert call(sim, params(start=NOW - 86400 * 10))["RetCode"] == 0


def test_get_json_and_go_sdk_url_action(sim: SimulatorServer) -> None:
    add(sim, A, 7, 3)
    signed = sign(params(), PUBLIC, PRIVATE)
    via_get = requests.get(sim.url, params=signed, timeout=5).json()
    via_json = requests.post(sim.url, json=sign(params(), PUBLIC, PRIVATE), timeout=5).json()
    go_style = requests.post(f"{sim.url}?Action=GetUMInferTokenUsage", data=signed, timeout=5)
    for body in (via_get, via_json, go_style.json()):
        assert body["RetCode"] == 0
        assert totals(body).tokens == 10


def test_adjacent_inclusive_windows_sum_to_the_whole(sim: SimulatorServer) -> None:
    b, c = A + 100, A + 200
    for ts, n in ((A, 1), (b, 10), (b + 1, 100), (c, 1000), (c + 1, 10000)):
        add(sim, ts, n, 0)
    left, right = call(sim, params(A, b)), call(sim, params(b + 1, c))
    whole = call(sim, params(A, c))
    assert totals(left).input_tokens == 11
    assert totals(right).input_tokens == 1100
    assert totals(left) + totals(right) == totals(whole)


def test_late_usage_appears_when_the_clock_reaches_it(sim: SimulatorServer,
                                                      clock: FakeClock) -> None:
    add(sim, NOW - 5, 50, 5, visible=NOW + 20)
    assert totals(call(sim, params())) == Usage()
    clock.advance(20)
    assert totals(call(sim, params())) == Usage(50, 5, 55, 1, 0)


def test_rows_agree_with_totals_across_models(sim: SimulatorServer) -> None:
    for i in range(50):
        add(sim, A + i * 37, i, i % 7, model="m" if i % 2 else "n")
    body = call(sim, {k: v for k, v in params().items() if k != "Model"})
    rows = body["Data"]["Usages"]
    assert {r["Model"] for r in rows} == {"m", "n"}
    kinds = dict(zip(("in", "out", "total", "request_count", "image_generation"),
                     DATA_FIELDS, strict=True))
    for kind, api in kinds.items():
        assert sum(r["Count"] for r in rows if r["Type"] == kind) == body["Data"][api]
    one_model = call(sim, params())
    assert 0 < totals(one_model).requests < totals(body).requests


def test_stats_count_calls_and_usage_windows(sim: SimulatorServer) -> None:
    call(sim, params(A, A + 59))
    call(sim, params(), private="guess")
    call(sim, {"KeyId": "k"})
    stats = sim.stats()
    assert stats.by_action == {"GetUMInferTokenUsage": 2, "": 1}
    assert stats.by_retcode == {0: 1, 171: 1, 160: 1}
    assert stats.usage_calls == ((A, A + 59, "k", "m"),)
    assert stats.calls == 3
    sim.reset_stats()
    assert sim.stats().calls == 0


def test_admin_inject_truth_and_stats(sim: SimulatorServer, clock: FakeClock) -> None:
    events = [
        {"project": "p", "key": "k", "model": "m", "ts": A, "input_tokens": 5,
         "output_tokens": 2, "requests": 1},
        {"project": "p", "key": "k", "model": "m", "ts": NOW - 10, "delay": 100,
         "input_tokens": 40, "output_tokens": 0, "requests": 2, "image_generations": 3},
    ]
    reply = requests.post(f"{sim.url}_sim/usage", json=events, timeout=5)
    assert reply.json() == {"added": 2}
    query: dict[str, str | int] = {"project": "p", "key": "k", "model": "m", "start": A, "end": NOW}
    truth = requests.get(f"{sim.url}_sim/truth", params=query, timeout=5).json()
    assert truth["visible"] == Usage(5, 2, 7, 1, 0).as_dict()
    assert truth["total"] == Usage(45, 2, 47, 3, 3).as_dict()
    assert totals(call(sim, params())) == Usage(5, 2, 7, 1, 0)
    clock.advance(100)
    assert totals(call(sim, params(end=NOW + 100))) == Usage(45, 2, 47, 3, 3)
    stats = requests.get(f"{sim.url}_sim/stats", timeout=5).json()
    assert stats["by_retcode"] == {"0": 2}
    assert stats["usage_calls"] == [[A, NOW, "k", "m"], [A, NOW + 100, "k", "m"]]
    assert requests.delete(f"{sim.url}_sim/stats", timeout=5).status_code == 200
    assert sim.stats().calls == 0


def test_admin_faults_round_trip(sim: SimulatorServer) -> None:
    rule = {"kind": "retcode", "retcode": 153, "key": "k", "times": 1}
    assert requests.post(f"{sim.url}_sim/faults", json=rule, timeout=5).json() == {"id": 1}
    assert call(sim, params())["RetCode"] == 153
    assert call(sim, params())["RetCode"] == 0
    requests.post(f"{sim.url}_sim/faults", json={"kind": "empty_data"}, timeout=5)
    assert requests.delete(f"{sim.url}_sim/faults", timeout=5).json() == {"removed": 1}
    assert "Usages" in call(sim, params())["Data"]


@pytest.mark.parametrize(
    ("method", "path", "payload", "status", "error"),
    [
        ("POST", "_sim/faults", {"kind": "meteor"}, 400, "kind must be one of"),
        ("POST", "_sim/faults", {"kind": "http", "colour": 1}, 400, "unknown fault fields: colour"),
        ("POST", "_sim/faults", {"kind": "timeout", "then": "x"}, 400, "then must be"),
        ("POST", "_sim/usage", [{"key": "k", "model": "m", "ts": 1, "requests": -1}], 400,
         "requests must be an integer"),
        ("POST", "_sim/usage", {"key": "k"}, 400, "send a JSON list"),
        ("GET", "_sim/truth", None, 400, "missing query parameters: key, model, start, end"),
        ("GET", "_sim/nothing", None, 404, "no admin endpoint GET /_sim/nothing"),
    ],
)
def test_admin_rejects_bad_requests(sim: SimulatorServer, method: str, path: str,
                                    payload: object, status: int, error: str) -> None:
    reply = requests.request(method, f"{sim.url}{path}", json=payload, timeout=5)
    assert reply.status_code == status
    assert error in reply.json()["error"]


def test_built_simulator_serves_seeded_traffic(clock: FakeClock) -> None:
    with build_simulator(9, keys=2, models=2, clock=clock, backfill=3600, tick=10,
                         public_key=PUBLIC, private_key=PRIVATE) as server:
        target = server.traffic.targets[0] if server.traffic else None
        assert target is not None
        p = params(NOW - 3600, NOW, ProjectId=target.project, KeyId=target.key,
                   Model=target.model)
        before = totals(call(server, p))
        assert before.requests > 0
        assert before.tokens == before.input_tokens + before.output_tokens
        clock.advance(600)
        after = totals(call(server, params(NOW - 3600, NOW + 600, ProjectId=target.project,
                                           KeyId=target.key, Model=target.model)))
        assert after.requests > before.requests


def test_url_before_start_says_what_to_do() -> None:
    server = SimulatorServer(EventStore(), {}, FakeClock())
    with pytest.raises(RuntimeError, match="call start"):
        _ = server.url
    json.dumps(server.stats().as_json())


def test_cli_prints_a_usable_config_snippet() -> None:
    args = parse_args(["--listen", "127.0.0.1:0", "--backfill", "2h", "--keys", "1"])
    assert (args.listen, args.backfill, args.keys) == (("127.0.0.1", 0), 7200.0, 1)
    snippet = yaml.safe_load(config_snippet("http://127.0.0.1:1/", "pub", demo_targets(1, 2)))
    assert snippet["api"]["endpoint"] == "http://127.0.0.1:1/"
    assert [t["model"] for t in snippet["targets"]] == list(DEMO_MODELS[:2])
    assert PRIVATE not in json.dumps(snippet)


def test_cli_rejects_a_bad_listen_address(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--listen", "nowhere"])
    assert "expected HOST:PORT" in capsys.readouterr().err


def test_cli_help_shows_every_default_and_the_demo_key_pair(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for default in ("127.0.0.1:9867", "(default: 24h)", "(default: 1m)", "(default: 0s)",
                    "(default: exact)", "(default: 3)", "(default: 2)"):
        assert default in shown
    assert "'demo-public'" in shown
    assert "'demo-private'" in shown.replace("demo- private", "demo-private")
    defaults = parse_args([])
    assert (defaults.listen, defaults.backfill, defaults.bucket, defaults.bucket_utc_offset) == \
        (("127.0.0.1", 9867), 86400.0, 60.0, 0.0)

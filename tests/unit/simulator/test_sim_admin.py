"""The ``/_sim/`` admin endpoints, called as the HTTP handler calls them: answers, effects and
the message each bad request gets."""

import json
from typing import Any

import pytest

from exporter.core.clock import FakeClock
from exporter.simulator import (
    Catalog,
    EventStore,
    Fault,
    FaultKind,
    FaultPlan,
    SimKey,
    SimModel,
    TargetSpec,
    TrafficGenerator,
)
from exporter.simulator.admin import Admin, event_from_json
from exporter.simulator.stats import CallStats
from exporter.simulator.store import Event
from exporter.simulator.usage import Usage

NOW = 1_700_003_600
MAX = 2**63 - 1


class Sim:
    """An Admin with every part it steers in reach."""

    def __init__(self, traffic: bool = False) -> None:
        self.store, self.faults, self.stats = EventStore(), FaultPlan(), CallStats()
        self.clock, self.catalog = FakeClock(float(NOW)), Catalog()
        self.traffic = (TrafficGenerator(self.store, [TargetSpec("t", "m", "p", rate=20.0)], 1,
                                         self.clock, late_fraction=0.0) if traffic else None)
        self.admin = Admin(self.store, self.faults, self.stats, self.clock, self.traffic,
                           catalog=self.catalog)

    def __call__(self, method: str, path: str, payload: Any = None, query: str = "",
                 ) -> tuple[int, dict[str, Any]]:
        body = b"" if payload is None else json.dumps(payload).encode()
        return self.admin.handle(method, path, query, body)

    def ok(self, method: str, path: str, payload: Any = None, query: str = "") -> dict[str, Any]:
        status, answer = self(method, path, payload, query)
        assert status == 200, answer
        return answer

    def error(self, method: str, path: str, payload: Any = None, query: str = "") -> str:
        status, answer = self(method, path, payload, query)
        assert status == 400, answer
        assert list(answer) == ["error"]
        message: str = answer["error"]
        return message


@pytest.fixture
def sim() -> Sim:
    return Sim()


# -- routing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [("GET", "/_sim/nothing"), ("GET", "/_sim/usage"),
                                              ("PUT", "/_sim/stats"), ("GET", "/_sim/")],
                         ids=["unknown-path", "wrong-method", "unknown-method", "root"])
def test_an_unknown_endpoint_is_404_naming_it(sim: Sim, method: str, path: str) -> None:
    assert sim(method, path) == (404, {"error": f"no admin endpoint {method} {path}"})


def test_a_trailing_slash_reaches_the_endpoint(sim: Sim) -> None:
    assert sim("DELETE", "/_sim/stats/") == (200, {})


@pytest.mark.parametrize(("path", "status"), [("/_sim/statsX", 404), ("/_sim/stats/x", 404),
                                              ("/_sim/stats//", 200)],
                         ids=["longer-name", "deeper-path", "two-slashes"])
def test_a_path_is_matched_whole_but_trailing_slashes(sim: Sim, path: str, status: int) -> None:
    assert sim("GET", path)[0] == status


def test_a_body_that_is_no_json_is_400_with_the_parsers_word(sim: Sim) -> None:
    status, answer = sim.admin.handle("POST", "/_sim/usage", "", b"[{")
    assert status == 400
    assert "Expecting" in answer["error"]


def test_a_blank_body_is_no_payload(sim: Sim) -> None:
    status, answer = sim.admin.handle("POST", "/_sim/latency", "", b" \n")
    assert (status, answer) == (400, {"error": 'send {"fixed": seconds, "jitter": seconds}'})


# -- usage -----------------------------------------------------------------------------------


def test_usage_events_are_added_as_a_list(sim: Sim) -> None:
    events = [{"project": "p", "key": "k", "model": "m", "ts": NOW - 10, "input_tokens": 5,
               "output_tokens": 2, "requests": 1, "image_generations": 3},
              {"key": "k", "model": "m", "ts": NOW - 5, "requests": 2}]
    assert sim.ok("POST", "/_sim/usage", events) == {"added": 2}
    assert sim.store.truth("p", "k", "m", 0, NOW) == Usage(5, 2, 7, 1, 3)
    assert sim.store.truth("", "k", "m", 0, NOW) == Usage(0, 0, 0, 2, 0)


def test_usage_events_are_added_in_an_object(sim: Sim) -> None:
    events = {"events": [{"key": "k", "model": "m", "ts": NOW, "output_tokens": 4}]}
    assert sim.ok("POST", "/_sim/usage", events) == {"added": 1}
    assert sim.store.truth("", "k", "m", NOW, NOW) == Usage(0, 4, 4, 0, 0)
    assert sim.ok("POST", "/_sim/usage", {"events": []}) == {"added": 0}


@pytest.mark.parametrize("payload", [None, {"key": "k"}, {"events": "x"}, [1], [{}, "e"]],
                         ids=["nothing", "one-event", "events-not-a-list", "number", "mixed"])
def test_usage_that_is_no_list_of_objects_is_refused(sim: Sim, payload: Any) -> None:
    assert sim.error("POST", "/_sim/usage", payload) == (
        'send a JSON list of event objects (or {"events": [...]})')
    assert len(sim.store) == 0


def test_one_bad_event_adds_none(sim: Sim) -> None:
    events = [{"key": "k", "model": "m", "ts": NOW}, {"key": "k", "model": "m", "ts": "now"}]
    assert sim.error("POST", "/_sim/usage", events) == "ts must be integer Unix seconds, got 'now'"
    assert len(sim.store) == 0


def test_an_event_is_visible_when_it_happens_by_default() -> None:
    assert event_from_json({"key": "k", "model": "m", "ts": 100}) == Event(
        100, 100.0, "", "k", "m", Usage())


def test_an_event_is_visible_after_its_delay_or_at_its_visible_at() -> None:
    late = event_from_json({"project": "p", "key": "k", "model": "m", "ts": 100, "delay": 2.5})
    assert (late.visible_at, late.project) == (102.5, "p")
    pinned = event_from_json({"key": "k", "model": "m", "ts": 100, "delay": 9, "visible_at": 150})
    assert pinned.visible_at == 150.0


def test_an_events_counts_and_its_total() -> None:
    event = event_from_json({"key": "k", "model": "m", "ts": 1, "input_tokens": MAX - 1,
                             "output_tokens": 1, "requests": MAX, "image_generations": 0})
    assert event.totals == Usage(MAX - 1, 1, MAX, MAX, 0)


@pytest.mark.parametrize("item", [{"model": "m", "ts": 1}, {"key": 1, "model": "m", "ts": 1},
                                  {"key": "k", "ts": 1}, {"key": "k", "model": None, "ts": 1}],
                         ids=["no-key", "number-key", "no-model", "null-model"])
def test_an_event_needs_a_key_and_a_model(sim: Sim, item: dict[str, Any]) -> None:
    assert sim.error("POST", "/_sim/usage", [item]) == (
        "each event needs string fields key and model")


@pytest.mark.parametrize(("ts", "shown"), [(None, "None"), (True, "True"), (1.5, "1.5"),
                                           ("1", "'1'")],
                         ids=["missing", "bool", "float", "string"])
def test_an_event_needs_integer_seconds(sim: Sim, ts: Any, shown: str) -> None:
    item = {"key": "k", "model": "m"} if ts is None else {"key": "k", "model": "m", "ts": ts}
    assert sim.error("POST", "/_sim/usage", [item]) == (
        f"ts must be integer Unix seconds, got {shown}")


@pytest.mark.parametrize("name", ["input_tokens", "output_tokens", "requests",
                                  "image_generations"])
@pytest.mark.parametrize(("value", "shown"), [(-1, "-1"), (2**63, str(2**63)), (True, "True"),
                                              (1.0, "1.0"), ("5", "'5'")],
                         ids=["negative", "too-big", "bool", "float", "string"])
def test_an_events_counts_must_be_int64_counts(sim: Sim, name: str, value: Any,
                                               shown: str) -> None:
    item = {"key": "k", "model": "m", "ts": 1, name: value}
    assert sim.error("POST", "/_sim/usage", [item]) == (
        f"{name} must be an integer between 0 and 2**63-1, got {shown}")


# -- faults and latency ----------------------------------------------------------------------


def test_a_fault_is_added_with_its_match_and_gets_an_id(sim: Sim) -> None:
    rule = {"kind": "retcode", "retcode": 153, "key": "k", "times": 1}
    assert sim.ok("POST", "/_sim/faults", rule) == {"id": 1}
    assert sim.faults.pick("other", "m") == []
    assert sim.faults.pick("k", "m") == [Fault(FaultKind.RETCODE, retcode=153)]
    assert len(sim.faults) == 0
    assert sim.ok("POST", "/_sim/faults", {"kind": "close"}) == {"id": 2}


@pytest.mark.parametrize("payload", [None, [{"kind": "close"}], "close"],
                         ids=["nothing", "list", "string"])
def test_a_fault_must_be_an_object(sim: Sim, payload: Any) -> None:
    assert sim.error("POST", "/_sim/faults", payload) == "send a JSON object describing the fault"


def test_a_bad_fault_field_value_is_400(sim: Sim) -> None:
    message = sim.error("POST", "/_sim/faults", {"kind": "http", "status": 200})
    assert message == "status must be an HTTP error status (400-599), got 200"
    assert sim.error("POST", "/_sim/faults", {"kind": 3}).startswith("kind must be one of: ")


def test_faults_are_removed_one_by_id_or_all(sim: Sim) -> None:
    for _ in range(3):
        sim.faults.add(Fault(FaultKind.CLOSE))
    assert sim.ok("DELETE", "/_sim/faults", query="id=2") == {"removed": 1}
    assert sim.ok("DELETE", "/_sim/faults", query="id=2") == {"removed": 0}
    assert sim.ok("DELETE", "/_sim/faults") == {"removed": 2}
    assert sim.ok("DELETE", "/_sim/faults") == {"removed": 0}


def test_a_fault_id_that_is_no_number_is_400(sim: Sim) -> None:
    assert "invalid literal" in sim.error("DELETE", "/_sim/faults", query="id=two")


def test_latency_is_set_fixed_and_jittered(sim: Sim) -> None:
    assert sim.ok("POST", "/_sim/latency", {"fixed": 0.25}) == {}
    assert sim.faults.latency() == 0.25
    sim.ok("POST", "/_sim/latency", {"fixed": 1, "jitter": 0.5})
    waits = [sim.faults.latency() for _ in range(50)]
    assert all(1.0 <= wait <= 1.5 for wait in waits)
    assert len(set(waits)) > 1
    sim.ok("POST", "/_sim/latency", {})
    assert sim.faults.latency() == 0.0


def test_latency_must_be_an_object_of_numbers(sim: Sim) -> None:
    assert sim.error("POST", "/_sim/latency", [1]) == 'send {"fixed": seconds, "jitter": seconds}'
    assert "could not convert" in sim.error("POST", "/_sim/latency", {"fixed": "slow"})


# -- truth and stats -------------------------------------------------------------------------


def test_truth_shows_what_is_visible_now_and_what_happened(sim: Sim) -> None:
    sim.store.add(Event(NOW - 20, NOW - 20.0, "p", "k", "m", Usage(1, 2, 3, 1, 0)))
    sim.store.add(Event(NOW - 10, NOW + 50.0, "p", "k", "m", Usage(10, 0, 10, 1, 0)))
    sim.store.add(Event(NOW - 10, NOW - 10.0, "", "k", "m", Usage(100, 0, 100, 1, 0)))
    query = f"project=p&key=k&model=m&start={NOW - 20}&end={NOW}"
    assert sim.ok("GET", "/_sim/truth", query=query) == {
        "at": NOW, "visible": Usage(1, 2, 3, 1, 0).as_dict(),
        "total": Usage(11, 2, 13, 2, 0).as_dict()}
    one_second = sim.ok("GET", "/_sim/truth", query=f"key=k&model=m&start={NOW - 10}&end={NOW}")
    assert one_second["visible"] == one_second["total"] == Usage(100, 0, 100, 1, 0).as_dict()
    before = sim.ok("GET", "/_sim/truth", query=f"key=k&model=m&start=0&end={NOW - 11}")
    assert before["total"] == Usage().as_dict()


def test_truth_names_every_missing_parameter(sim: Sim) -> None:
    assert sim.error("GET", "/_sim/truth") == "missing query parameters: key, model, start, end"
    assert sim.error("GET", "/_sim/truth", query="key=k&end=5") == (
        "missing query parameters: model, start")


def test_truth_brings_the_traffic_up_to_now() -> None:
    sim = Sim(traffic=True)
    sim.clock.advance(60)
    truth = sim.ok("GET", "/_sim/truth", query=f"project=p&key=t&model=m&start=0&end={NOW + 60}")
    assert truth["at"] == NOW + 60
    assert truth["visible"]["requests"] > 0
    assert truth["visible"] == truth["total"]


def test_stats_are_shown_and_reset(sim: Sim) -> None:
    sim.stats.action("GetUMInferTokenUsage")
    sim.stats.outcome(200, 0)
    sim.stats.usage((1, 2, "k", "m"))
    assert sim.ok("GET", "/_sim/stats") == {
        "by_action": {"GetUMInferTokenUsage": 1}, "by_retcode": {"0": 1}, "by_status": {"200": 1},
        "usage_calls": [[1, 2, "k", "m"]]}
    assert sim.ok("DELETE", "/_sim/stats") == {}
    assert sim.stats.snapshot().calls == 0
    assert sim.ok("GET", "/_sim/stats")["usage_calls"] == []


# -- keys ------------------------------------------------------------------------------------


def test_a_key_gets_its_defaults(sim: Sim) -> None:
    assert sim.ok("POST", "/_sim/keys", {"key_id": "k1"}) == {"added": "k1"}
    assert sim.catalog.page("", 0, 10) == [SimKey("", "k1", "", "", 1, False, (), -1, "", "0",
                                                  "", "0")]


def test_a_key_gets_every_field_it_is_sent(sim: Sim) -> None:
    payload = {"key_id": "k2", "project": "p", "name": "Team A", "secret": "sk-1", "status": 2,
               "disabled": True, "granted_models": ["m1", "m2"], "expire_time": 1_800_000_000,
               "daily_limit": "10.00", "daily_used": 1.25, "monthly_limit": "300",
               "monthly_used": "42.5"}
    sim.ok("POST", "/_sim/keys", payload)
    assert sim.catalog.page("p", 0, 10) == [SimKey("p", "k2", "Team A", "sk-1", 2, True,
                                                   ("m1", "m2"), 1_800_000_000, "10.00", "1.25",
                                                   "300", "42.5")]


def test_a_key_with_status_zero_keeps_it(sim: Sim) -> None:
    sim.ok("POST", "/_sim/keys", {"key_id": "k", "status": 0})
    assert sim.catalog.page("", 0, 1)[0].status == 0


KEY_HELP = ('send {"key_id": ..., "name": ..., "project": ..., "secret": ..., "status": 1,'
            ' "granted_models": [...], "expire_time": -1, "daily_limit": "10.00",'
            ' "daily_used": "1.25", ...}')


@pytest.mark.parametrize("payload", [None, ["k"], {"name": "n"}, {"key_id": 7}],
                         ids=["nothing", "list", "no-key-id", "number-key-id"])
def test_a_key_needs_a_key_id(sim: Sim, payload: Any) -> None:
    assert sim.error("POST", "/_sim/keys", payload) == KEY_HELP


@pytest.mark.parametrize("granted", ["m1", ["m1", 2], {"m1": 1}],
                         ids=["string", "number-inside", "object"])
def test_granted_models_must_be_a_list_of_names(sim: Sim, granted: Any) -> None:
    assert sim.error("POST", "/_sim/keys", {"key_id": "k", "granted_models": granted}) == (
        "granted_models must be a list of model names")


@pytest.mark.parametrize("expire", [True, 1.5, "never", None], ids=["bool", "float", "string",
                                                                   "null"])
def test_expire_time_must_be_an_integer(sim: Sim, expire: Any) -> None:
    assert sim.error("POST", "/_sim/keys", {"key_id": "k", "expire_time": expire}) == (
        "expire_time must be an integer (Unix seconds, -1 never)")
    assert sim.catalog.page("", 0, 10) == []


def test_a_key_status_must_be_a_count(sim: Sim) -> None:
    assert sim.error("POST", "/_sim/keys", {"key_id": "k", "status": -1}) == (
        "status must be an integer between 0 and 2**63-1, got -1")


def test_a_key_is_removed_by_project_and_id(sim: Sim) -> None:
    sim.catalog.add_key(SimKey("p", "k", "n", "s"))
    sim.catalog.add_key(SimKey("", "k", "n", "s"))
    assert sim.ok("DELETE", "/_sim/keys", query="project=p&key_id=k") == {"removed": 1}
    assert sim.ok("DELETE", "/_sim/keys", query="project=p&key_id=k") == {"removed": 0}
    assert sim.catalog.page("", 0, 10) == [SimKey("", "k", "n", "s")]
    assert sim.ok("DELETE", "/_sim/keys", query="key_id=k") == {"removed": 1}
    assert sim.catalog.page("", 0, 10) == []


def test_removing_a_key_needs_its_id(sim: Sim) -> None:
    assert sim.error("DELETE", "/_sim/keys", query="project=p") == (
        "missing query parameter: key_id")


def test_an_admin_without_a_catalog_keeps_its_own() -> None:
    admin = Admin(EventStore(), FaultPlan(), CallStats(), FakeClock(), None)
    assert admin.handle("POST", "/_sim/keys", "", b'{"key_id": "k"}') == (200, {"added": "k"})
    assert admin.handle("POST", "/_sim/models", "", b'{"name": "m"}') == (200, {"added": "m"})


# -- models ----------------------------------------------------------------------------------


def test_a_model_gets_its_defaults(sim: Sim) -> None:
    assert sim.ok("POST", "/_sim/models", {"name": "m"}) == {"added": "m"}
    assert sim.catalog.prices() == {"m": SimModel("m", 1, 0.0, 0.0, 0.0, "USD", None, None)}
    assert isinstance(sim.catalog.prices()["m"].prompt, float)


def test_a_model_gets_every_field_it_is_sent(sim: Sim) -> None:
    payload = {"name": "img", "kind": 2, "prompt": 1, "completion": 2.5, "image": "0.2",
               "currency": "CNY", "unit": "元/张", "unit_en": 7}
    sim.ok("POST", "/_sim/models", payload)
    model = sim.catalog.prices()["img"]
    assert model == SimModel("img", 2, 1.0, 2.5, "0.2", "CNY", "元/张", "7")
    assert isinstance(model.prompt, float)


def test_a_model_of_kind_zero_is_text(sim: Sim) -> None:
    sim.ok("POST", "/_sim/models", {"name": "m", "kind": 0})
    assert sim.catalog.prices()["m"].kind == 1


def test_a_boolean_price_is_sent_as_text(sim: Sim) -> None:
    sim.ok("POST", "/_sim/models", {"name": "m", "prompt": True, "completion": None})
    model = sim.catalog.prices()["m"]
    assert (model.prompt, model.completion) == ("True", "None")


MODEL_HELP = ('send {"name": ..., "kind": 1, "prompt": 0.27, "completion": ..., "image": ...,'
              ' "currency": "CNY", "unit": "元/百万tokens", "unit_en": "per 1M tokens"}')


@pytest.mark.parametrize("payload", [None, ["m"], {"kind": 1}, {"name": 3}],
                         ids=["nothing", "list", "no-name", "number-name"])
def test_a_model_needs_a_name(sim: Sim, payload: Any) -> None:
    assert sim.error("POST", "/_sim/models", payload) == MODEL_HELP


def test_a_model_kind_must_be_a_count(sim: Sim) -> None:
    assert sim.error("POST", "/_sim/models", {"name": "m", "kind": "text"}) == (
        "kind must be an integer between 0 and 2**63-1, got 'text'")

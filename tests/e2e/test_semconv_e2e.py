"""Real Prometheus: queries written for the OpenTelemetry GenAI names equal the native totals."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from exporter.core.clock import SystemClock
from exporter.simulator import EventStore, SimulatorServer
from tests.e2e.test_prometheus_e2e import (
    CHAT,
    COUNTERS,
    DEADLINE,
    IMAGE,
    PRIVATE,
    PUBLIC,
    Stack,
    exporter_config,
    wait_for_totals,
)
from tests.fleet import SECOND_BUCKETS
from tests.prom import scraped_exporter, values

pytestmark = pytest.mark.e2e

# A second key on the chat model: the GenAI queries sum over keys by model.
CHAT2 = {**CHAT, "key": "uminferapikey-e2e-chat-2"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The simulator, the exporter with ``metrics.semconv: otel-genai``, Prometheus."""
    workdir = tmp_path_factory.mktemp("semconv-e2e")
    with SimulatorServer(EventStore(), {PUBLIC: PRIVATE}, SystemClock(),
                         buckets=SECOND_BUCKETS) as simulator:
        config = exporter_config(simulator.url, workdir / "state.json")
        config["targets"] = [{"project": CHAT["project"], "key": CHAT["key"],
                              "model": CHAT["model"], "labels": {"team": "search"}},
                             {"project": CHAT2["project"], "key": CHAT2["key"],
                              "model": CHAT2["model"]},
                             {"key": IMAGE["key"], "model": IMAGE["model"]}]
        config["metrics"] = {"semconv": "otel-genai", "genai_provider_name": "ucloud"}
        with scraped_exporter(workdir, config) as (exporter, prometheus, started):
            yield Stack(simulator, exporter, prometheus, started)


def by(result: list[dict[str, object]], label: str) -> dict[str, float]:
    """A query's values keyed by one label's value."""
    return {dict(key)[label]: value for key, value in values(result).items()}


def test_genai_queries_return_the_native_totals(stack: Stack) -> None:
    now = int(time.time())
    stack.inject(CHAT, {"ts": now, "input_tokens": 1200, "output_tokens": 300, "requests": 7})
    stack.inject(CHAT2, {"ts": now, "delay": 2, "input_tokens": 40, "output_tokens": 9,
                         "requests": 2})
    stack.inject(IMAGE, {"ts": now, "input_tokens": 60, "requests": 3, "image_generations": 3})
    for spec in (CHAT, CHAT2, IMAGE):
        wait_for_totals(stack, spec, COUNTERS, stack.truth(spec))
    prom = stack.prometheus
    native = {"input": by(prom.query("sum by (model) (uminfer_input_tokens_total)"), "model"),
              "output": by(prom.query("sum by (model) (uminfer_output_tokens_total)"), "model")}
    requests = by(prom.query("sum by (model) (uminfer_requests_total)"), "model")
    assert native["input"][CHAT["model"]] == 1240 and requests[IMAGE["model"]] == 3
    # As a GenAI dashboard writes them: tokens by model and type, requests from _count.
    tokens = prom.query("sum by (gen_ai_request_model, gen_ai_token_type) "
                        "(gen_ai_client_token_usage_sum)")
    genai = {(dict(k)["gen_ai_token_type"], dict(k)["gen_ai_request_model"]): v
             for k, v in values(tokens).items()}
    assert genai == {(kind, model): value for kind, per_model in native.items()
                     for model, value in per_model.items()}
    for kind in ("input", "output"):
        counted = by(prom.query(f'sum by (gen_ai_request_model) (gen_ai_client_token_usage_count'
                                f'{{gen_ai_token_type="{kind}"}})'), "gen_ai_request_model")
        assert counted == requests
    # The provider's label, new and old, and one query over both names at once: zero apart.
    providers = prom.label_values("gen_ai_provider_name", "gen_ai_client_token_usage_sum")
    assert providers == prom.label_values("gen_ai_system", "gen_ai_client_token_usage_sum") \
        == ["ucloud"]
    apart = prom.query('sum(gen_ai_client_token_usage_sum{gen_ai_provider_name="ucloud"}) '
                       "- sum(uminfer_input_tokens_total) - sum(uminfer_output_tokens_total)")
    assert list(values(apart).values()) == [0]


def test_genai_increase_over_a_range_equals_the_native_one(stack: Stack) -> None:
    now = int(time.time())
    stack.inject(CHAT, {"ts": now, "input_tokens": 500, "output_tokens": 50, "requests": 5})
    wait_for_totals(stack, CHAT, COUNTERS, stack.truth(CHAT))
    prom = stack.prometheus
    # One query, so both sides are evaluated at the same instant over the same scrapes.
    both = prom.query('sum(increase(gen_ai_client_token_usage_sum{gen_ai_token_type="input"}'
                      "[1m])) - sum(increase(uminfer_input_tokens_total[1m]))")
    assert list(values(both).values()) == [0]
    grew = prom.query('sum(increase(gen_ai_client_token_usage_sum{gen_ai_token_type="input"}'
                      "[1m]))")
    [grown] = values(grew).values()
    assert grown >= 500


def test_series_self_metric_counts_the_genai_family(stack: Stack) -> None:
    result = stack.prometheus.wait_query(
        'uminfer_exporter_series{family="gen_ai_client_token_usage"}', DEADLINE)
    # 3 counting targets x (sum, count) x (input, output).
    assert list(values(result).values()) == [12]
    native = stack.prometheus.query('uminfer_exporter_series{family="uminfer_tokens_total"}')
    assert list(values(native).values()) == [3]

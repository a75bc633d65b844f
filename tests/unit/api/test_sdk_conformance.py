"""The vendor SDK as oracle: its client talks to the simulator, its schemas judge both sides.

``ucloud-sdk-python3`` (a test-only dependency) documents every field the exporter reads and
sends. Three checks, each failing when either side drifts from the SDK:

- the SDK's own client, pointed at the simulator with ``base_url``, calls every action the
  exporter uses, and its response schemas load every answer;
- every answer holds only the SDK's field names, each in the SDK's type (the SDK's schemas are
  lenient, so ``strict`` below applies their declared types exactly);
- every request the exporter sends, in a real cycle with discovery, list prices and key health,
  passes the SDK's request schema for its action, in its declared types, with no other names.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from prometheus_client import CollectorRegistry
from ucloud.core.exc import ValidationException
from ucloud.core.typesystem import fields, schema
from ucloud.services.uai_modelverse.client import UAI_ModelverseClient
from ucloud.services.uai_modelverse.schemas import apis

from exporter.api.client import ApiClient
from exporter.api.keys import KeyClient
from exporter.api.ratelimit import RateLimiter
from exporter.config import (
    ApiConfig,
    Config,
    DiscoveryConfig,
    PollConfig,
    PricingConfig,
    Target,
)
from exporter.core.clock import SystemClock
from exporter.polling.workers import WorkerPool
from exporter.service import ApiStack, Service
from exporter.simulator import SimulatorServer, build_simulator
from exporter.simulator.build import DEMO_PRIVATE_KEY, DEMO_PROJECT, DEMO_PUBLIC_KEY

#: Every action the exporter calls, with the SDK method that calls it.
ACTIONS = {"GetUMInferTokenUsage": "get_um_infer_token_usage",
           "ListUMInferAPIKey": "list_um_infer_api_key",
           "GetUMInferAPIModel": "get_um_infer_api_model"}
#: Names every signed call carries besides its action's own.
ENVELOPE_PARAMS = {"Action", "PublicKey", "Signature"}
ENVELOPE_ANSWER = {"RetCode", "Action", "Message"}


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    with build_simulator(7, 3, 3, SystemClock(), backfill=3600, tick=60) as server:
        yield server


@pytest.fixture(scope="module")
def sdk(sim: SimulatorServer) -> UAI_ModelverseClient:
    return UAI_ModelverseClient(
        {"base_url": sim.url, "project_id": DEMO_PROJECT, "max_retries": 0,
         "public_key": DEMO_PUBLIC_KEY, "private_key": DEMO_PRIVATE_KEY},
        logger=logging.getLogger("ucloud-sdk"))


def strict(shape: schema.Schema | fields.List | Any, value: object, where: str) -> list[str]:
    """Problems of ``value`` against an SDK schema or field, by the type it declares."""
    if isinstance(shape, schema.Schema):
        if not isinstance(value, dict):
            return [f"{where}: expected an object, got {type(value).__name__}"]
        unknown = [f"{where}.{k}: not in {type(shape).__name__}" for k in value
                   if k not in shape.fields]
        return unknown + [p for k, f in shape.fields.items() if k in value
                          for p in strict(f, value[k], f"{where}.{k}")]
    if isinstance(shape, fields.List):
        if not isinstance(value, list):
            return [f"{where}: expected a list, got {type(value).__name__}"]
        return [p for i, v in enumerate(value) for p in strict(shape.item, v, f"{where}[{i}]")]
    wanted: dict[type, tuple[type, ...]] = {
        fields.Str: (str,), fields.Int: (int,), fields.Float: (float, int), fields.Bool: (bool,)}
    types = wanted[type(shape)]
    if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
        return [f"{where}: expected {type(shape).__name__}, got {type(value).__name__}"]
    return []


def answer_problems(action: str, body: dict[str, Any]) -> list[str]:
    """``body`` against the SDK's response schema of ``action``, strictly."""
    response = getattr(apis, f"{action}ResponseSchema")()
    data = {k: v for k, v in body.items() if k not in ENVELOPE_ANSWER}
    return strict(response, data, action)


def test_the_sdk_client_calls_every_action_and_loads_every_answer(
        sdk: UAI_ModelverseClient) -> None:
    keys = sdk.list_um_infer_api_key({"Offset": 0, "Limit": 2})["Data"]
    keys += sdk.list_um_infer_api_key({"Offset": 2, "Limit": 2})["Data"]
    assert [k["KeyId"] for k in keys] == [f"uminferapikey-demo{i:02d}" for i in (1, 2, 3)]
    assert {"DailyLimitAmount", "DailyUsedAmount", "MonthlyLimitAmount", "MonthlyUsedAmount",
            "ExpireTime", "GrantAllModels", "GrantedModels"} <= keys[0].keys()
    models = [m for kind in (1, 2) for m in sdk.get_um_infer_api_model(
        {"KeyId": keys[0]["KeyId"], "ModelType": kind})["Data"]]
    assert {"Prompt", "Completion", "Image", "Currency", "Unit", "UnitEn"} <= (
        models[0]["Pricing"].keys())
    assert any(m["Pricing"]["Image"] > 0 for m in models)
    usage = sdk.get_um_infer_token_usage({"KeyId": keys[2]["KeyId"], "Model": models[0]["Name"],
                                          "StartTime": 0, "EndTime": 86399})["Data"]
    assert usage["RequestTotal"] >= 0 and isinstance(usage["Usages"], list)


def test_every_answer_has_the_sdk_field_names_and_types(sdk: UAI_ModelverseClient) -> None:
    answers = {
        "ListUMInferAPIKey": sdk.invoke("ListUMInferAPIKey", {
            "ProjectId": DEMO_PROJECT, "Offset": 0, "Limit": 100}),
        "GetUMInferAPIModel": sdk.invoke("GetUMInferAPIModel", {
            "ProjectId": DEMO_PROJECT, "KeyId": "uminferapikey-demo01", "ModelType": 1}),
        "GetUMInferTokenUsage": sdk.invoke("GetUMInferTokenUsage", {
            "ProjectId": DEMO_PROJECT, "KeyId": "uminferapikey-demo03",
            "Model": "deepseek-ai/DeepSeek-V3", "StartTime": 0, "EndTime": 86399}),
    }
    image = sdk.invoke("GetUMInferAPIModel", {"ProjectId": DEMO_PROJECT,
                                              "KeyId": "uminferapikey-demo01", "ModelType": 2})
    assert set(answers) == set(ACTIONS)
    assert image["Data"], "the demo has an image model"
    problems = [p for action, body in answers.items() for p in answer_problems(action, body)]
    problems += answer_problems("GetUMInferAPIModel", image)
    assert problems == []


def test_the_strict_check_has_teeth() -> None:
    body = {"RetCode": 0, "Data": [{"KeyId": "k", "ExpireTime": "-1", "Secret": "x",
                                    "GrantedModels": ["a", 2], "GrantAllModels": 1}]}
    assert answer_problems("ListUMInferAPIKey", body) == [
        "ListUMInferAPIKey.Data[0].Secret: not in APIKeySchema",
        "ListUMInferAPIKey.Data[0].ExpireTime: expected Int, got str",
        "ListUMInferAPIKey.Data[0].GrantAllModels: expected Bool, got int",
        "ListUMInferAPIKey.Data[0].GrantedModels[1]: expected Str, got int"]
    priced = {"Data": [{"Name": "m", "Pricing": {"Prompt": "0.27", "Unit": None}}]}
    assert answer_problems("GetUMInferAPIModel", priced) == [
        "GetUMInferAPIModel.Data[0].Pricing.Prompt: expected Float, got str",
        "GetUMInferAPIModel.Data[0].Pricing.Unit: expected Str, got NoneType"]


@dataclass
class Recorder:
    """The calls an ApiClient made: each action's parameters as the exporter built them."""

    calls: list[dict[str, object]] = field(default_factory=list)


class RecordingClient(ApiClient):
    """The real client, keeping a copy of every parameter set it signs."""

    def __init__(self, recorder: Recorder, *args: Any) -> None:
        super().__init__(*args)
        self.recorder = recorder

    def call(self, params: dict[str, object], *args: Any, **kwargs: Any) -> Any:
        self.recorder.calls.append(dict(params))
        return super().call(params, *args, **kwargs)


def request_problems(params: dict[str, object]) -> list[str]:
    """``params`` against the SDK's request schema of its action, strictly, no other names."""
    action = str(params["Action"])
    request = getattr(apis, f"{action}RequestSchema")()
    own = {k: v for k, v in params.items() if k not in ENVELOPE_PARAMS}
    problems = [f"{action}.{k}: not in the SDK's request" for k in own if k not in request.fields]
    try:
        request.dumps(own)
    except ValidationException as exc:
        problems += [f"{action}: {error}" for error in _flat(exc.errors)]
    return problems + strict(request, {k: v for k, v in own.items() if k in request.fields},
                             action)


def test_every_request_the_exporter_sends_passes_the_sdk_request_schema(
        sim: SimulatorServer) -> None:
    api = ApiConfig(endpoint=sim.url, public_key=DEMO_PUBLIC_KEY, private_key=DEMO_PRIVATE_KEY,
                    timeout=5, rate_limit=0)
    recorder = Recorder()
    clock = SystemClock()
    clients: list[RecordingClient] = []

    def connect(config: ApiConfig) -> ApiStack:
        client = RecordingClient(recorder, config, requests.Session(), clock, random.Random(0),
                                 RateLimiter(0, 1, clock), NullObserver())
        clients.append(client)
        return ApiStack(WorkerPool(2), client, KeyClient(client))

    config = Config(api=api, poll=PollConfig(interval=60, settle=60, test_period=300), windows=(),
                    targets=(Target("uminferapikey-demo01", "deepseek-ai/DeepSeek-V3",
                                    DEMO_PROJECT),),
                    discovery=DiscoveryConfig(projects=(DEMO_PROJECT,)),
                    pricing=PricingConfig(from_api=True))
    service = Service(config, clock, CollectorRegistry(), lambda: config, connect=connect)
    for client in clients:  # the service's clock of the API exists only once it does
        client._api_clock = service.api_clock
    try:
        service.run_cycle()
    finally:
        service.stop()
    assert {str(c["Action"]) for c in recorder.calls} == set(ACTIONS)
    assert [p for call in recorder.calls for p in request_problems(call)] == []


def _flat(errors: list[Any]) -> Iterator[str]:
    for error in errors:
        if isinstance(error, ValidationException):
            yield from _flat(error.errors)
        else:
            yield str(error)


def test_the_request_check_has_teeth() -> None:
    assert request_problems({"Action": "GetUMInferAPIModel", "KeyId": "k", "ModelType": "1",
                             "Extra": 1}) == [
        "GetUMInferAPIModel.Extra: not in the SDK's request",
        "GetUMInferAPIModel: the field ProjectId is required",
        "GetUMInferAPIModel.ModelType: expected Int, got str"]


class NullObserver:
    """Self-metrics are not what these tests look at."""

    def observe_call(self, outcome: str, retcode: str, seconds: float) -> None:
        """Ignore the call."""

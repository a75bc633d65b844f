"""GetUMInferAPIModel: the shapes its answer comes in, what a row that cannot be priced keeps
for the log, and the calls KeyClient makes (key listings: test_discovery.py, test_keyhealth.py;
units and currencies: test_units.py)."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from decimal import Decimal
from urllib.parse import parse_qsl

import pytest
import requests
import responses

from exporter.api.client import ApiClient
from exporter.api.errors import ApiError
from exporter.api.keys import ApiModel, KeyClient, parse_models
from exporter.api.ratelimit import RateLimiter
from exporter.config import ApiConfig, ModelPrice
from exporter.core.clock import FakeClock

ENDPOINT = "https://api.example.test/"
API = ApiConfig(endpoint=ENDPOINT, public_key="pub", private_key="priv", timeout=5.0)
PRICED = {"Name": "m", "Pricing": {"Prompt": "2", "Completion": "8", "Currency": "CNY",
                                  "UnitEn": "per 1M tokens"}}
M = ModelPrice("m", Decimal(2), Decimal(8), currency="CNY")


def ok(data: object) -> dict[str, object]:
    return {"RetCode": 0, "Data": data}


@pytest.mark.parametrize("data", [
    [PRICED], {"Models": [PRICED]}, {"ModelList": [PRICED]}, {"Data": [PRICED]},
    {"Other": 1, "Data": [PRICED]},
])
def test_every_known_shape_of_the_answer_is_read(data: object) -> None:
    assert parse_models(ok(data)) == [ApiModel("m", M, None, "per 1M tokens")]


def test_a_model_without_pricing_is_listed_unpriced() -> None:
    assert parse_models(ok([{"Name": "m"}, {"ServedModelName": "s", "Pricing": "n/a"}])) == [
        ApiModel("m", None), ApiModel("s", None)]


@pytest.mark.parametrize("name", [None, "", 7, ["m"]])
def test_a_model_without_a_usable_name_is_left_out(name: object) -> None:
    assert parse_models(ok([{"Name": name}, PRICED])) == [ApiModel("m", M, None, "per 1M tokens")]


def test_an_unreadable_unit_is_kept_for_the_log_cut_at_60() -> None:
    row = {"Name": "m", "Pricing": {"Prompt": "2", "Unit": "每" + "x" * 70, "UnitEn": "per kg"}}
    assert parse_models(ok([row])) == [ApiModel("m", None, "unknown_unit", ("每" + "x" * 70)[:60])]
    row = {"Name": "m", "Pricing": {"Prompt": "2", "Unit": "每公斤", "UnitEn": "per kg"}}
    assert parse_models(ok([row])) == [ApiModel("m", None, "unknown_unit", "每公斤 / per kg")]


@pytest.mark.parametrize(("data", "message"), [
    ([PRICED, "m"], "invalid response: Data[1] is not an object"),
    ([{"Name": "m", "Pricing": {"Completion": "lots"}}],
     "invalid response: Data[0].Pricing.Completion is not a price: "),
])
def test_a_broken_row_is_named_by_its_place(data: object, message: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_models(ok(data))
    assert str(info.value).startswith(message)


class Rig:
    def __init__(self, rsps: responses.RequestsMock) -> None:
        self.rsps = rsps
        self.clock = FakeClock()
        self.keys = KeyClient(ApiClient(API, requests.Session(), self.clock, random.Random(0),
                                        RateLimiter(rate=0, burst=1, clock=self.clock),
                                        _Quiet()))

    def forms(self) -> list[dict[str, str]]:
        return [dict(parse_qsl(str(call.request.body))) for call in self.rsps.calls]


class _Quiet:
    def observe_call(self, outcome: str, retcode: str, seconds: float) -> None:
        pass


@pytest.fixture
def rig() -> Iterator[Rig]:
    with responses.RequestsMock() as rsps:
        yield Rig(rsps)


def test_models_of_both_types_are_asked_for_in_the_keys_project(rig: Rig) -> None:
    url = ENDPOINT + "?Action=GetUMInferAPIModel"
    rig.rsps.add(responses.POST, url, json=ok([PRICED]))
    rig.rsps.add(responses.POST, url, json=ok([{"Name": "img"}]))
    assert rig.keys.list_models("org-1", "k-1", 60.0) == [
        ApiModel("m", M, None, "per 1M tokens"), ApiModel("img", None)]
    assert [(f["KeyId"], f["ModelType"], f.get("ProjectId")) for f in rig.forms()] == [
        ("k-1", "1", "org-1"), ("k-1", "2", "org-1")]


def test_the_default_project_is_not_named(rig: Rig) -> None:
    url = ENDPOINT + "?Action=GetUMInferAPIModel"
    rig.rsps.add(responses.POST, url, json=ok([]))
    rig.rsps.add(responses.POST, url, json=ok([]))
    assert rig.keys.list_models("", "k-1", 60.0) == []
    assert all("ProjectId" not in form for form in rig.forms())


def test_a_retried_model_listing_names_the_key(rig: Rig,
                                               caplog: pytest.LogCaptureFixture) -> None:
    url = ENDPOINT + "?Action=GetUMInferAPIModel"
    rig.rsps.add(responses.POST, url, json={"RetCode": 150})
    rig.rsps.add(responses.POST, url, json=ok([]))
    rig.rsps.add(responses.POST, url, json=ok([]))
    with caplog.at_level(logging.DEBUG, logger="exporter.api.client"):
        rig.keys.list_models("org-1", "k-1", 60.0)
    [said] = caplog.messages
    assert said.startswith("retrying GetUMInferAPIModel k-1 in ")

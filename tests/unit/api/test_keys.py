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

from exporter.api import keys as keys_module
from exporter.api.client import ApiClient
from exporter.api.errors import ApiError
from exporter.api.keys import ApiKey, ApiModel, KeyClient, parse_keys, parse_models
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


# -- ListUMInferAPIKey ---------------------------------------------------------------------

def test_a_key_row_is_read_field_by_field() -> None:
    [key] = parse_keys(ok([{
        "KeyId": "k-1", "Name": "team\x07a", "Status": "1", "ModelverseDisabled": True,
        "GrantedModels": [{"ServedModelName": "a", "Name": "x"}, {"Name": "b"}, "c, d", ""],
        "ExpireTime": 1_800_000_000, "DailyLimitAmount": "100.5", "DailyUsedAmount": "12.25",
        "MonthlyLimitAmount": 3000, "MonthlyUsedAmount": 7.5, "Key": "sk-secret"}]))
    assert key == ApiKey("k-1", "team\ufffda", 1, True, ("a", "b", "c", "d"), 1_800_000_000,
                         Decimal("100.5"), Decimal("12.25"), Decimal(3000), Decimal("7.5"))


@pytest.mark.parametrize(("field", "value", "read"), [
    ("ExpireTime", -1, None), ("ExpireTime", 0, None), ("ExpireTime", "soon", None),
    ("ExpireTime", "1800000000", 1_800_000_000),
    ("ExpireTime", 1, 1),  # any positive time is an expiry (this one long past)
    ("DailyLimitAmount", "", None), ("DailyLimitAmount", "0", None),
    ("DailyLimitAmount", "-5", None), ("DailyLimitAmount", None, None),
    ("DailyUsedAmount", "", None), ("DailyUsedAmount", "lots", None),
    ("DailyUsedAmount", "0", Decimal(0)),
    ("ModelverseDisabled", 0, False), ("ModelverseDisabled", 1, True),
    ("GrantedModels", "m", ("m",)), ("GrantedModels", None, ()),
])
def test_optional_fields_read_leniently(field: str, value: object, read: object) -> None:
    names = {"ExpireTime": "expires", "DailyLimitAmount": "daily_limit",
             "DailyUsedAmount": "daily_used", "ModelverseDisabled": "disabled",
             "GrantedModels": "granted_models"}
    [key] = parse_keys(ok([{"KeyId": "k", field: value}]))
    assert getattr(key, names[field]) == read


@pytest.mark.parametrize("data", [None, [], {"KeySet": []}, {"Keys": []}, {"Data": []}])
def test_no_keys_in_any_known_shape(data: object) -> None:
    assert parse_keys(ok(data)) == []


@pytest.mark.parametrize(("rows", "message"), [
    ("keys", "Data is neither a list nor an object holding one"),
    ({"KeySet": "k"}, "Data is neither a list nor an object holding one"),
    (["k"], "Data[0] is not an object"),
    ([{"KeyId": "k"}, {"Name": "n"}], "Data[1].KeyId is not a non-empty string (NoneType)"),
    ([{"KeyId": ""}], "Data[0].KeyId is not a non-empty string (str)"),
    ([{"KeyId": "k\ud800"}], "Data[0].KeyId holds a lone surrogate"),
    ([{"KeyId": "k", "Name": 5}], "Data[0].Name is not a non-empty string (int)"),
    ([{"KeyId": "k", "Status": "on"}], "Data[0].Status is not an integer (str)"),
    ([{"KeyId": "k", "ModelverseDisabled": "yes"}],
     "Data[0].ModelverseDisabled is not an integer (str)"),
    ([{"KeyId": "k", "GrantedModels": [5]}],
     "Data[0].GrantedModels holds a int that is not a model name"),
])
def test_a_broken_key_row_is_named_by_place_and_type(rows: object, message: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_keys(ok(rows))
    assert str(info.value) == f"invalid response: {message}"


def test_unusable_keys_and_models_are_left_out_and_said_once(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="exporter.api.keys"):
        keys = parse_keys(ok([{"KeyId": "bad\x01"}, {"KeyId": "k", "GrantedModels": "m,n\x02"}]))
    assert [(k.key_id, k.granted_models) for k in keys] == [("k", ("m",))]
    assert caplog.messages == [
        "ListUMInferAPIKey: 2 keys or granted models left out (Data[0].KeyId holds a control "
        "character first)"]


def test_keys_are_listed_page_by_page_until_a_short_page(rig: Rig) -> None:
    url = ENDPOINT + "?Action=ListUMInferAPIKey"
    rig.rsps.add(responses.POST, url, json=ok([{"KeyId": f"k{i}"} for i in range(100)]))
    rig.rsps.add(responses.POST, url, json=ok([{"KeyId": "last"}]))
    keys = rig.keys.list_keys("org-1", 60.0)
    assert [k.key_id for k in keys] == [f"k{i}" for i in range(100)] + ["last"]
    assert [(f["Offset"], f["Limit"], f.get("ProjectId")) for f in rig.forms()] == [
        ("0", "100", "org-1"), ("100", "100", "org-1")]


def test_a_server_that_never_sends_a_short_page_is_stopped(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keys_module, "MAX_PAGES", 2)
    url = ENDPOINT + "?Action=ListUMInferAPIKey"
    for _ in range(2):
        rig.rsps.add(responses.POST, url, json=ok([{"KeyId": f"k{i}"} for i in range(100)]))
    with pytest.raises(ApiError) as info:
        rig.keys.list_keys("", 60.0)
    assert str(info.value) == (
        "invalid response: ListUMInferAPIKey returned more than 2 full pages")
    assert all("ProjectId" not in form for form in rig.forms())


def test_a_key_without_a_name_has_an_empty_one() -> None:
    assert [k.name for k in parse_keys(ok([{"KeyId": "k"}]))] == [""]


def test_an_empty_list_price_is_zero() -> None:
    row = {"Name": "m", "Pricing": {"Prompt": "", "Completion": "8", "Currency": "CNY",
                                   "UnitEn": "per 1M tokens"}}
    assert parse_models(ok([row])) == [ApiModel(
        "m", ModelPrice("m", Decimal(0), Decimal(8), currency="CNY"), None, "per 1M tokens")]


@pytest.mark.parametrize(("project", "said"), [("org-1", "org-1"), ("", "default project")])
def test_a_retried_key_listing_names_the_project(rig: Rig, caplog: pytest.LogCaptureFixture,
                                                 project: str, said: str) -> None:
    url = ENDPOINT + "?Action=ListUMInferAPIKey"
    rig.rsps.add(responses.POST, url, json={"RetCode": 150})
    rig.rsps.add(responses.POST, url, json=ok([]))
    with caplog.at_level(logging.DEBUG, logger="exporter.api.client"):
        assert rig.keys.list_keys(project, 60.0) == []
    [message] = caplog.messages
    assert message.startswith(f"retrying ListUMInferAPIKey {said} in ")

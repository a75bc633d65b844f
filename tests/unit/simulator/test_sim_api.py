"""The gateway's checks and answers, called directly: parameters, RetCodes, messages, Data."""

from typing import Any

import pytest

from exporter.simulator import Catalog, EventStore, SimKey, SimModel
from exporter.simulator.api import (
    GatewayError,
    UsageQuery,
    check_action,
    check_signature,
    list_keys_data,
    models_data,
    parse_params,
    parse_usage,
    reply,
    usage_data,
)
from exporter.simulator.buckets import BucketPolicy
from exporter.simulator.gatewaysig import signature
from exporter.simulator.store import Event
from exporter.simulator.usage import Usage

KEYS = {"pub": "priv"}
NOW = 1_700_003_600


def refused(call: Any, *args: Any) -> tuple[int, str]:
    with pytest.raises(GatewayError) as caught:
        call(*args)
    assert str(caught.value) == caught.value.message
    return caught.value.retcode, caught.value.message


# -- parameters ------------------------------------------------------------------------------


def test_query_parameters_keep_blank_values() -> None:
    assert parse_params("Action=X&Model=", b"", "") == {"Action": "X", "Model": ""}


def test_a_form_body_adds_to_the_query_and_wins_on_conflicts() -> None:
    got = parse_params("Action=A&KeyId=q", b"KeyId=b&Model=", "application/x-www-form-urlencoded")
    assert got == {"Action": "A", "KeyId": "b", "Model": ""}


def test_a_json_body_is_flattened_as_the_gateway_signs_it() -> None:
    body = b'{"KeyId": "b", "Limit": 5, "Flag": true, "Models": ["x", "y"]}'
    got = parse_params("Action=A&KeyId=q", body, "application/json; charset=utf-8")
    assert got == {"Action": "A", "KeyId": "b", "Limit": "5", "Flag": "true", "Models.0": "x",
                   "Models.1": "y"}


@pytest.mark.parametrize("body", [b"", b"  \n", b"{not json", b"[1, 2]", b'"text"'],
                         ids=["empty", "blank", "broken", "list", "string"])
def test_a_json_body_that_is_no_object_adds_nothing(body: bytes) -> None:
    assert parse_params("Action=A", body, "application/json") == {"Action": "A"}


def test_a_body_that_is_not_utf8_is_read_with_replacement_characters() -> None:
    assert parse_params("", b"KeyId=k\xff", "") == {"KeyId": "k\ufffd"}
    assert parse_params("", b'{"KeyId": "k\xff"}', "application/json") == {"KeyId": "k\ufffd"}


# -- action and signature --------------------------------------------------------------------


@pytest.mark.parametrize("action", ["GetUMInferTokenUsage", "ListUMInferAPIKey",
                                    "GetUMInferAPIModel"])
def test_the_three_served_actions(action: str) -> None:
    assert check_action({"Action": action}) == action


def test_a_missing_or_empty_action_is_160() -> None:
    assert refused(check_action, {}) == (160, "Missing Action")
    assert refused(check_action, {"Action": ""}) == (160, "Missing Action")


def test_an_action_not_served_is_161_naming_it() -> None:
    assert refused(check_action, {"Action": "DescribeUHost"}) == (
        161, "Action [DescribeUHost] not exist")


def signed(**params: str) -> dict[str, str]:
    return {**params, "Signature": signature(params, KEYS.get(params.get("PublicKey", ""), ""))}


def test_a_good_signature_passes_in_either_case() -> None:
    good = signed(Action="A", PublicKey="pub", KeyId="k")
    check_signature(good, KEYS)
    check_signature({**good, "Signature": good["Signature"].upper()}, KEYS)


def test_signature_failures_each_have_their_retcode() -> None:
    good = signed(Action="A", PublicKey="pub", KeyId="k")
    no_signature = {k: v for k, v in good.items() if k != "Signature"}
    assert refused(check_signature, no_signature, KEYS) == (170, "Missing signature")
    assert refused(check_signature, {**good, "Signature": ""}, KEYS) == (170, "Missing signature")
    assert refused(check_signature, {**good, "PublicKey": "who"}, KEYS) == (172, "user not exist")
    no_public = {k: v for k, v in good.items() if k != "PublicKey"}
    assert refused(check_signature, no_public, KEYS) == (172, "user not exist")
    assert refused(check_signature, {**good, "KeyId": "j"}, KEYS) == (
        171, "Signature verification failed")


@pytest.mark.parametrize("name", ["signature", "SIGNATURE"])
def test_only_the_signature_itself_is_left_out_of_what_is_signed(name: str) -> None:
    good = signed(Action="A", PublicKey="pub", **{name: "x"})
    check_signature(good, KEYS)
    assert refused(check_signature, {**good, name: "y"}, KEYS)[0] == 171


def test_a_key_pair_with_an_empty_public_key_is_still_checked() -> None:
    keys = {"": "secret"}
    good = {"Action": "A", "Signature": signature({"Action": "A"}, "secret")}
    check_signature(good, keys)
    assert refused(check_signature, {**good, "Action": "B"}, keys)[0] == 171


def test_a_gateway_error_without_a_message_takes_the_retcodes() -> None:
    error = GatewayError(153)
    assert (error.retcode, error.message, str(error)) == (
        153, "Request frequency exceeds the limit", "Request frequency exceeds the limit")
    custom = GatewayError(230, "Params [X] not valid")
    assert (custom.message, str(custom)) == ("Params [X] not valid", "Params [X] not valid")


# -- GetUMInferTokenUsage --------------------------------------------------------------------


def usage_params(**extra: str) -> dict[str, str]:
    return {"ProjectId": "p", "KeyId": "k", "Model": "m", "StartTime": "100", "EndTime": "200",
            **extra}


def test_a_usage_call_parses_into_its_query() -> None:
    assert parse_usage(usage_params(), 1000) == UsageQuery("p", "k", "m", 100, 200)
    no_project = {k: v for k, v in usage_params().items() if k != "ProjectId"}
    assert parse_usage(no_project, 1000) == UsageQuery("", "k", "m", 100, 200)


@pytest.mark.parametrize("model", [None, ""], ids=["missing", "empty"])
def test_no_model_means_every_model(model: str | None) -> None:
    p = {k: v for k, v in usage_params().items() if k != "Model"}
    if model is not None:
        p["Model"] = model
    assert parse_usage(p, 1000).model is None


@pytest.mark.parametrize("name", ["KeyId", "StartTime", "EndTime"])
def test_a_missing_usage_parameter_is_220_naming_it(name: str) -> None:
    p = {k: v for k, v in usage_params().items() if k != name}
    assert refused(parse_usage, p, 1000) == (220, f"Missing params [{name}]")


def test_an_empty_key_id_is_missing() -> None:
    assert refused(parse_usage, usage_params(KeyId=""), 1000) == (220, "Missing params [KeyId]")


@pytest.mark.parametrize("name", ["StartTime", "EndTime"])
def test_a_time_that_is_no_integer_is_230_naming_it(name: str) -> None:
    assert refused(parse_usage, usage_params(**{name: "1.5"}), 1000) == (
        230, f"Params [{name}] not valid")


@pytest.mark.parametrize(("start", "end"), [("-1", "200"), ("201", "200")],
                         ids=["negative", "after-end"])
def test_a_window_that_runs_backwards_is_230(start: str, end: str) -> None:
    assert refused(parse_usage, usage_params(StartTime=start, EndTime=end), 1000) == (
        230, "Params [StartTime] not valid: must be >= 0 and <= EndTime")


def test_the_edges_of_a_valid_window() -> None:
    assert parse_usage(usage_params(StartTime="0", EndTime="0"), 1000).start == 0
    assert parse_usage(usage_params(StartTime="200"), 1000).start == 200
    assert parse_usage(usage_params(StartTime="100", EndTime="1100"), 1000).end == 1100


def test_a_window_longer_than_the_gateway_finishes_is_110() -> None:
    assert refused(parse_usage, usage_params(StartTime="100", EndTime="1101"), 1000) == (
        110, "gateway timeout")


def usage_store() -> EventStore:
    store = EventStore()
    for ts, model, usage in [(130, "m", Usage(10, 5, 15, 1, 0)), (150, "n", Usage(1, 0, 1, 1, 2)),
                             (170, "m", Usage(0, 0, 0, 1, 0)), (500, "m", Usage(9, 9, 18, 1, 0))]:
        store.add(Event(ts, float(ts), "p", "k", model, usage))
    store.add(Event(140, 140.0, "p", "other", "m", Usage(7, 7, 14, 1, 0)))
    return store


def test_usage_data_for_one_model_has_totals_and_rows() -> None:
    data = usage_data(usage_store(), UsageQuery("p", "k", "m", 100, 200), NOW, BucketPolicy())
    assert data == {"InTotal": 10, "OutTotal": 5, "Total": 15, "RequestTotal": 2,
                    "ImageGenerationNum": 0,
                    "Usages": [{"Type": "in", "Count": 10, "Timestamp": 120, "Model": "m"},
                               {"Type": "out", "Count": 5, "Timestamp": 120, "Model": "m"},
                               {"Type": "total", "Count": 15, "Timestamp": 120, "Model": "m"},
                               {"Type": "request_count", "Count": 2, "Timestamp": 120,
                                "Model": "m"}]}


def test_usage_data_without_a_model_sums_every_model_of_the_key() -> None:
    data = usage_data(usage_store(), UsageQuery("p", "k", None, 100, 200), NOW, BucketPolicy())
    assert [data[n] for n in ("InTotal", "OutTotal", "Total", "RequestTotal",
                              "ImageGenerationNum")] == [11, 5, 16, 3, 2]
    assert {row["Model"] for row in data["Usages"]} == {"m", "n"}


def test_usage_data_counts_only_what_is_visible_at_the_time_asked() -> None:
    data = usage_data(usage_store(), UsageQuery("p", "k", "m", 100, 200), 160.0, BucketPolicy())
    assert (data["Total"], data["RequestTotal"]) == (15, 1)


def test_usage_data_counts_the_window_as_the_policy_says() -> None:
    outward = BucketPolicy(mode="outward")
    data = usage_data(usage_store(), UsageQuery("p", "k", "m", 130, 140), NOW, outward)
    assert (data["Total"], data["RequestTotal"]) == (15, 2)
    assert {row["Timestamp"] for row in data["Usages"]} == {120}
    exact = usage_data(usage_store(), UsageQuery("p", "k", "m", 131, 140), NOW, BucketPolicy())
    assert (exact["Total"], exact["RequestTotal"], exact["Usages"]) == (0, 0, [])


def test_usage_data_without_rows_has_no_usages() -> None:
    data = usage_data(usage_store(), UsageQuery("p", "k", "m", 100, 200), NOW,
                      BucketPolicy(rows=False))
    assert data == {"InTotal": 10, "OutTotal": 5, "Total": 15, "RequestTotal": 2,
                    "ImageGenerationNum": 0}


# -- ListUMInferAPIKey -----------------------------------------------------------------------


def catalog_of(keys: int, project: str = "p") -> Catalog:
    catalog = Catalog()
    for i in range(keys):
        catalog.add_key(SimKey(project, f"k{i}", f"name {i}", f"secret {i}"))
    return catalog


def key_ids(rows: list[dict[str, Any]]) -> list[str]:
    return [row["KeyId"] for row in rows]


def test_a_listing_pages_twenty_keys_from_the_first_by_default() -> None:
    rows = list_keys_data(catalog_of(25), {"ProjectId": "p"})
    assert key_ids(rows) == [f"k{i}" for i in range(20)]
    assert rows[0]["Key"] == "secret 0"


def test_a_listing_honours_offset_and_limit() -> None:
    rows = list_keys_data(catalog_of(25), {"ProjectId": "p", "Offset": "22", "Limit": "2"})
    assert key_ids(rows) == ["k22", "k23"]


def test_a_listing_without_a_project_lists_the_default_project() -> None:
    catalog = catalog_of(2, project="")
    catalog.add_key(SimKey("p", "elsewhere", "n", "s"))
    assert key_ids(list_keys_data(catalog, {})) == ["k0", "k1"]


def test_a_listing_of_one_hundred_is_the_most_allowed() -> None:
    assert len(list_keys_data(catalog_of(120), {"ProjectId": "p", "Limit": "100"})) == 100
    assert key_ids(list_keys_data(catalog_of(3), {"ProjectId": "p", "Limit": "1"})) == ["k0"]
    assert list_keys_data(catalog_of(3), {"ProjectId": "p", "Offset": "0"})[0]["KeyId"] == "k0"


@pytest.mark.parametrize(("offset", "limit"), [("-1", "10"), ("0", "0"), ("0", "101")],
                         ids=["negative-offset", "zero-limit", "limit-over-100"])
def test_a_listing_outside_its_bounds_is_230(offset: str, limit: str) -> None:
    assert refused(list_keys_data, catalog_of(3), {"Offset": offset, "Limit": limit}) == (
        230, "Params [Limit] not valid: must be 1..100, Offset >= 0")


def test_a_listing_limit_that_is_no_integer_is_230() -> None:
    assert refused(list_keys_data, catalog_of(3), {"Limit": "ten"}) == (
        230, "Params [Limit] not valid")
    assert refused(list_keys_data, catalog_of(3), {"Offset": "x"}) == (
        230, "Params [Offset] not valid")


def test_a_listing_shows_each_key_as_the_meter_has_it() -> None:
    def meter(key: SimKey) -> SimKey:
        return SimKey(key.project, key.key_id, key.name, key.secret, daily_used="4.20")

    [row] = list_keys_data(catalog_of(1), {"ProjectId": "p"}, meter)
    assert row["DailyUsedAmount"] == "4.20"


# -- GetUMInferAPIModel ----------------------------------------------------------------------


def model_catalog() -> Catalog:
    catalog = Catalog()
    catalog.add_key(SimKey("p", "all", "n", "s"))
    catalog.add_key(SimKey("p", "one", "n", "s", granted_models=("b",)))
    for model in (SimModel("a"), SimModel("b", prompt=1.5), SimModel("img", kind=2, image=0.2)):
        catalog.add_model(model)
    return catalog


def names(rows: list[dict[str, Any]]) -> list[str]:
    return [row["Name"] for row in rows]


def test_models_default_to_the_text_models_the_key_may_call() -> None:
    assert names(models_data(model_catalog(), {"KeyId": "all"})) == ["a", "b"]
    [only] = models_data(model_catalog(), {"KeyId": "one"})
    assert (only["Name"], only["Id"], only["Pricing"]["Prompt"]) == ("b", "model-1", 1.5)


def test_models_of_another_type() -> None:
    rows = models_data(model_catalog(), {"KeyId": "all", "ModelType": "2"})
    assert (names(rows), rows[0]["Id"]) == (["img"], "model-2")


def test_models_without_a_key_id_is_220() -> None:
    assert refused(models_data, model_catalog(), {}) == (220, "Missing params [KeyId]")
    assert refused(models_data, model_catalog(), {"KeyId": ""}) == (220, "Missing params [KeyId]")


def test_models_of_an_unknown_key_or_type_is_230() -> None:
    assert refused(models_data, model_catalog(), {"KeyId": "nobody"}) == (
        230, "Params [KeyId] not valid")
    assert refused(models_data, model_catalog(), {"KeyId": "all", "ModelType": "text"}) == (
        230, "Params [ModelType] not valid")


# -- the envelope ----------------------------------------------------------------------------


def test_the_envelope_of_a_success_carries_data_even_when_empty() -> None:
    assert reply("ListUMInferAPIKey", data=[]) == {
        "RetCode": 0, "Action": "ListUMInferAPIKeyResponse", "Message": "", "Data": []}


def test_the_envelope_of_a_refusal_has_no_data() -> None:
    assert reply("GetUMInferTokenUsage", 171, "Signature verification failed") == {
        "RetCode": 171, "Action": "GetUMInferTokenUsageResponse",
        "Message": "Signature verification failed"}

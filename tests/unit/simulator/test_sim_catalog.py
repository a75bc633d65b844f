"""The simulator's keys and models: each served as the vendor SDK's schema names and types it,
keys paged per project in creation order, models filtered by kind and by what a key may call."""

import pytest
from ucloud.services.uai_modelverse.schemas.models import APIKeySchema, UMinferAPIModelSchema

from exporter.simulator.catalog import Catalog, SimKey, SimModel

JANUARY_1 = 1_767_225_600  # 2026-01-01 00:00 UTC


def test_a_key_is_listed_with_every_field_of_the_sdk_schema() -> None:
    key = SimKey("p", "uminferapikey-1", "prod", "sk-secret", status=2, disabled=True,
                 granted_models=("a", "b"), expire_time=1_800_000_000, daily_limit="50",
                 daily_used="1.25", monthly_limit="900", monthly_used="30", created=1_700_000_000)
    assert key.as_api() == {
        "KeyId": "uminferapikey-1", "Name": "prod", "Status": 2, "ModelverseDisabled": 1,
        "SandBoxDisabled": 0, "ExpireTime": 1_800_000_000, "CreateTime": 1_700_000_000,
        "DailyLimitAmount": "50", "DailyUsedAmount": "1.25", "MonthlyLimitAmount": "900",
        "MonthlyUsedAmount": "30", "GrantAllModels": False, "GrantedModels": ["a", "b"],
        "DeniedModels": [], "ModelAccessMode": "allow", "IPWhitelist": "",
        "InferenceLogEnabled": 0, "ChannelId": 0, "OrganizationId": 1, "TopOrganizationId": 1,
        "Key": "sk-secret"}
    assert set(key.as_api()) == set(APIKeySchema.fields)


def test_a_key_made_with_defaults_is_a_normal_unlimited_key_of_every_model() -> None:
    listed = SimKey("p", "k", "n", "s").as_api()
    assert {name: listed[name] for name in (
        "Status", "ModelverseDisabled", "ExpireTime", "CreateTime", "DailyLimitAmount",
        "DailyUsedAmount", "MonthlyLimitAmount", "MonthlyUsedAmount", "GrantAllModels",
        "GrantedModels", "ModelAccessMode")} == {
        "Status": 1, "ModelverseDisabled": 0, "ExpireTime": -1, "CreateTime": JANUARY_1,
        "DailyLimitAmount": "", "DailyUsedAmount": "0", "MonthlyLimitAmount": "",
        "MonthlyUsedAmount": "0", "GrantAllModels": True, "GrantedModels": [],
        "ModelAccessMode": "deny"}
    assert not SimKey("p", "k", "n", "s").metered


def test_a_model_is_served_with_every_field_of_the_sdk_schema() -> None:
    model = SimModel("deepseek-ai/DeepSeek-V3", prompt=2.0, completion=8.0, currency="CNY")
    assert model.as_api(3) == {
        "ServedModelName": "deepseek-ai/DeepSeek-V3", "Name": "deepseek-ai/DeepSeek-V3",
        "Id": "model-3", "CreateAt": JANUARY_1, "UpdateAt": JANUARY_1, "Icon": "",
        "Language": ["zh", "en"], "SimpleDescribe": "",
        "Pricing": {"Prompt": 2.0, "Completion": 8.0, "Image": 0.0, "Currency": "CNY",
                    "Unit": "元/百万tokens", "UnitEn": "per 1M tokens", "Video": ""}}
    assert set(model.as_api(0)) == set(UMinferAPIModelSchema.fields)


@pytest.mark.parametrize(("model", "units"), [
    (SimModel("t"), ("美元/百万tokens", "per 1M tokens")),
    (SimModel("i", kind=2, currency="CNY"), ("元/张", "per image")),
    (SimModel("e", currency="EUR"), ("EUR/百万tokens", "per 1M tokens")),
    (SimModel("v", kind=3), ("", "")),
    (SimModel("u", unit="元/千tokens", unit_en="per 1K tokens"), ("元/千tokens", "per 1K tokens")),
    (SimModel("x", unit="", unit_en=""), ("", "")),
], ids=["text-usd", "image-cny", "text-eur", "unknown-kind", "own-unit", "blank-unit"])
def test_a_models_unit_names_its_currency_and_kind_unless_it_has_its_own(
        model: SimModel, units: tuple[str, str]) -> None:
    pricing = model.as_api(0)["Pricing"]
    assert (pricing["Unit"], pricing["UnitEn"]) == units


def test_a_model_made_with_defaults_is_free_text_in_usd() -> None:
    pricing = SimModel("t").as_api(0)["Pricing"]
    assert {k: pricing[k] for k in ("Prompt", "Completion", "Image", "Currency")} == {
        "Prompt": 0.0, "Completion": 0.0, "Image": 0.0, "Currency": "USD"}


def keys(*ids: str, project: str = "p") -> list[SimKey]:
    return [SimKey(project, key_id, f"name-{key_id}", "s") for key_id in ids]


def ids(page: list[SimKey]) -> list[str]:
    return [key.key_id for key in page]


def test_keys_are_paged_per_project_in_creation_order() -> None:
    catalog = Catalog()
    for key in [*keys("a", "b"), *keys("x", project="q"), *keys("c", "d", "e")]:
        catalog.add_key(key)
    assert ids(catalog.page("p", 0, 2)) == ["a", "b"]
    assert ids(catalog.page("p", 2, 2)) == ["c", "d"]
    assert ids(catalog.page("p", 4, 2)) == ["e"]
    assert ids(catalog.page("p", 5, 2)) == []
    assert ids(catalog.page("q", 0, 100)) == ["x"]
    assert ids(catalog.page("", 0, 100)) == []


def test_a_key_is_replaced_in_place_and_removed_once() -> None:
    catalog = Catalog()
    for key in keys("a", "b"):
        catalog.add_key(key)
    catalog.add_key(SimKey("p", "a", "renamed", "s"))
    assert [key.name for key in catalog.page("p", 0, 10)] == ["renamed", "name-b"]
    assert catalog.remove_key("p", "a")
    assert not catalog.remove_key("p", "a")
    assert not catalog.remove_key("q", "b")
    assert ids(catalog.page("p", 0, 10)) == ["b"]


def catalog_of_models() -> Catalog:
    catalog = Catalog()
    for model in (SimModel("chat-1"), SimModel("draw", kind=2), SimModel("chat-2")):
        catalog.add_model(model)
    catalog.add_key(SimKey("p", "all", "n", "s"))
    catalog.add_key(SimKey("p", "some", "n", "s", granted_models=("chat-2", "draw")))
    return catalog


def names(models: list[tuple[int, SimModel]] | None) -> list[tuple[int, str]]:
    assert models is not None
    return [(index, model.name) for index, model in models]


def test_a_key_may_call_the_models_of_a_kind_it_was_granted_or_all() -> None:
    catalog = catalog_of_models()
    assert names(catalog.models("all", 1)) == [(0, "chat-1"), (2, "chat-2")]
    assert names(catalog.models("all", 2)) == [(1, "draw")]
    assert names(catalog.models("some", 1)) == [(2, "chat-2")]
    assert names(catalog.models("some", 3)) == []
    assert catalog.models("nobody", 1) is None


def test_prices_are_a_snapshot_of_the_models_by_name() -> None:
    catalog = catalog_of_models()
    prices = catalog.prices()
    assert sorted(prices) == ["chat-1", "chat-2", "draw"]
    assert prices["draw"].kind == 2
    catalog.add_model(SimModel("chat-1", prompt=1.0))
    prices.clear()
    assert catalog.prices()["chat-1"].prompt == 1.0
    assert len(catalog.prices()) == 3

"""Label values from the API are bounded in length and characters (issue #26, N7)."""

from __future__ import annotations

import pytest

from exporter.api.errors import ApiError
from exporter.api.keys import parse_keys, parse_models
from exporter.config import DiscoveryConfig
from exporter.core.labeltext import CUT_MARK, MAX_CHARS, id_problem, label_text
from exporter.polling.discovery import KEY_NAME_LABEL, key_targets


def keys_answer(**row: object) -> dict[str, object]:
    return {"RetCode": 0, "Data": [{"KeyId": "k", "Name": "n", "Status": 1, **row}]}


def test_a_huge_key_name_is_cut_with_a_marker() -> None:
    (key,) = parse_keys(keys_answer(Name="N" * 300_000, GrantedModels=["m1", "m2"]))
    assert len(key.name) == MAX_CHARS
    assert key.name == "N" * (MAX_CHARS - len(CUT_MARK)) + CUT_MARK
    for target in key_targets("p", key, DiscoveryConfig()):
        assert dict(target.labels)[KEY_NAME_LABEL] == key.name  # what every series carries


def test_a_name_of_exactly_the_limit_is_kept_whole() -> None:
    assert label_text("x" * MAX_CHARS) == "x" * MAX_CHARS
    assert label_text("x" * (MAX_CHARS + 1)).endswith(CUT_MARK)


def test_control_characters_in_a_key_name_are_replaced() -> None:
    (key,) = parse_keys(keys_answer(Name="evil\x1b[31m\rname\x00\x85\x7f"))
    assert key.name == "evil\ufffd[31m\ufffdname\ufffd\ufffd\ufffd"
    assert label_text("déjà vu \ud800 模型") == "déjà vu \ud800 模型"  # other text stays


@pytest.mark.parametrize(("row", "where"), [
    ({"KeyId": "k" * (MAX_CHARS + 1)}, "Data[0].KeyId is 129 characters long (at most 128)"),
    ({"KeyId": "k\nx"}, "Data[0].KeyId holds a control character"),
    ({"GrantedModels": ["ok", "m" * 300_000]},
     "Data[0].GrantedModels holds a model name that is 300,000 characters long (at most 128)"),
    ({"GrantedModels": "a,b\tc"}, "Data[0].GrantedModels holds a model name that holds a control"),
])
def test_values_sent_back_to_the_api_are_refused_not_cut(row: dict[str, object],
                                                         where: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_keys(keys_answer(**row))
    assert where in str(caught.value)


def test_a_listed_model_with_an_unusable_name_is_skipped_and_its_currency_bounded() -> None:
    pricing = {"Prompt": "1", "Completion": "2", "UnitEn": "per 1M tokens",
               "Currency": "C" * 1000}
    models = parse_models({"RetCode": 0, "Data": [
        {"ServedModelName": "m" * (MAX_CHARS + 1), "Pricing": pricing},
        {"ServedModelName": "ok", "Pricing": pricing}]})
    assert [m.name for m in models] == ["ok"]
    assert models[0].price is not None
    assert models[0].price.currency == "C" * (MAX_CHARS - len(CUT_MARK)) + CUT_MARK


def test_id_problem_says_nothing_of_a_plain_id() -> None:
    assert id_problem("uminferapikey-xyz") is None
    assert id_problem("deepseek-ai/DeepSeek-V3") is None

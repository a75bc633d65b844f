"""Label values from the API are bounded in length and characters (issue #26, N7)."""

from __future__ import annotations

import pytest

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
    assert label_text("ls\u2028ps\u2029bidi\u202e") == "ls\ufffdps\ufffdbidi\ufffd"


@pytest.mark.parametrize(("row", "said"), [
    ({"KeyId": "k" * (MAX_CHARS + 1)}, "Data[1].KeyId is 129 characters long (at most 128)"),
    ({"KeyId": "k\nx"}, "Data[1].KeyId holds a control character"),
])
def test_a_key_whose_id_cannot_be_sent_back_as_it_is_is_left_out(
        row: dict[str, object], said: str, caplog: pytest.LogCaptureFixture) -> None:
    """A KeyId goes back to the API: it cannot be cut, so its key is left out, alone."""
    body = {"RetCode": 0, "Data": [{"KeyId": "ok", "Name": "n", "Status": 1},
                                   {"Name": "n", "Status": 1, **row}]}
    assert [k.key_id for k in parse_keys(body)] == ["ok"]
    assert f"ListUMInferAPIKey: 1 keys or granted models left out ({said} first)" in caplog.text


@pytest.mark.parametrize(("granted", "said"), [
    (["ok", "m" * 300_000], "a model name is 300,000 characters long (at most 128)"),
    ("ok,b\tc", "a model name holds a control character"),
])
def test_a_granted_model_name_that_cannot_be_sent_back_is_left_out(
        granted: object, said: str, caplog: pytest.LogCaptureFixture) -> None:
    (key,) = parse_keys(keys_answer(GrantedModels=granted))
    assert key.granted_models == ("ok",)
    assert said in caplog.text
    assert "mmmm" not in caplog.text  # the value itself is never logged


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


def test_an_id_of_exactly_the_limit_is_sent_back_as_it_is() -> None:
    assert id_problem("k" * MAX_CHARS) is None  # the same bound label_text cuts at
    assert id_problem("k" * (MAX_CHARS + 1)) == "is 129 characters long (at most 128)"

"""The ``pricing`` and ``budgets`` sections' rules: exact amounts, currency codes, budget names,
periods and limits; each message exactly as an operator reads it."""

from __future__ import annotations

from decimal import Decimal

import pytest

from exporter.config import ConfigError
from exporter.config.types import BudgetConfig, ModelPrice, PricingConfig
from exporter.config.yamlstrict import load_strict
from tests.configs import parsed


def problems(**sections: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parsed(**sections)
    return caught.value.problems


def test_prices_are_exact_decimals_as_written() -> None:
    pricing = parsed(pricing=load_strict(
        "currency: CNY\nfrom_api: true\nmodels:\n"
        "  m: {input: 0.27, output: '1.10', image: 2, request: ' 0.000001 ', currency: USD}\n"
        "  n: {input: 1_000.5}\n")).pricing
    assert pricing == PricingConfig(
        currency="CNY", from_api=True, listed_currency="CNY", models=(
            ModelPrice("m", Decimal("0.27"), Decimal("1.10"), Decimal("2"), Decimal("0.000001"),
                       "USD"),
            ModelPrice("n", Decimal("1000.5"), currency="CNY")))


def test_without_a_currency_prices_are_in_usd_and_list_prices_have_none() -> None:
    pricing = parsed(pricing={"models": {"m": {"input": "1"}}}).pricing
    assert (pricing.currency, pricing.listed_currency, pricing.models[0].currency) == (
        "USD", None, "USD")


def test_bad_models_and_amounts_are_each_named() -> None:
    assert problems(pricing={"models": {
        5: {"input": 1}, "": {},
        "m": {"input": True, "output": [1], "image": "1e5", "request": "0." + "1" * 19}}}) == [
        "pricing.models.5: a model name must be a non-empty string",
        'pricing.models[""]: a model name must be a non-empty string',
        "pricing.models.m.input: expected a decimal amount like 0.27, got true (bool)",
        "pricing.models.m.output: expected a decimal amount like 0.27, got [1] (list)",
        'pricing.models.m.image: expected a decimal amount >= 0 like 0.27, got "1e5"',
        'pricing.models.m.request: expected a decimal amount >= 0 like 0.27, got '
        '"0.1111111111111111111"']


def test_a_model_name_with_a_lone_surrogate_is_not_a_name() -> None:
    assert problems(pricing={"models": {"m\ud800": {"input": 1}}}) == [
        'pricing.models["m\\ud800"]: a model name must be a non-empty string']


def test_a_yaml_number_that_lost_digits_is_refused_with_how_to_keep_them() -> None:
    assert problems(pricing=load_strict(
        "models: {m: {input: 1.000000000000000001, output: .inf, image: 123456789012345678}}"
    )) == [
        "pricing.models.m.input: 1.000000000000000001 has more digits than a YAML number holds"
        ' (it reads as 1.0): quote it to keep every digit, "1.000000000000000001"',
        "pricing.models.m.output: expected a decimal amount >= 0 like 0.27, got inf"]


@pytest.mark.parametrize(("code", "ok"), [
    ("U", False), ("US", True), ("A123456789", True), ("A1234567890", False), ("usd", False),
    ("1SD", False),
], ids=["one", "two", "ten", "eleven", "lower", "digit-first"])
def test_a_currency_code_is_two_to_ten_capitals_and_digits(code: str, ok: bool) -> None:
    if ok:
        assert parsed(pricing={"currency": code}).pricing.currency == code
    else:
        assert problems(pricing={"models": {"m": {"currency": code}}}) == [
            f'pricing.models.m.currency: expected a currency code like USD or CNY, got "{code}"']


def test_budgets_are_read_with_their_selectors_and_currency() -> None:
    assert parsed(pricing={"currency": "CNY"}, budgets=[
        {"name": "x" * 64, "period": "daily", "tokens": 2**63 - 1, "project": "p", "key": "k",
         "model": "m", "currency": "EUR"},
        {"name": "b.c:d-e_f", "period": "monthly", "cost": "0"}]).budgets == (
        BudgetConfig("x" * 64, "daily", tokens=2**63 - 1, currency="EUR", project="p", key="k",
                     model="m"),
        BudgetConfig("b.c:d-e_f", "monthly", cost=Decimal(0), currency="CNY"))


def test_bad_budgets_are_each_named() -> None:
    assert problems(budgets=[
        1, {"name": "x" * 65, "period": "weekly", "tokens": 0},
        {"name": "a b", "period": "daily", "tokens": 2**63},
        {"name": "n", "period": "daily"},
        {"name": "m", "period": "daily", "tokens": 1, "cost": "1"},
        {"name": "ok", "period": "daily", "tokens": 1},
        {"name": "ok", "period": "monthly", "cost": "5"}]) == [
        "budgets[0]: expected a mapping with name, period and tokens or cost, got 1 (int)",
        "budgets[1].name: use 1-64 letters, digits, _ . : or -",
        'budgets[1].period: expected daily or monthly, got "weekly"',
        "budgets[1].tokens: must be between 1 and 9223372036854775807, got 0",
        "budgets[2].name: use 1-64 letters, digits, _ . : or -",
        "budgets[2].tokens: must be between 1 and 9223372036854775807, got 9223372036854775808",
        "budgets[3]: set exactly one of tokens or cost",
        "budgets[4]: set exactly one of tokens or cost",
        'budgets[6].name: duplicate of budgets[5] ("ok")']


def test_budgets_must_be_a_list() -> None:
    assert problems(budgets={"b": 1}) == [
        "budgets: expected a list of budgets, got {'b': 1} (dict)"]


def test_every_budget_key_is_named_by_its_path_and_none_hides_the_next() -> None:
    assert problems(budgets=[
        {"period": "daily", "tokens": 1, "colour": 1},
        {"name": "a", "tokens": 1, "project": 5, "key": 6, "model": 7, "currency": "x"},
        {"name": "ok", "period": "daily", "tokens": 1},
        {"name": "ok", "period": "daily", "tokens": 1},
        {"name": "later", "period": "daily", "tokens": 0}]) == [
        "budgets[0].colour: unknown key (expected one of: name, period, project, key, model,"
        " tokens, cost, currency)",
        "budgets[0].name: required",
        "budgets[1].period: required",
        "budgets[1].project: expected a string, got 5 (int)",
        "budgets[1].key: expected a string, got 6 (int)",
        "budgets[1].model: expected a string, got 7 (int)",
        'budgets[1].currency: expected a currency code like USD or CNY, got "x"',
        'budgets[3].name: duplicate of budgets[2] ("ok")',
        "budgets[4].tokens: must be between 1 and 9223372036854775807, got 0"]


def test_budgets_refused_for_a_name_or_period_are_not_compared_as_duplicates() -> None:
    assert problems(budgets=[
        {"name": "a b", "period": "daily", "tokens": 1},
        {"name": "c d", "period": "daily", "tokens": 1},
        {"name": "same", "period": "weekly", "tokens": 1},
        {"name": "same", "period": "yearly", "tokens": 1}]) == [
        "budgets[0].name: use 1-64 letters, digits, _ . : or -",
        "budgets[1].name: use 1-64 letters, digits, _ . : or -",
        'budgets[2].period: expected daily or monthly, got "weekly"',
        'budgets[3].period: expected daily or monthly, got "yearly"']


def test_pricing_names_its_own_paths() -> None:
    assert problems(pricing={"colour": 1, "models": 5}) == [
        "pricing.colour: unknown key (expected one of: currency, from_api, models)",
        "pricing.models: expected a mapping, got 5 (int)"]
    assert problems(pricing={"models": {"m": {"input": "1\ud800"}}}) == [
        "pricing.models.m.input: holds a lone surrogate (like \\ud800), which is not text"]


def test_digits_a_yaml_number_lost_are_said_even_with_underscores() -> None:
    assert problems(pricing=load_strict(
        "models: {m: {input: 1_000.000000000000000001}}")) == [
        "pricing.models.m.input: 1000.000000000000000001 has more digits than a YAML number"
        ' holds (it reads as 1000.0): quote it to keep every digit, "1000.000000000000000001"']

"""List prices are read with their units: scaled exactly for the vendor's spellings, never
guessed for any other (the model stays unpriced, says why once, and shows as unpriced)."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest

from exporter.accounting.snapshot import Snapshot, TargetSnapshot
from exporter.accounting.spend import Spend
from exporter.api.keys import ApiModel, parse_models, with_currency
from exporter.config import Config, ModelPrice, PricingConfig, Target
from exporter.core.clock import FakeClock
from exporter.cost.units import named_currencies, normalise, parse_unit
from exporter.metrics.exposition import render
from exporter.polling.discovery import DiscoveryRunner
from tests.configs import parsed


def listed(prompt: object = 0.0, completion: object = 0.0, image: object = 0.0,
           unit: object = None, unit_en: object = None, currency: object = "CNY") -> ApiModel:
    pricing = {"Prompt": prompt, "Completion": completion, "Image": image, "Currency": currency,
               "Unit": unit, "UnitEn": unit_en}
    [model] = parse_models({"RetCode": 0, "Data": [{"Name": "m", "Pricing": pricing}]})
    return model


@pytest.mark.parametrize(("unit", "unit_en", "prompt", "per_million"), [
    ("元/百万tokens", None, 2.0, "2.0"),
    (None, "CNY / 1M tokens", 2.0, "2.0"),
    ("元/百万tokens", "per 1M tokens", 0.27, "0.27"),
    ("元/千tokens", "per 1K tokens", 0.004, "4.000"),
    ("元 / 千 Tokens", None, 0.004, "4.000"),
    ("每千tokens", None, 0.0005, "0.5000"),
    (None, "$/M tokens", 1.1, "1.1"),
    (None, "USD per 1K tokens", 0.002, "2.000"),
    ("元\uff0f百万token", None, 8.0, "8.0"),  # a fullwidth solidus
    ("元/万tokens", None, 0.02, "2.00"),
    (None, "per token", 0.000002, "2.000000"),
    (None, "per 1m tokens", "3.5", "3.5"),
])
def test_token_prices_are_scaled_to_per_million_exactly(unit: str | None, unit_en: str | None,
                                                       prompt: object, per_million: str) -> None:
    currency = "USD" if "USD" in named_currencies(unit_en) else "CNY"
    model = listed(prompt, prompt, unit=unit, unit_en=unit_en, currency=currency)
    assert model.unpriced is None
    assert model.price == ModelPrice("m", input=Decimal(per_million),
                                     output=Decimal(per_million), currency=currency)
    assert str(model.price.input) == per_million  # exact: no float arithmetic on the way


@pytest.mark.parametrize(("unit", "unit_en"), [("元/张", "per image"), ("¥/张", None),
                                               (None, "CNY/image"), ("每张", None)])
def test_image_prices_are_per_image(unit: str | None, unit_en: str | None) -> None:
    model = listed(image=0.2, unit=unit, unit_en=unit_en)
    assert model.price == ModelPrice("m", image=Decimal("0.2"), currency="CNY")


@pytest.mark.parametrize(("prices", "unit", "unit_en", "reason"), [
    ((1.0, 2.0, 0.0), "元/次", "per request", "unknown_unit"),
    ((1.0, 2.0, 0.0), None, "per 1K characters", "unknown_unit"),
    ((1.0, 2.0, 0.0), "元/百万tokens", "per hour", "unknown_unit"),
    ((1.0, 2.0, 0.0), None, None, "missing_unit"),
    ((1.0, 2.0, 0.0), "", "  ", "missing_unit"),
    ((1.0, 2.0, 0.0), "元/千tokens", "per 1M tokens", "conflicting_units"),
    ((1.0, 0.0, 0.0), "元/张", None, "unit_mismatch"),
    ((0.0, 0.0, 0.5), "元/百万tokens", None, "unit_mismatch"),
    (("1e15", 0.0, 0.0), None, "per token", "out_of_range"),
])
def test_a_unit_it_cannot_read_leaves_the_model_unpriced(
        prices: tuple[object, object, object], unit: str | None, unit_en: str | None,
        reason: str) -> None:
    model = listed(*prices, unit=unit, unit_en=unit_en)
    assert (model.price, model.unpriced) == (None, reason)


def test_free_is_free_whatever_the_unit() -> None:
    assert listed(unit="per fortnight").price == ModelPrice("m", currency="CNY")


def test_normalise_strips_currency_per_and_spaces_only() -> None:
    assert normalise(" CNY / per 1K Tokens ") == "1ktokens"
    assert parse_unit("1 K tokens per request") is None  # extra words are not ignored


def test_an_unpriced_model_is_logged_once_and_exported_with_its_reason(
        caplog: pytest.LogCaptureFixture) -> None:
    bad = ApiModel("odd", None, "unknown_unit", "元/次 / per request")
    good = ApiModel("m", ModelPrice("m", input=Decimal(2), currency="CNY"))

    class Source:
        def list_keys(self, project: str, deadline: float) -> list[object]:
            raise AssertionError("no discovery configured")

        def list_models(self, project: str, key_id: str, deadline: float) -> list[ApiModel]:
            return [bad, good]

    clock = FakeClock()
    targets = (Target("k", "odd"), Target("k", "m"), Target("k", "free-text"))
    config = Config(targets=targets, pricing=PricingConfig(from_api=True))
    runner = DiscoveryRunner(clock)
    for _ in range(3):
        assert runner.refresh_if_due(Source(), config, 10.0)  # type: ignore[arg-type]
        clock.advance(601)
    assert runner.unpriced == {"odd": "unknown_unit"}
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "list price of odd not used (unknown_unit: unit '元/次 / per request'); the model is "
        "unpriced until pricing.models prices it"]
    spend = Spend(config)
    spend.configure(config, {"": runner.prices}, {"": runner.unpriced})
    snapshot = spend.apply(Snapshot(tuple(TargetSnapshot(t) for t in targets)), clock.time())
    assert snapshot.unpriced == (("free-text", "no_price"), ("odd", "unknown_unit"))
    lines = [line for line in render(snapshot).decode().splitlines()
             if line.startswith("uminfer_unpriced")]
    assert lines == ['uminfer_unpriced{model="free-text",reason="no_price"} 1',
                     'uminfer_unpriced{model="odd",reason="unknown_unit"} 1']


def test_without_any_pricing_nothing_is_called_unpriced() -> None:
    config = Config(targets=(Target("k", "m"),))
    spend = Spend(config)
    assert spend.apply(Snapshot((TargetSnapshot(Target("k", "m")),)), 0.0).unpriced == ()


@pytest.mark.parametrize(("row", "unit", "unit_en", "currency"), [
    ("", "元/百万tokens", "per 1M tokens", "CNY"),  # the unit names it: never a default USD
    (None, "元/百万tokens", None, "CNY"),
    (None, "美元/百万tokens", "per 1M tokens", "USD"),  # 美元 is dollars, though it holds 元
    ("", "¥/千tokens", None, "CNY"),
    (None, None, "$/M tokens", "USD"),
    ("usd", None, "per 1M tokens", "USD"),
])
def test_a_list_price_is_in_the_currency_its_row_or_unit_names(
        row: object, unit: str | None, unit_en: str | None, currency: str) -> None:
    model = listed(2, 8, unit=unit, unit_en=unit_en, currency=row)
    assert model.price is not None
    assert (model.price.currency, model.unpriced) == (currency, None)


@pytest.mark.parametrize(("row", "unit", "unit_en"), [
    ("USD", "元/百万tokens", "per 1M tokens"),  # the simulator's own defaults send this pair
    ("CNY", None, "USD per 1K tokens"),
    ("", "元/百万tokens", "$ per 1M tokens"),
])
def test_a_row_and_unit_naming_different_currencies_leave_the_model_unpriced(
        row: str, unit: str | None, unit_en: str) -> None:
    model = listed(2, 8, unit=unit, unit_en=unit_en, currency=row)
    assert (model.price, model.unpriced) == (None, "conflicting_currency")
    assert model.unit.endswith(f"Currency {row}" if row else unit_en)


def test_a_list_price_naming_no_currency_takes_pricing_currency_only_when_written() -> None:
    model = listed(2, 8, unit_en="per 1M tokens", currency=None)
    assert with_currency(model, "CNY").price == ModelPrice("m", Decimal(2), Decimal(8),
                                                         currency="CNY")
    assert with_currency(model, None) == ApiModel("m", None, "missing_currency", "per 1M tokens")
    # the USD default is no answer
    assert parsed(pricing={"from_api": True}).pricing.listed_currency is None


def test_a_list_price_with_every_digit_a_price_may_hold_is_scaled_exactly() -> None:
    price = "12345678901.123456789012345678"  # 29 digits: past the default context's 28
    model = listed(price, price, unit_en="per 1M tokens")
    assert model.price is not None
    assert (model.price.input, model.price.output) == (Decimal(price), Decimal(price))

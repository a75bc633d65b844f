"""Cost is exact: increments times the price in force when counted, across price changes."""

from __future__ import annotations

import decimal
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.accounting.snapshot import Snapshot, TargetSnapshot
from exporter.accounting.spend import Spend
from exporter.config import Config, ConfigError, ModelPrice, PricingConfig, parse_config
from exporter.config.load import load_config
from exporter.core.usage import Totals
from exporter.cost.meters import CostMeter, budget_use
from exporter.cost.pricing import MILLION, PriceBook, cost_of
from tests.configs import parsed

OLD = ModelPrice("m", input=Decimal("0.27"), output=Decimal("1.10"), image=Decimal("0.003"),
                 request=Decimal("0.0001"))
NEW = ModelPrice("m", input=Decimal("0.14"), output=Decimal("0.28"))


def usage(inp: int, out: int, requests: int = 0, images: int = 0) -> Totals:
    return Totals(inp, out, inp + out, requests, images)


def test_cost_of_is_exact() -> None:
    assert cost_of(usage(1_000_000, 500_000, 10, 2), OLD) == Decimal("0.27") + Decimal(
        "0.55") + Decimal("0.001") + Decimal("0.006")
    assert cost_of(usage(1, 0), OLD) == Decimal("0.00000027")


@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)), max_size=200),
       st.integers(0, 200))
def test_meter_prices_each_increment_at_the_price_then(steps: list[tuple[int, int]],
                                                        change_at: int) -> None:
    meter, counters = CostMeter(), Totals()
    expected_old, expected_new = Totals(), Totals()
    for i, (inp, out) in enumerate(steps):
        counters += usage(inp, out)
        meter.charge(counters, OLD if i < change_at else NEW)
        if i < change_at:
            expected_old += usage(inp, out)
        else:
            expected_new += usage(inp, out)
    want = cost_of(expected_old, OLD) + cost_of(expected_new, NEW)
    assert meter.cost.get("USD", Decimal(0)) == want


def test_a_million_tiny_additions_do_not_drift() -> None:
    meter, counters = CostMeter(), Totals()
    for _ in range(100_000):
        counters += usage(3, 7)
        meter.charge(counters, OLD)
    assert meter.cost["USD"] == cost_of(usage(300_000, 700_000), OLD)
    assert float(meter.cost["USD"]) == 0.851  # where float accumulation would drift


def test_unpriced_usage_is_never_priced_later() -> None:
    meter = CostMeter()
    meter.charge(usage(100, 0), None)
    _, amount = meter.charge(usage(150, 0), OLD)
    assert amount == cost_of(usage(50, 0), OLD)


def test_price_book_config_wins_over_list_prices() -> None:
    listed = {"": (NEW, replace(OLD, model="other"))}
    book = PriceBook(PricingConfig(from_api=True, models=(OLD,)), listed)
    assert book.price("", "m") == OLD
    assert book.price("", "other") == replace(OLD, model="other")
    assert PriceBook(PricingConfig(from_api=False), listed).price("", "other") is None


CN = ModelPrice("m", input=Decimal(2), output=Decimal(8), currency="CNY")
INTL = ModelPrice("m", input=Decimal("0.27"), output=Decimal("1.10"), currency="USD")


def test_each_account_prices_its_usage_at_its_own_list_price() -> None:
    book = PriceBook(PricingConfig(from_api=True), {"cn": (CN,), "intl": (INTL,)})
    assert (book.price("cn", "m"), book.price("intl", "m")) == (CN, INTL)
    assert book.price("other", "m") is None  # never lent another account's price


def test_two_accounts_listing_one_model_each_count_in_their_currency(
        caplog: pytest.LogCaptureFixture) -> None:
    # r6: account intl's usage was priced at account cn's CNY list price (the first account's
    # price of a model won), so its USD budget stayed at 0.
    config = parse_config({
        "accounts": [{"name": n, "public_key": "p", "private_key": "s"} for n in ("cn", "intl")],
        "targets": [{"account": n, "key": "k", "model": "m"} for n in ("cn", "intl")],
        "pricing": {"currency": "USD", "from_api": True},
        "budgets": [{"name": "intl-usd", "period": "daily", "cost": "1000"}]}, {}, ".")
    spend, used = Spend(config), usage(3601, 2499)
    spend.sync({})
    spend.configure(config, {"cn": (CN,), "intl": (INTL,)}, {})
    snapshot = spend.apply(Snapshot(tuple(TargetSnapshot(t, used) for t in config.targets)),
                           1_773_100_800.0)
    assert [dict(t.cost) for t in snapshot.targets] == [
        {"CNY": Decimal("0.027194")}, {"USD": Decimal("0.00372117")}]
    assert snapshot.budgets[0].used == Decimal("0.00372117")
    assert [r.getMessage() for r in caplog.records] == [
        "budget intl-usd counts only its own currency: cost in CNY of targets it selects is not "
        "counted in it (price those models in its currency, or add a budget in CNY)"]
    spend.apply(Snapshot(tuple(TargetSnapshot(t, used + used) for t in config.targets)),
                1_773_100_860.0)
    assert len(caplog.records) == 1  # said once


def test_counters_below_what_was_priced_are_a_reset_and_priced_in_full() -> None:
    meter = CostMeter()
    meter.charge(usage(1000, 0), OLD)
    delta, amount = meter.charge(usage(600, 0), OLD)  # the ledger was reset, the meter was not
    assert delta == usage(600, 0)
    assert amount == cost_of(usage(600, 0), OLD)
    assert meter.cost["USD"] == cost_of(usage(1600, 0), OLD)


def _config(pricing: object) -> PricingConfig:
    return parsed(pricing=pricing).pricing


def test_pricing_config_parses_exact_decimals() -> None:
    pricing = _config({"currency": "CNY", "models": {
        "m": {"input": 0.27, "output": "1.10"}, "img": {"image": 0.04, "currency": "USD"}}})
    assert pricing.models == (ModelPrice("m", Decimal("0.27"), Decimal("1.10"), currency="CNY"),
                              ModelPrice("img", image=Decimal("0.04"), currency="USD"))


@pytest.mark.parametrize(("pricing", "message"), [
    ({"models": {"m": {"input": -1}}},
     "pricing.models.m.input: expected a decimal amount >= 0 like 0.27, got -1"),
    ({"models": {"m": {"input": True}}},
     "pricing.models.m.input: expected a decimal amount like 0.27, got true (bool)"),
    ({"models": {"m": {"inptu": 1}}},
     "pricing.models.m.inptu: unknown key (expected one of: input, output, image, request,"
     " currency)"),
    ({"currency": "usd"}, 'pricing.currency: expected a currency code like USD or CNY, got "usd"'),
    ({"from_api": "yes"}, 'pricing.from_api: expected true or false, got "yes" (str)'),
])
def test_bad_pricing_is_reported(pricing: object, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _config(pricing)
    assert caught.value.problems == [message]


def test_a_partly_lower_reading_never_makes_cost_go_down() -> None:
    # Requests fell while tokens grew: the counters were reset (not every field "grew"), so the
    # whole reading is new. Pricing only the difference would price -2 requests.
    meter = CostMeter()
    meter.charge(usage(1000, 0, requests=5), OLD)
    before = meter.cost["USD"]
    delta, amount = meter.charge(usage(1200, 0, requests=3), OLD)
    assert delta == usage(1200, 0, requests=3)
    assert amount == Decimal("0.00027") * Decimal("1.2") + Decimal("0.0003")
    assert amount is not None and amount > 0 and meter.cost["USD"] > before


@pytest.mark.parametrize(("data", "message"), [
    ({"seen": {"tokens": 1}, "cost": {"USD": "-0.5"}}, "not a finite amount >= 0"),
    ({"seen": {"tokens": 1}, "cost": {"USD": -1}}, "not a finite amount >= 0"),
    ({"seen": {"tokens": -1}, "cost": {}}, "must not be negative"),
])
def test_negative_amounts_in_saved_cost_are_refused(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CostMeter.from_dict(data)


def test_saved_cost_round_trips_exactly() -> None:
    meter = CostMeter(usage(7, 3), {"USD": Decimal("0.000000001234567890123456789")})
    assert CostMeter.from_dict(meter.to_dict()) == meter


def test_saved_budget_use_is_read_exactly() -> None:
    raw = {"day": {"start": 86400, "amount": "0." + "0" * 29 + "1"},
           "month": {"start": 0, "amount": "9" * 39}}
    use = budget_use(raw)
    assert {n: (u["start"], Decimal(u["amount"])) for n, u in use.items()} == {
        "day": (86400, Decimal("1e-30")), "month": (0, Decimal("9" * 39))}


@pytest.mark.parametrize(("raw", "error", "message"), [
    ([], TypeError, "budgets must be an object"),
    ({"b": 1}, TypeError, "budget use 'b' must be an object with an integer start and an amount"),
    ({"b": {"start": True, "amount": "1"}}, TypeError, "budget use 'b' must be an object"),
    ({"b": {"start": "0", "amount": "1"}}, TypeError, "budget use 'b' must be an object"),
    ({"n" * 100: {"amount": "1"}}, TypeError, f"budget use '{'n' * 64}' must be an object"),
    ({"b": {"start": 0, "amount": "-1"}}, ValueError, "not a finite amount >= 0"),
    ({"b": {"start": 0, "amount": "1" + "0" * 40}}, ValueError, "must be below 1e40"),
    ({"b": {"start": 0, "amount": "1", "definition": 5}}, TypeError,
     "budget use 'b': definition must be a string of at most 4096 characters"),
])
def test_bad_saved_budget_use_is_refused(raw: object, error: type[Exception],
                                         message: str) -> None:
    with pytest.raises(error) as caught:
        budget_use(raw)
    assert str(caught.value).startswith(message)


def _rounding_traps(prec: int = 6) -> decimal.Context:
    """A caller's context that rounds early and raises when it does: money arithmetic done in
    the thread's context instead of the exporter's own would raise here."""
    return decimal.Context(prec=prec, traps=[decimal.Rounded, decimal.Inexact])


def test_sums_of_cost_and_budget_use_are_never_rounded() -> None:
    # A trillion tokens at an 18-place price, then single tokens: the total needs 39 digits,
    # more than Python's default 28 (which rounded it by 1.1e-22).
    price = Decimal("0.123456789012345678")
    config = parsed(pricing={"currency": "USD", "models": {"m": {"input": str(price)}}},
                    budgets=[{"name": "b", "period": "monthly", "cost": "1000000"}])
    spend, counters, now = Spend(config), Totals(), 1_773_100_800.0
    spend.sync({})
    with decimal.localcontext(_rounding_traps()):
        for n in (10**12, 1, 1, 1, 1, 1):
            counters += usage(n, 0)
            snapshot = spend.apply(Snapshot((TargetSnapshot(config.targets[0], counters),)), now)
        spend.seed(config.targets[0], [(int(now) - 86400, usage(10**12, 0))], now)
        used = spend.apply(Snapshot((TargetSnapshot(config.targets[0], counters),)), now)
    with decimal.localcontext(decimal.Context(prec=200)):
        exact = Decimal(10**12 + 5) * price / MILLION
        seeded = exact + Decimal(10**12) * price / MILLION
    assert dict(snapshot.targets[0].cost) == {"USD": exact}
    assert used.budgets[0].used == seeded
    assert len(exact.as_tuple().digits) > 28  # really past the default context


def _loaded(tmp_path: Path, pricing: str, cost: str) -> Config:
    path = tmp_path / "config.yaml"
    path.write_text("api: {public_key: p, private_key: s}\ntargets: [{key: k, model: m}]\n"
                    f"pricing:\n  models:\n    m: {pricing}\n"
                    f"budgets: [{{name: b, period: monthly, cost: {cost}}}]\n")
    return load_config(str(path), {})


def test_unquoted_amounts_a_float_cannot_hold_are_refused_not_rounded(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        _loaded(tmp_path, "{input: 0.123456789012345678, output: 1.000000000000000001}",
                "99999999.999999999")
    # Each problem names its line in the file first (file:line: path: problem).
    problems = [problem.split(": ", 1)[1] for problem in caught.value.problems]
    assert all(problem.startswith(f"{tmp_path}/") for problem in caught.value.problems)
    assert problems == [
        "pricing.models.m.input: 0.123456789012345678 has more digits than a YAML number holds"
        ' (it reads as 0.12345678901234568): quote it to keep every digit, "0.123456789012345678"',
        "pricing.models.m.output: 1.000000000000000001 has more digits than a YAML number holds"
        ' (it reads as 1.0): quote it to keep every digit, "1.000000000000000001"',
        "budgets[0].cost: 99999999.999999999 has more digits than a YAML number holds"
        ' (it reads as 100000000.0): quote it to keep every digit, "99999999.999999999"']


def test_unquoted_amounts_a_float_holds_and_quoted_ones_are_exact(tmp_path: Path) -> None:
    config = _loaded(tmp_path, '{input: 0.27, output: 1_000.50, image: "1.000000000000000001"}',
                     "99999999.99")
    assert config.pricing.models == (ModelPrice("m", Decimal("0.27"), Decimal("1000.5"),
                                                Decimal("1.000000000000000001")),)
    assert config.budgets[0].cost == Decimal("99999999.99")

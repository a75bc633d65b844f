"""Spend: a seed priced at its own account's list price, and a foreign currency told once per
budget and currency (mutation survivors, #33)."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest

from exporter.accounting.spend import Spend
from exporter.config import Target
from exporter.config.types import ModelPrice
from exporter.core.usage import Totals
from tests.configs import parsed

NOW = 1_773_100_800.0  # 2026-03-10 00:00 UTC
YESTERDAY = int(NOW) - 86400
MILLION = Totals(input_tokens=10**6, tokens=10**6)


def test_a_seed_is_priced_at_its_own_accounts_list_price() -> None:
    config = parsed(pricing={"from_api": True},
                    budgets=[{"name": "month", "period": "monthly", "cost": "1000"}])
    spend = Spend(config)
    # Two accounts list the same model at different prices (per million input tokens).
    spend.configure(config, listed={"a": [ModelPrice("m", input=Decimal(1))],
                                    "b": [ModelPrice("m", input=Decimal(3))]})
    spend.seed(Target("k", "m", account="b"), [(YESTERDAY, MILLION)], NOW)
    assert Decimal(str(spend.budget_use()["month"]["amount"])) == 3


def test_cost_in_another_currency_is_told_once_per_budget_and_currency(
        caplog: pytest.LogCaptureFixture) -> None:
    config = parsed(pricing={"from_api": True},
                    budgets=[{"name": "day", "period": "daily", "cost": "10"},
                             {"name": "month", "period": "monthly", "cost": "100"}])
    spend = Spend(config)
    for currency in ("CNY", "CNY", "EUR"):
        spend.configure(config, listed={"": [ModelPrice("m", input=Decimal(1),
                                                        currency=currency)]})
        spend.seed(Target("k", "m"), [(YESTERDAY, MILLION)], NOW)
    told = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert told == [
        f"budget {name} counts only its own currency: cost in {currency} of targets it selects "
        f"is not counted in it (price those models in its currency, or add a budget in "
        f"{currency})" for currency in ("CNY", "EUR") for name in ("day", "month")]

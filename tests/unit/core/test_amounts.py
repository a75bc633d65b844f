"""Exact amounts: what is accepted, exactly at each bound, and the words each refusal uses
(they reach the operator after a config path: `pricing.models.m.input: has more than ...`)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from exporter.core.amounts import PRICE_DIGITS, PRICE_PLACES, bounded


@pytest.mark.parametrize(("value", "kwargs", "want"), [
    ("0", {}, Decimal(0)),                       # zero is an amount (a free model)
    (0, {}, Decimal(0)),
    ("0.000", {"places": 0}, Decimal(0)),        # zero carries no decimal place however written
    ("100", {"places": 0}, Decimal(100)),        # an integer's trailing zeros are not places
    ("1.50", {"places": 1}, Decimal("1.5")),     # nor are a fraction's
    ("1.500", {"places": 1}, Decimal("1.5")),
    (" 2.25 ", {}, Decimal("2.25")),             # surrounding blanks are not part of it
    (0.27, {}, Decimal("0.27")),                 # a float by its shortest repr, not its binary
    ("9" * PRICE_DIGITS, {}, Decimal("9" * PRICE_DIGITS)),
    ("0." + "0" * 97 + "1", {"places": 98}, Decimal("1e-98")),  # exactly 100 characters
    ("0." + "1" * PRICE_PLACES, {}, Decimal("0." + "1" * PRICE_PLACES)),
])
def test_amounts_within_every_bound_are_taken_exactly(value: object, kwargs: dict[str, int],
                                                      want: Decimal) -> None:
    got = bounded(value, **kwargs)
    assert got == want
    assert isinstance(got, Decimal)


@pytest.mark.parametrize(("value", "kwargs", "message"), [
    (True, {}, "not a number (bool)"),
    ([1], {}, "not a number (list)"),
    (None, {}, "not a number (NoneType)"),
    ("0." + "0" * 98 + "1", {"places": 99}, "longer than 100 characters"),
    ("1,5", {}, "not a number"),
    ("", {}, "not a number"),
    ("-0.01", {}, "not a finite amount >= 0"),
    ("NaN", {}, "not a finite amount >= 0"),
    ("Infinity", {}, "not a finite amount >= 0"),
    ("1" + "0" * PRICE_DIGITS, {}, f"must be below 1e{PRICE_DIGITS}"),
    ("1e18", {}, "must be below 1e18"),
    ("100", {"digits": 2}, "must be below 1e2"),
    ("0." + "1" * (PRICE_PLACES + 1), {}, f"has more than {PRICE_PLACES} decimal places"),
    ("1.25", {"places": 1}, "has more than 1 decimal places"),
    ("1.05", {"places": 1}, "has more than 1 decimal places"),
])
def test_each_refusal_says_which_bound_it_breaks(value: object, kwargs: dict[str, int],
                                                 message: str) -> None:
    with pytest.raises(ValueError, match=r"^[a-z]") as refused:
        bounded(value, **kwargs)
    assert str(refused.value) == message

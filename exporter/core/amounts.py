"""Exact amounts (prices, costs, budget use) within bounds Decimal arithmetic can always hold."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

#: Prices: below 10**18 with at most 18 decimal places (the config's own limits). A price times
#: a 64-bit count then has at most 56 digits, inside pricing's 80-digit precision: never rounded.
PRICE_DIGITS, PRICE_PLACES = 18, 18
#: Accumulated cost and budget use: prices times counts, summed; still well inside 80 digits.
TOTAL_DIGITS, TOTAL_PLACES = 40, 30
_MAX_TEXT = 100  # Decimal() of a megabyte of digits would take a while; no amount is this long


def bounded(value: object, digits: int = PRICE_DIGITS, places: int = PRICE_PLACES) -> Decimal:
    """``value`` (str, int or float) as a Decimal >= 0 below ``10**digits`` with at most
    ``places`` decimal places; ValueError saying which bound it breaks otherwise."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"not a number ({type(value).__name__})")  # noqa: TRY004 -- one error type for callers
    text = (value if isinstance(value, str) else repr(value)).strip()
    if len(text) > _MAX_TEXT:
        raise ValueError(f"longer than {_MAX_TEXT} characters")
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise ValueError("not a number") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError("not a finite amount >= 0")
    if amount and amount.adjusted() >= digits:
        raise ValueError(f"must be below 1e{digits}")
    if _places(amount) > places:
        raise ValueError(f"has more than {places} decimal places")
    return amount


def _places(amount: Decimal) -> int:
    """Decimal places that carry a digit ("0.50" has one); Decimal.normalize() would round."""
    _, digits, exponent = amount.as_tuple()
    assert isinstance(exponent, int)  # finite, checked by the caller
    text = "".join(map(str, digits))
    trailing_zeros = len(text) - len(text.rstrip("0"))
    return 0 if not amount else max(0, -exponent - trailing_zeros)

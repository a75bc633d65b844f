"""Totals: field order, arithmetic and the monotone helpers the ledger relies on."""

from dataclasses import fields

from hypothesis import given
from hypothesis import strategies as st

from exporter.api.response import API_FIELDS
from exporter.core.usage import ZERO, Totals

counts = st.integers(min_value=0, max_value=2**53)
totals = st.builds(Totals, counts, counts, counts, counts, counts)


def test_values_follow_field_order() -> None:
    assert Totals.NAMES == tuple(f.name for f in fields(Totals)) == tuple(API_FIELDS)
    assert Totals(1, 2, 3, 4, 5).values() == (1, 2, 3, 4, 5)


@given(totals, totals)
def test_add_sub_round_trip(a: Totals, b: Totals) -> None:
    assert (a + b) - b == a
    assert a + ZERO == a


@given(totals, totals)
def test_maximum_dominates_both(a: Totals, b: Totals) -> None:
    top = a.maximum(b)
    assert top.dominates(a)
    assert top.dominates(b)
    assert top in (a, b) or not (a.dominates(b) or b.dominates(a))


@given(totals)
def test_dict_round_trip(a: Totals) -> None:
    assert Totals.from_dict(a.as_dict()) == a


def test_fields_missing_from_a_saved_dict_are_zero() -> None:
    # A cost meter's saved counters (cost/meters.py) read a field it lacks as zero.
    assert Totals.from_dict({"tokens": 5, "requests": 2}) == Totals(tokens=5, requests=2)
    assert Totals.from_dict({}) == ZERO
    assert Totals(1, 2, 3, 4, 5).as_dict() == {
        "input_tokens": 1, "output_tokens": 2, "tokens": 3, "requests": 4,
        "image_generations": 5}

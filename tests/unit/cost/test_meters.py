"""Cost meters and saved budget use: the exact refusals and the definition kept (mutation
survivors, #33)."""

from __future__ import annotations

import pytest

from exporter.cost.meters import MAX_DEFINITION, CostMeter, budget_use


def test_a_meter_that_saw_negative_counters_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match=r"^seen counters must not be negative$"):
        CostMeter.from_dict({"seen": {"tokens": -1}, "cost": {}})


def test_a_budget_definition_of_the_longest_length_is_kept() -> None:
    longest = "d" * MAX_DEFINITION
    use = budget_use({"b": {"start": 0, "amount": "1", "definition": longest}})
    assert use == {"b": {"start": 0, "amount": "1", "definition": longest}}


def test_a_longer_definition_is_refused_naming_the_budget_cut_at_64() -> None:
    name = "n" * 100
    with pytest.raises(TypeError) as caught:
        budget_use({name: {"start": 0, "amount": "1", "definition": "d" * (MAX_DEFINITION + 1)}})
    assert str(caught.value) == (f"budget use {name[:64]!r}: definition must be a string of at "
                                 f"most {MAX_DEFINITION} characters")

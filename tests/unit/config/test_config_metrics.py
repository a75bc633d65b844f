"""The ``metrics`` section's names: each read as written, each refused with its own path."""

from __future__ import annotations

import pytest

from exporter.config import ConfigError
from tests.configs import parsed


def problems(**sections: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parsed(**sections)
    return caught.value.problems


def test_the_genai_names_are_read_as_written() -> None:
    metrics = parsed(metrics={"genai_provider_name": "acme",
                              "genai_operation_name": "invoke_agent"}).metrics
    assert (metrics.genai_provider_name, metrics.genai_operation_name) == ("acme", "invoke_agent")


def test_each_genai_name_is_refused_at_its_own_path() -> None:
    assert problems(metrics={"genai_provider_name": 5, "genai_operation_name": ""}) == [
        "metrics.genai_provider_name: expected a string, got 5 (int)",
        "metrics.genai_operation_name: must not be empty"]


def test_a_name_that_is_not_text_does_not_hide_the_next() -> None:
    assert problems(metrics={"disable": [5, "nope"]}) == [
        "metrics.disable[0]: expected a string, got 5 (int)",
        'metrics.disable[1]: unknown name "nope" (metric family groups: windows, cost, key_health,'
        " failure_reasons, settlement, audit)"]

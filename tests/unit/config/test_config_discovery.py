"""The ``discovery`` section's own rules: its key patterns and the statuses it polls
(``advanced.discovery_statuses``), each message exactly as an operator reads it."""

from __future__ import annotations

import pytest

from exporter.config import ConfigError
from tests.configs import parsed


def problems(**sections: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parsed(**sections)
    return caught.value.problems


def test_patterns_and_statuses_are_read_as_written() -> None:
    discovery = parsed(discovery={"include": ["^prod-", "web"], "exclude": ["-test$"]},
                       advanced={"discovery_statuses": [0, 1, 99]}).discovery
    assert discovery is not None
    assert (discovery.include, discovery.exclude, discovery.statuses) == (
        ("^prod-", "web"), ("-test$",), (0, 1, 99))


def test_an_invalid_pattern_is_named_by_its_index_with_why() -> None:
    assert problems(discovery={"exclude": ["ok", "(unclosed"]}) == [
        'discovery.exclude[1]: invalid regular expression "(unclosed": missing ), unterminated'
        " subpattern at position 0"]


def test_a_pattern_that_is_not_a_string_is_named_by_its_index() -> None:
    assert problems(discovery={"include": ["a", 5]}) == [
        "discovery.include[1]: expected a string, got 5 (int)"]


@pytest.mark.parametrize(("statuses", "message"), [
    ([], "advanced.discovery_statuses: expected a non-empty list like [1], got [] (list)"),
    ("1", 'advanced.discovery_statuses: expected a non-empty list like [1], got "1" (str)'),
    (1, "advanced.discovery_statuses: expected a non-empty list like [1], got 1 (int)"),
    ([1, 100], "advanced.discovery_statuses[1]: must be between 0 and 99, got 100"),
    ([-1], "advanced.discovery_statuses[0]: must be between 0 and 99, got -1"),
    ([1, "2"], 'advanced.discovery_statuses[1]: expected an integer, got "2" (str)'),
], ids=["empty", "text", "number", "above-99", "negative", "not-an-integer"])
def test_bad_statuses_are_one_exact_problem(statuses: object, message: str) -> None:
    assert problems(discovery={}, advanced={"discovery_statuses": statuses}) == [message]


def test_the_old_spelling_of_statuses_is_reported_where_it_was_written() -> None:
    assert problems(discovery={"statuses": [1, 100]}) == [
        "discovery.statuses[1]: must be between 0 and 99, got 100"]

"""The ``discovery`` section's own rules: its key patterns and the statuses it polls
(``advanced.discovery_statuses``), each message exactly as an operator reads it."""

from __future__ import annotations

import pytest

from exporter.config import ConfigError, DiscoveryConfig, parse_config
from tests.configs import API, parsed, targets

BASE = {"api": dict(API), "targets": targets()}


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


def test_every_key_is_read_as_written() -> None:
    accounts = [{"name": n, "public_key": "p", "private_key": "s"} for n in ("a", "b")]
    config = parse_config({"accounts": accounts, "discovery": {
        "projects": ["p1", "p2"], "include": ["^i"], "exclude": ["^e"], "models": ["m1"],
        "refresh": "90s", "max_targets": 100_000, "labels": {"src": "d"}, "accounts": ["b"]}},
        {}, "/")
    assert config.discovery == DiscoveryConfig(
        projects=("p1", "p2"), statuses=(1,), include=("^i",), exclude=("^e",), models=("m1",),
        refresh=90.0, max_targets=100_000, labels=(("src", "d"),), accounts=("b",))


def test_no_projects_is_the_default_project() -> None:
    discovery = parsed(discovery={"projects": [], "refresh": "1s", "max_targets": 1}).discovery
    assert discovery is not None
    assert (discovery.projects, discovery.refresh, discovery.max_targets) == (("",), 1.0, 1)


def test_each_bad_key_is_named_with_its_path() -> None:
    assert problems(discovery={"projects": 5, "include": "x", "exclude": 1, "models": "m",
                               "refresh": "500ms", "max_targets": 100_001,
                               "labels": {"model": "x"}, "accounts": "a", "colour": 1}) == [
        "discovery.colour: unknown key (expected one of: projects, include, exclude, models,"
        " refresh, max_targets, labels, accounts)",
        "discovery.projects: expected a list of strings, got 5 (int)",
        'discovery.include: expected a list of strings, got "x" (str)',
        "discovery.exclude: expected a list of strings, got 1 (int)",
        'discovery.models: expected a list of strings, got "m" (str)',
        "discovery.refresh: must be at least 1s, got 500ms",
        "discovery.max_targets: must be between 1 and 100000, got 100001",
        "discovery.labels.model: collides with a built-in label (built-in: project_id, key_id,"
        " model, window, currency, instance, job, key_name, budget, period, account)",
        'discovery.accounts: expected a list of strings, got "a" (str)']


def test_statuses_without_discovery_are_said_to_do_nothing() -> None:
    warnings: list[str] = []
    config = parse_config({**BASE, "advanced": {"discovery_statuses": [1, 2]}}, {}, "/",
                          on_warning=warnings.append)
    assert config.discovery is None
    assert warnings == ["advanced.discovery_statuses: has no effect without discovery"]

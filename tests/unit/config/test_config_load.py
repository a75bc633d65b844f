"""The loader's edges: the effective config an operator sees (every section set), and where each
problem in a file is said to be (its line, the YAML error's position)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from exporter.config import ConfigError, load_config, parse_config, redacted
from exporter.config.load import located

FULL: dict[str, Any] = {
    "accounts": [{"name": "a", "public_key": "pa", "private_key": "sa", "timeout": "30s",
                  "max_concurrency": 3, "rate_limit": 5, "time_zone": "UTC"},
                 {"name": "b", "endpoint": "https://b.example/", "public_key": "pb",
                  "private_key": "sb"}],
    "targets": [{"account": "a", "project": "p", "key": "k", "model": "m",
                 "labels": {"team": "x"}},
                {"account": "b", "key": "k", "model": "m"}],
    "pricing": {"currency": "CNY", "from_api": True,
                "models": {"m": {"input": "0.27", "output": 1.1, "currency": "USD"}}},
    "budgets": [{"name": "d", "period": "daily", "tokens": 5, "key": "k"},
                {"name": "c", "period": "monthly", "cost": "12.50"}],
    "discovery": {"projects": ["p"], "include": ["^a"], "refresh": "1h", "max_targets": 5,
                  "labels": {"src": "d"}, "accounts": ["a"]},
    "advanced": {"discovery_statuses": [1, 2], "window_interval": "10m",
                 "permanent_error_retry": "1h"},
    "keys": {"enabled": False, "interval": "1h"},
    "accounting": {"origin": "2025-01-01T00:00:00Z"},
    "ha": {"peers": ["https://peer:9866"], "username": "u", "password": "pw", "timeout": "5s"},
    "state": {"path": "s.json"},
    "poll": {"interval": "30s", "settle": "5m"},
    "windows": ["5m"],
}


def test_the_effective_config_shows_every_section_as_read_and_no_secret() -> None:
    warnings: list[str] = []
    config = parse_config(FULL, {}, "/etc/x", on_warning=warnings.append)
    assert warnings == []
    assert redacted(config) == {
        "api": None,
        "poll": {"interval": "30s", "settle": "5m"},
        "advanced": {"window_interval": "10m", "permanent_error_retry": "1h",
                     "discovery_statuses": [1, 2]},
        "state": {"path": "/etc/x/s.json", "max_backfill": "1d"},
        "windows": ["5m"],
        "targets": [{"project": "p", "key": "k", "model": "m",
                     "labels": {"account": "a", "team": "x"}, "account": "a"},
                    {"project": "", "key": "k", "model": "m", "labels": {"account": "b"},
                     "account": "b"}],
        "pricing": {"currency": "CNY", "from_api": True,
                    "models": {"m": {"input": "0.27", "output": "1.1", "image": "0",
                                     "request": "0", "currency": "USD"}}},
        "budgets": [{"name": "d", "period": "daily", "tokens": 5, "currency": "CNY", "key": "k"},
                    {"name": "c", "period": "monthly", "cost": "12.50", "currency": "CNY"}],
        "discovery": {"projects": ["p"], "include": ["^a"], "exclude": [], "models": [],
                      "refresh": "1h", "max_targets": 5, "labels": {"src": "d"},
                      "accounts": ["a"]},
        "keys": {"enabled": False, "interval": "1h"},
        "accounts": [{"name": "a", "endpoint": "https://api.sigcalcloud.com/",
                      "public_key": "pa", "private_key": "<secret>", "timeout": "30s",
                      "max_concurrency": 3, "rate_limit": 5.0, "time_zone": "UTC"},
                     {"name": "b", "endpoint": "https://b.example/", "public_key": "pb",
                      "private_key": "<secret>", "timeout": "1m", "max_concurrency": 16,
                      "rate_limit": 20.0, "time_zone": "Asia/Shanghai"}],
        "accounting": {"origin": "2025-01-01T00:00:00Z"},
        "metrics": {"semconv": "native", "genai_provider_name": "ucloud",
                    "genai_operation_name": "chat", "disable": [], "drop_labels": []},
        "ha": {"peers": ["https://peer:9866"], "username": "u", "password": "<secret>",
               "ca_file": None, "timeout": "5s", "insecure_http_auth": False},
    }


def test_discovery_with_one_account_lists_every_account() -> None:
    data = {"api": {"public_key": "p", "private_key": "s"}, "discovery": {"projects": ["p"]}}
    discovery = parse_config(data, {}, "/").discovery
    assert discovery is not None and discovery.accounts == ()


@pytest.mark.parametrize(("accounts", "message"), [
    (None, 'discovery.accounts[1]: unknown account "x" (no accounts are configured)'),
    (["a", "b"], 'discovery.accounts[1]: unknown account "x" (accounts: a, b)'),
], ids=["no-accounts", "several"])
def test_discovery_may_name_only_configured_accounts(accounts: list[str] | None,
                                                     message: str) -> None:
    data: dict[str, Any] = {"discovery": {"accounts": ["a", "x"]}}
    if accounts is None:
        data["api"] = {"public_key": "p", "private_key": "s"}
        message = message.replace("[1]", "[0]").replace('"x"', '"a"')
        expected = [message, message.replace("[0]", "[1]").replace('"a"', '"x"')]
    else:
        data["accounts"] = [{"name": n, "public_key": "p", "private_key": "s"} for n in accounts]
        expected = [message]
    with pytest.raises(ConfigError) as caught:
        parse_config(data, {}, "/")
    assert caught.value.problems == expected


def test_accounts_and_api_together_are_one_problem() -> None:
    data = {"api": {"public_key": "p", "private_key": "s"},
            "accounts": [{"name": "a", "public_key": "p", "private_key": "s"}],
            "targets": [{"key": "k", "model": "m"}]}
    with pytest.raises(ConfigError) as caught:
        parse_config(data, {}, "/")
    assert caught.value.problems == [
        "accounts: conflicts with api; configure one account as api: or every account under "
        "accounts:, not both"]


@pytest.mark.parametrize(("problem", "expected"), [
    ("targets[1].labels.a-b: bad", "c.yaml:9: targets[1].labels.a-b: bad"),
    ("targets[1].key: required", "c.yaml:8: targets[1].key: required"),
    ("targets[7].key: required", "c.yaml:6: targets[7].key: required"),
    ("poll: bad", "c.yaml:4: poll: bad"),
    ("nowhere.at.all: bad", "nowhere.at.all: bad"),
    ("(top level): bad", "(top level): bad"),
], ids=["value", "missing-key", "missing-item", "section", "unknown-section", "top"])
def test_a_problem_is_located_at_its_value_or_what_encloses_it(problem: str,
                                                               expected: str) -> None:
    lines = {"": 1, "api": 1, "poll": 4, "targets": 6, "targets[1]": 8,
             "targets[1].labels": 9, "targets[1].labels.a-b": 9}
    assert located("c.yaml", problem, lines) == expected


def problems_of(path: Path, text: str | bytes) -> list[str]:
    """What loading ``text``, written at ``path``, is refused for."""
    if isinstance(text, str):
        path.write_text(text)
    else:
        path.write_bytes(text)
    with pytest.raises(ConfigError) as caught:
        load_config(str(path), {})
    return caught.value.problems


def test_a_yaml_error_names_line_and_column_and_not_the_line_itself(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    text = "api:\n  private_key: s3cret\n  timeout: [60s\npoll: {}\n"
    assert problems_of(path, text) == [
        f"{path}:4:5: invalid YAML: expected ',' or ']', but got ':'"]


def test_a_duplicate_key_is_said_with_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    text = "api: {public_key: a, private_key: b}\npoll:\n  interval: 1m\n  interval: 2m\n"
    assert problems_of(path, text) == [
        f'{path}:4:3: poll: duplicate key "interval" (first at line 3)']


def test_a_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    assert problems_of(path, b"api: {public_key: \xff}\n") == [f"{path}: not valid UTF-8 text"]


def test_a_valid_files_warnings_name_their_line_and_go_to_the_log_by_default(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("api: {public_key: a, private_key: b}\ntargets: [{key: k, model: m}]\n"
                    "poll: {period: 1h}\n")
    with caplog.at_level("WARNING", logger="exporter.config.load"):
        load_config(str(path), {})
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        ("exporter.config.load",
         f"{path}:3: poll.period: deprecated and unused: counting cuts time at the provider's "
         "midnights (api.time_zone), whatever the API's buckets; remove it (removed in the "
         "release after next)")]


def test_one_account_under_accounts_is_the_api_form() -> None:
    data = {"accounts": [{"name": "a", "public_key": "pa", "private_key": "sa", "timeout": "30s"}],
            "targets": [{"key": "k", "model": "m", "account": "a"}],
            "discovery": {"accounts": ["a"]}}
    config = parse_config(data, {}, "/")
    assert (config.api.public_key, config.api.private_key, config.api.timeout) == (
        "pa", "sa", 30)
    assert config.accounts == ()
    assert [(t.account, t.labels) for t in config.targets] == [("", ())]
    assert config.discovery is not None and config.discovery.accounts == ()


def test_an_origin_makes_max_backfill_a_warning() -> None:
    warnings: list[str] = []
    parse_config({"api": {"public_key": "p", "private_key": "s"},
                  "targets": [{"key": "k", "model": "m"}], "state": {"max_backfill": "2h"},
                  "accounting": {"origin": "2025-01-01T00:00:00Z"}}, {}, "/",
                 on_warning=warnings.append)
    assert warnings == ["state.max_backfill: has no effect with accounting.origin: a restart "
                        "catches up from the origin however long it was down; remove "
                        "state.max_backfill"]


def test_the_origin_is_shown_in_utc_whatever_the_hosts_zone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    try:
        config = parse_config({"api": {"public_key": "p", "private_key": "s"},
                               "targets": [{"key": "k", "model": "m"}],
                               "accounting": {"origin": "2025-01-01T08:00:00+08:00"}}, {}, "/")
        assert redacted(config)["accounting"] == {"origin": "2025-01-01T00:00:00Z"}
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_character_yaml_refuses_is_one_line_without_a_position(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    assert problems_of(path, "api: {public_key: a\x07}\n") == [
        f"{path}: invalid YAML: not valid YAML"]


def test_a_top_level_key_yaml_reads_as_null_is_not_given_a_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    text = "api: {public_key: a, private_key: b}\ntargets: [{key: k, model: m}]\nnull: 1\n"
    assert problems_of(path, text) == [
        "[null]: unknown key (expected one of: api, accounts, poll, state, windows, targets,"
        " pricing, budgets, discovery, keys, accounting, ha, metrics, advanced)"]

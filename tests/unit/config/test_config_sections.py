"""The core sections' rules not in test_config's table: key files, accounts named by targets,
labels, ``keys`` and ``state``; each message exactly as an operator reads it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from exporter.config import ConfigError, KeysConfig, Target, parse_config

API = {"public_key": "p", "private_key": "s"}
TARGETS = [{"key": "k", "model": "m"}]


def problems(data: dict[str, Any], base_dir: str = "/etc/x") -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, {}, base_dir)
    return caught.value.problems


def test_keys_from_files_are_read_whole_and_stripped(tmp_path: Path) -> None:
    (tmp_path / "pub").write_text("pub-key\n")
    (tmp_path / "sk").write_text("  secret-key \n\n")
    config = parse_config({"api": {"public_key_file": "pub", "private_key_file": "sk"},
                           "targets": TARGETS}, {}, str(tmp_path))
    assert (config.api.public_key, config.api.private_key) == ("pub-key", "secret-key")


@pytest.mark.parametrize(("content", "message"), [
    (None, "api.public_key_file: cannot read {file}: No such file or directory"),
    (b"\n \n", "api.public_key_file: {file} is empty"),
    (b"\xff\xfe", "api.public_key_file: {file} is not valid UTF-8 text"),
], ids=["missing", "blank", "not-utf8"])
def test_a_key_file_that_holds_no_key_is_named(tmp_path: Path, content: bytes | None,
                                               message: str) -> None:
    file = tmp_path / "pub"
    if content is not None:
        file.write_bytes(content)
    assert problems({"api": {"public_key_file": "pub", "private_key": "s"}, "targets": TARGETS},
                    str(tmp_path)) == [message.format(file=file)]


def test_a_key_file_is_never_shown_even_in_another_message(tmp_path: Path) -> None:
    (tmp_path / "sk").write_text("sk-0123456789abcdef\n")
    assert problems({"api": {"public_key": "p", "private_key_file": "sk",
                             "endpoint": "sk-0123456789abcdef"}, "targets": TARGETS},
                    str(tmp_path)) == [
        'api.endpoint: expected an http:// or https:// URL, got "<secret>"']


@pytest.mark.parametrize(("endpoint", "ok"), [
    ("https://", False), ("http://h", True), ("https://h:8443/v1/", True), ("file:///x", False),
], ids=["no-host", "http", "https", "file"])
def test_an_endpoint_is_an_http_url_with_a_host(endpoint: str, ok: bool) -> None:
    data = {"api": {**API, "endpoint": endpoint}, "targets": TARGETS}
    if ok:
        assert parse_config(data, {}, "/").api.endpoint == endpoint
    else:
        assert problems(data) == [
            f'api.endpoint: expected an http:// or https:// URL, got "{endpoint}"']


def test_a_target_may_name_an_account_only_when_there_are_accounts() -> None:
    assert problems({"api": API, "targets": [{"key": "k", "model": "m", "account": "a"}]}) == [
        "targets[0].account: no accounts are configured (set accounts:, or remove it)"]


def test_with_several_accounts_each_target_names_a_known_one() -> None:
    accounts = [{"name": "a", **API}, {"name": "b", **API}]
    assert problems({"accounts": accounts,
                     "targets": [{"key": "k", "model": "m", "account": "c"},
                                 {"key": "k", "model": "m"},
                                 {"key": "k", "model": "m", "account": "a"}]}) == [
        'targets[0].account: unknown account "c" (accounts: a, b)',
        "targets[1].account: required with several accounts (one of: a, b)"]


def test_the_same_target_in_two_accounts_is_two_targets() -> None:
    accounts = [{"name": "a", **API}, {"name": "b", **API}]
    config = parse_config({"accounts": accounts,
                           "targets": [{"key": "k", "model": "m", "account": "a"},
                                       {"key": "k", "model": "m", "account": "b"}]}, {}, "/")
    assert [t.ident for t in config.targets] == ["a:/k/m", "b:/k/m"]


def test_a_single_account_under_accounts_may_be_named_by_its_targets() -> None:
    config = parse_config({"accounts": [{"name": "a", **API}],
                           "targets": [{"key": "k", "model": "m", "account": "a"}]}, {}, "/")
    assert config.targets == (Target("k", "m"),)


def test_a_label_without_a_value_or_with_a_name_that_is_not_text_is_named() -> None:
    assert problems({"api": API, "targets": [
        {"key": "k", "model": "m", "labels": {"t": None, 5: "x", "ok": "y"}}]}) == [
        "targets[0].labels.t: must be a non-empty string (an empty label is no label)",
        "targets[0].labels.5: invalid label name (use letters, digits and _, not starting with"
        " a digit)"]


def test_keys_health_can_be_switched_off_and_paced() -> None:
    config = parse_config({"api": API, "targets": TARGETS,
                           "keys": {"enabled": False, "interval": "1s"}}, {}, "/")
    assert config.keys == KeysConfig(enabled=False, interval=1.0)
    assert problems({"api": API, "targets": TARGETS, "keys": {"interval": "500ms"}}) == [
        "keys.interval: must be at least 1s, got 500ms"]
    assert problems({"api": API, "targets": TARGETS, "keys": {"enabled": "no"}}) == [
        'keys.enabled: expected true or false, got "no" (str)']


def test_an_absolute_state_path_is_kept_as_written() -> None:
    config = parse_config({"api": API, "targets": TARGETS,
                           "state": {"path": "/var/lib/x/state.json"}}, {}, "/etc/x")
    assert config.state.path == "/var/lib/x/state.json"


def test_a_window_of_exactly_31_days_is_allowed() -> None:
    config = parse_config({"api": API, "targets": TARGETS, "windows": ["31d", "1s"]}, {}, "/")
    assert [(w.name, w.seconds) for w in config.windows] == [("31d", 31 * 86400), ("1s", 1)]
    assert problems({"api": API, "targets": TARGETS, "windows": ["0s", None]}) == [
        "windows[0]: must be greater than 0s, got 0s"]

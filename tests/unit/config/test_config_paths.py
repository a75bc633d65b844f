"""Every value of the wrong kind is refused under its own path, with the words an operator
reads; a secret is never echoed, not even where another key quotes its value; a list or
mapping with a bad item goes on to check the items after it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from exporter.config import ConfigError, parse_config
from tests.configs import parsed

ORIGIN = {"origin": "2026-01-01T00:00:00Z"}
PEER = ["http://b:9866"]
IN_CLEAR = ("ha.username: would be sent in clear to http://b:9866: use https:// peer URLs (with "
            "ha.ca_file), or set ha.insecure_http_auth: true on a network you trust")


@pytest.mark.parametrize(("sections", "problems"), [
    pytest.param({"accounting": ORIGIN, "ha": {"peers": PEER, "username": "u",
                                               "password": ["hunter2"]}},
                 ["ha.password: expected a string, got list", IN_CLEAR], id="password"),
    pytest.param({"accounting": ORIGIN, "ha": {"peers": PEER, "username": "u",
                                               "password_file": 5}},
                 ["ha.password_file: expected a string, got 5 (int)", IN_CLEAR],
                 id="password_file"),
    pytest.param({"accounting": ORIGIN, "ha": {"peers": "http://b"}},
                 ['ha.peers: expected a list of strings, got "http://b" (str)'], id="peers"),
    pytest.param({"accounting": ORIGIN, "ha": {"peers": PEER, "username": 5, "password": "x"}},
                 ["ha.username: expected a string, got 5 (int)",
                  "ha.username: required with ha.password"], id="username"),
    pytest.param({"accounting": ORIGIN, "ha": {"peers": ["https://b:9866"], "ca_file": 5}},
                 ["ha.ca_file: expected a string, got 5 (int)"], id="ca_file"),
    pytest.param({"keys": 5}, ["keys: expected a mapping, got 5 (int)"], id="keys"),
    pytest.param({"state": {"path": 5}}, ["state.path: expected a string, got 5 (int)"],
                 id="state-path"),
    pytest.param({"api": 5}, ["api: expected a mapping, got 5 (int)",
                              "api.public_key: required (or set api.public_key_file)",
                              "api.private_key: required (or set api.private_key_file)"],
                 id="api"),
    pytest.param({"api": {"public_key": "p", "private_key": "s", "endpoint": 5}},
                 ["api.endpoint: expected a string, got 5 (int)"], id="endpoint"),
    pytest.param({"api": {"public_key_file": 5, "private_key": "s"}},
                 ["api.public_key_file: expected a string, got 5 (int)",
                  "api.public_key: required (or set api.public_key_file)"], id="key-file"),
    pytest.param({"pricing": {"currency": 5}},
                 ["pricing.currency: expected a string, got 5 (int)"], id="currency"),
    pytest.param({"targets": [{"key": "k", "model": "m", "account": 5}]},
                 ["targets[0].account: expected a string, got 5 (int)"], id="account"),
    pytest.param({"targets": [{"key": 5, "model": "m"}]},
                 ["targets[0].key: expected a string, got 5 (int)"], id="key"),
    pytest.param({"advanced": {"window_interval": "0s"}},
                 ["advanced.window_interval: must be greater than 0s, got 0s"],
                 id="window-interval"),
    pytest.param({"targets": [{"key": "k", "model": "m", "labels": {"team": None, "x y": "v"}}]},
                 ["targets[0].labels.team: must be a non-empty string (an empty label is no "
                  "label)",
                  'targets[0].labels["x y"]: invalid label name (use letters, digits and _, not '
                  "starting with a digit)"], id="labels-go-on"),
    pytest.param({"targets": [5, {"key": 5, "model": "m"}]},
                 ["targets[0]: expected a mapping with key and model, got 5 (int)",
                  "targets[1].key: expected a string, got 5 (int)"], id="targets-go-on"),
    pytest.param({"windows": [5, "0s"]},
                 ["windows[0]: expected a duration like 1h, got 5 (int)",
                  "windows[1]: must be greater than 0s, got 0s"], id="windows-go-on"),
])
def test_a_wrong_value_is_refused_under_its_own_path(sections: dict[str, Any],
                                                     problems: list[str]) -> None:
    with pytest.raises(ConfigError) as refused:
        parsed(**sections)
    assert refused.value.problems == problems


def test_a_password_is_masked_even_where_another_key_quotes_it() -> None:
    with pytest.raises(ConfigError) as refused:
        parsed(accounting=ORIGIN, ha={"peers": ["s3cret-value-123"], "username": "u",
                                      "password": "s3cret-value-123"})
    assert refused.value.problems == [
        'ha.peers[0]: expected an http:// or https:// URL, got "<secret>"']


def test_a_duplicate_target_does_not_stop_the_checks_of_the_targets_after_it() -> None:
    with pytest.raises(ConfigError) as refused:
        parsed(targets=[{"key": "k", "model": "m"}, {"key": "k", "model": "m"},
                        {"key": 5, "model": "m"}])
    assert refused.value.problems == [
        'targets[1]: duplicate of targets[0] (project "", key "k", model "m")',
        "targets[2].key: expected a string, got 5 (int)"]


def test_a_target_of_an_unknown_account_is_refused_once_not_also_as_a_duplicate() -> None:
    accounts = [{"name": name, "public_key": "p", "private_key": "s"} for name in ("a", "b")]
    target = {"key": "k", "model": "m", "account": "z"}
    with pytest.raises(ConfigError) as refused:
        parse_config({"accounts": accounts, "targets": [target, dict(target)]}, {}, ".")
    assert refused.value.problems == [
        'targets[0].account: unknown account "z" (accounts: a, b)',
        'targets[1].account: unknown account "z" (accounts: a, b)']


def test_a_refused_label_name_is_not_also_checked_for_its_value() -> None:
    with pytest.raises(ConfigError) as refused:
        parsed(targets=[{"key": "k", "model": "m", "labels": {"x y": "", "__r": "v", "team": ""}}])
    assert refused.value.problems == [
        'targets[0].labels["x y"]: invalid label name (use letters, digits and _, not starting '
        "with a digit)",
        "targets[0].labels.__r: label names starting with __ are reserved for Prometheus",
        "targets[0].labels.team: must be a non-empty string (an empty label is no label)"]


def test_a_password_read_from_its_file_is_masked_too(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret-file-pass-1\n")
    with pytest.raises(ConfigError) as refused:
        parsed(accounting=ORIGIN, ha={"peers": ["s3cret-file-pass-1"], "username": "u",
                                      "password_file": str(secret)})
    assert refused.value.problems == [
        'ha.peers[0]: expected an http:// or https:// URL, got "<secret>"']

"""The ``accounts`` list: each entry read like ``api``, every bad entry named, and one bad entry
never hiding the ones after it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from exporter.config import ConfigError, parse_config

KEYS = {"public_key": "p", "private_key": "s"}


def problems(accounts: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config({"accounts": accounts, "targets": [{"key": "k", "model": "m"}]}, {}, "/")
    return caught.value.problems


def test_every_bad_entry_is_named_and_none_hides_the_next() -> None:
    assert problems([1, {"name": "a", "public_key": "p"}, {"public_key": "p", "private_key": "s"},
                     {"name": "b", "private_key": "s"}, {"name": "b", **KEYS},
                     {"name": "c", "timeout": "0s", **KEYS}, "x"]) == [
        "accounts[0]: expected a mapping with name, endpoint and keys, got 1 (int)",
        "accounts[1].private_key: required (or set accounts[1].private_key_file)",
        "accounts[2].name: required",
        "accounts[3].public_key: required (or set accounts[3].public_key_file)",
        'accounts[4].name: duplicate of accounts[3].name "b"',
        "accounts[5].timeout: must be greater than 0s, got 0s",
        'accounts[6]: expected a mapping with name, endpoint and keys, got "x" (str)',
        "targets[0].account: required with several accounts (one of: a, b, c)"]


def test_an_accounts_key_files_are_read_beside_the_config(tmp_path: Path) -> None:
    (tmp_path / "a.pub").write_text("pub-a\n")
    (tmp_path / "a.key").write_text("key-a\n")
    data: dict[str, Any] = {
        "accounts": [{"name": "a", "public_key_file": "a.pub", "private_key_file": "a.key"},
                     {"name": "b", **KEYS}],
        "targets": [{"key": "k", "model": "m", "account": "a"}]}
    api = parse_config(data, {}, str(tmp_path)).account_apis()["a"]
    assert (api.public_key, api.private_key) == ("pub-a", "key-a")


@pytest.mark.parametrize("accounts", [[], {"name": "a"}], ids=["empty", "mapping"])
def test_accounts_is_a_non_empty_list(accounts: object) -> None:
    shown = "[] (list)" if accounts == [] else "{'name': 'a'} (dict)"
    assert problems(accounts) == [f"accounts: expected a non-empty list of accounts, got {shown}"]

"""Duplicate YAML keys are errors with their path and line, in the config and the web config."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.config import ConfigError, load_config
from exporter.config.yamlstrict import DuplicateKeyError, load_strict
from exporter.web.config import check_web_config

CONFIG = """\
api:
  public_key: pub
  private_key: secret-private-key-123
targets:
  - key: k
    model: m1
    model: m2
"""


def test_duplicate_key_in_config_names_path_and_lines(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    with pytest.raises(ConfigError) as caught:
        load_config(str(path), {})
    assert caught.value.problems == [
        f'{path}:7:5: targets[0]: duplicate key "model" (first at line 6)']


def test_duplicate_key_in_web_config_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text("basic_auth_users:\n  alice: x\n  alice: y\n")
    problems = check_web_config(str(path))
    assert len(problems) == 1
    assert 'basic_auth_users: duplicate key "alice" (first at line 2)' in problems[0]
    assert f"{path}:3:3" in problems[0]


@pytest.mark.parametrize(("text", "path", "key"), [
    ("a: 1\na: 2\n", "", "a"),
    ("x:\n  - {b: 1}\n  - {b: 1, b: 2}\n", "x[1]", "b"),
    ('"odd key":\n  c: 1\n  c: 2\n', '["odd key"]', "c"),
], ids=["top", "list", "odd-key"])  # plain ids: mutmut passes them back to pytest
def test_duplicates_anywhere_are_found(text: str, path: str, key: str) -> None:
    with pytest.raises(DuplicateKeyError) as caught:
        load_strict(text)
    assert (caught.value.path, caught.value.key) == (path, key)


def test_merge_keys_and_aliases_still_load() -> None:
    text = "base: &b {a: 1, c: 3}\nchild:\n  <<: *b\n  a: 2\nloop: &l [*l]\n"
    data = load_strict(text)
    assert isinstance(data, dict)
    assert data["child"] == {"a": 2, "c": 3}

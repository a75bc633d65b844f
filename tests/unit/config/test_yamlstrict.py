"""Duplicate YAML keys are errors with their path and line, in the config and the web config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from exporter.config import ConfigError, load_config
from exporter.config.yamlstrict import (
    DuplicateKeyError,
    LimitError,
    StrictLoader,
    ValueYAMLError,
    load_file,
    load_file_lines,
    load_strict,
)
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


class _Tiny(StrictLoader):
    """The real loader with small limits, so each limit's boundary is tested in milliseconds."""

    max_depth, max_nodes, max_expanded = 3, 20, 30


def _limit(text: str) -> tuple[str, int, int] | None:
    """The limit ``text`` breaks under _Tiny, with where (line, column), or None."""
    try:
        yaml.load(text, Loader=_Tiny)
    except LimitError as error:
        mark = error.problem_mark
        return error.problem, mark.line if mark else -1, mark.column if mark else -1
    return None


@pytest.mark.parametrize(("text", "limit"), [
    ("[[1]]", None),
    ("a: [[1]]", ("nested more than 3 levels deep", 0, 5)),
    ("[" + ", ".join(["1"] * 19) + "]", None),
    ("[" + ", ".join(["1"] * 20) + "]", ("more than 20 values", 0, 58)),
    ("[&a [1, 2]" + ", *a" * 8 + "]", None),
    ("[&a [1, 2]" + ", *a" * 9 + "]", ("aliases expand to more than 30 values", 0, 0)),
], ids=["depth-3", "depth-4", "nodes-20", "nodes-21", "expanded-28", "expanded-31"])
def test_each_limit_at_its_boundary(text: str, limit: tuple[str, int, int] | None) -> None:
    assert _limit(text) == limit


def test_the_real_limits() -> None:
    assert (StrictLoader.max_depth, StrictLoader.max_nodes, StrictLoader.max_expanded) == (
        64, 150_000, 300_000)


@pytest.mark.parametrize(("text", "problem"), [
    ("a: 2024-02-30", "not a valid timestamp (day is out of range for month)"),
    ("a: !!float [1]", "not a valid float"),
    ("a: !!int x", "not a valid int (invalid literal for int() with base 10)"),
], ids=["date", "float-list", "int"])
def test_a_value_yaml_cannot_build_is_a_yaml_error_at_its_line(text: str, problem: str) -> None:
    with pytest.raises(ValueYAMLError) as caught:
        load_strict("x: 1\n" + text)
    assert caught.value.problem == problem
    assert caught.value.problem_mark is not None and caught.value.problem_mark.line == 1


def test_a_float_remembers_how_it_was_written() -> None:
    data = load_strict("x: 0.10\ny: 1_000.5\n")
    assert isinstance(data, dict)
    assert (data["x"], data["x"].written, data["y"], data["y"].written) == (
        0.1, "0.10", 1000.5, "1_000.5")


def test_each_value_has_the_line_of_its_key_and_an_alias_where_it_was_first_seen(
        tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text('a:\n  b: 1\n  "c d": [x, y]\nm: &m {p: 1}\nn: *m\n"": 2\n')
    data, lines = load_file_lines(str(path), 1000)
    assert data == {"a": {"b": 1, "c d": ["x", "y"]}, "m": {"p": 1}, "n": {"p": 1}, "": 2}
    assert lines == {"": 1, "a": 1, "a.b": 2, 'a["c d"]': 3, 'a["c d"][0]': 3,
                     'a["c d"][1]': 3, "m": 4, "n": 5, "n.p": 4, '[""]': 6}
    assert load_file(str(path), 1000) == data
    with pytest.raises(OSError, match="larger than"):
        load_file(str(path), 10)


@pytest.mark.parametrize(("text", "path"), [
    ("a-b/c_d:\n  x: 1\n  x: 2\n", "a-b/c_d"),
    ('"":\n  x: 1\n  x: 2\n', '[""]'),
    ('"a b' + "k" * 67 + '":\n  x: 1\n  x: 2\n', '["a b' + "k" * 53 + '...]'),
    ('"a b' + "k" * 55 + '":\n  x: 1\n  x: 2\n', '["a b' + "k" * 55 + '"]'),
    ("a:\n  - {x: 1, x: 2}\n", "a[0]"),
], ids=["plain", "empty", "long", "sixty", "list"])
def test_a_duplicates_path_is_one_short_line(text: str, path: str) -> None:
    with pytest.raises(DuplicateKeyError) as caught:
        load_strict(text)
    assert (caught.value.path, caught.value.key) == (path, "x")
    assert str(caught.value.problem).startswith(f'{path}: duplicate key "x" (first at line ')


def test_a_duplicate_at_the_top_says_so() -> None:
    with pytest.raises(DuplicateKeyError) as caught:
        load_strict("a: 1\nb: 2\na: 3\n")
    assert (caught.value.problem, caught.value.first_line) == (
        '(top level): duplicate key "a" (first at line 1)', 1)


class _Roomy(StrictLoader):
    """Deep and many nodes allowed: only the expanded size is limited (to 30)."""

    max_depth, max_nodes, max_expanded = 64, 1000, 30


def _expands_too_far(text: str, loader: type[StrictLoader] = _Roomy) -> bool:
    try:
        yaml.load(text, Loader=loader)
    except LimitError as error:
        assert str(error) == error.problem == "aliases expand to more than 30 values"  # noqa: PT017
        return True
    return False


@pytest.mark.parametrize(("text", "too_far"), [
    ("[&a [1, 2]" + ", *a" * 8 + ", 1, 1]", False),  # exactly 30
    ("[&a [1, 2]" + ", *a" * 8 + ", 1, 1, 1]", True),
    ("[&a [[1, 2, 3, 4], [5, 6, 7, 8]], *a, *a]", True),  # 34: nested under the alias
    ("[&a [1, *a], &b [1, 2, 3, 4, 5, 6, 7, 8, 9], *b, *b, *b]", True),  # recursive, then big
    ("[&a [1, *a]" + ", 1" * 26 + "]", False),  # the recursive alias counts once: 30
], ids=["thirty", "thirty-one", "nested", "recursive-then-big", "recursive-once"])
def test_the_expanded_size_counts_every_value_once_per_alias(text: str, too_far: bool) -> None:
    assert _expands_too_far(text) is too_far


def test_depth_is_counted_back_as_each_node_ends() -> None:
    assert _limit("[[1, [1]]]") == ("nested more than 3 levels deep", 0, 6)


def test_merge_keys_are_not_duplicates_and_do_not_hide_later_ones() -> None:
    text = "a: &a {x: 1}\nb: &b {y: 2}\nc:\n  <<: *a\n  <<: *b\n  z: 3\n"
    assert load_strict(text) == {"a": {"x": 1}, "b": {"y": 2}, "c": {"x": 1, "y": 2, "z": 3}}
    with pytest.raises(DuplicateKeyError) as caught:
        load_strict(text + "  z: 4\n")
    assert (caught.value.path, caught.value.key) == ("c", "z")


def test_complex_keys_are_left_to_pyyaml() -> None:
    with pytest.raises(yaml.constructor.ConstructorError) as caught:
        load_strict("? [a]\n: 1\n? [b]\n: 2\n")
    assert not isinstance(caught.value, DuplicateKeyError)
    assert "unhashable" in str(caught.value.problem)


def test_merge_and_complex_keys_have_no_line_of_their_own(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("a: &a {x: 1}\nb:\n  <<: *a\n  y: 2\n")
    assert load_file_lines(str(path), 1000)[1] == {"": 1, "a": 1, "a.x": 1, "b": 2, "b.y": 4}


def test_an_empty_file_has_no_value_and_no_lines(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("# nothing\n")
    assert load_file_lines(str(path), 1000) == (None, {})


@pytest.mark.parametrize(("text", "path"), [
    ("a:\n  b:\n    x: 1\n    x: 2\n", "a.b"),
    ('"é b":\n  x: 1\n  x: 2\n', '["é b"]'),
    ('"\\ud800 b":\n  x: 1\n  x: 2\n', '["\\ud800 b"]'),
    ('"a b' + "k" * 56 + '":\n  x: 1\n  x: 2\n', '["a b' + "k" * 53 + '...]'),
], ids=["nested", "accent", "surrogate", "sixty-one"])
def test_a_duplicates_path_is_escaped_and_cut_but_readable(text: str, path: str) -> None:
    with pytest.raises(DuplicateKeyError) as caught:
        load_strict(text)
    assert caught.value.path == path
    caught.value.path.encode()

"""The reader both config files share, called directly: each check's exact message, the
renderings of user values in messages (bounded, secrets masked), and the duration rules."""

from __future__ import annotations

import pytest

from exporter.config.reader import (
    Reader,
    at_least,
    at_most,
    build,
    cut,
    divides_day,
    got,
    join,
    positive,
    quote,
    render,
    scrub,
    whole,
)
from exporter.config.types import HaConfig
from exporter.config.yamlstrict import WrittenFloat


def test_refused_keys_and_values_say_why_instead_of_unknown() -> None:
    r = Reader(refused={"client_auth": "not supported here", "TLS10": "too old"})
    assert r.section("tls", {"client_auth": 1, "min": "TLS12", "off": None, 5: 1},
                     ("min", "off")) == {"min": "TLS12"}
    assert r.choice("tls.min", "TLS10", ("TLS12", "TLS13")) is None
    assert r.choice("tls.min", "TLS13", ("TLS12", "TLS13")) == "TLS13"
    assert r.problems == ["tls.client_auth: not supported here",
                          "tls.5: unknown key (expected one of: min, off)",
                          "tls.min: too old"]


def test_an_old_key_is_read_but_not_offered() -> None:
    r = Reader({})
    assert r.section("poll", {"period": "1h", "bogus": 1}, ("interval",), old=("period",)) == {
        "period": "1h"}
    assert r.problems == ["poll.bogus: unknown key (expected one of: interval)"]


def test_a_choice_quotes_what_was_written_as_python_does_cut_to_one_line() -> None:
    r = Reader()
    assert r.choice("p", "z" * 70, ("a", "b")) is None
    assert r.choice("p", None, ("a",)) is None
    assert r.problems == [f"p: must be one of a, b; got '{'z' * 56}..."]


def test_choices_keep_the_allowed_items_and_name_each_other_one() -> None:
    r = Reader()
    assert r.choices("c", "a", ("a",)) == []
    assert r.choices("c", ["a", "q", "b"], ("a", "b")) == ["a", "b"]
    assert r.problems == ['c: expected a list, got "a" (str)', "c[1]: must be one of a, b; got 'q'"]


def test_without_an_environment_text_is_taken_literally() -> None:
    r = Reader()
    assert r.string("p", "${HOME}") == "${HOME}"
    assert r.strings("l", ["${A}", 1, "b"]) == ("${A}", "b")
    assert r.strings("l", "x") is None
    assert r.problems == ["l[1]: expected a string, got 1 (int)",
                          'l: expected a list of strings, got "x" (str)']


def test_a_lone_surrogate_is_not_text() -> None:
    r = Reader({})
    assert r.string("p", "a\ud800") is None
    assert r.problems == ["p: holds a lone surrogate (like \\ud800), which is not text"]


def test_a_secret_is_never_shown_and_is_masked_wherever_it_is_echoed() -> None:
    r = Reader({"SK": "sk-0123456789"})
    assert r.string("api.private_key", 12345, secret=True) is None
    assert r.string("api.private_key", "${SK}", secret=True) == "sk-0123456789"
    assert r.string("api.endpoint", "${SK}") == "sk-0123456789"
    r.fail("api.endpoint", f"bad URL {quote('sk-0123456789')}")
    assert scrub(r.problems, r.secrets) == ["api.private_key: expected a string, got int",
                                            'api.endpoint: bad URL "<secret>"']


def test_empty_names_the_variables_that_are_set_but_empty() -> None:
    r = Reader({"E": "", "F": ""})
    assert r.string("p", "${E}x${E}") == "x"
    r.empty("p", "${E}${F}${G}")
    r.empty("q", "")
    Reader().empty("r", "${E}")
    assert r.problems == ["p: must not be empty (environment variable E, F is set but empty)",
                          "q: must not be empty"]


def test_variables_expand_and_are_checked() -> None:
    r = Reader({"A": "a"})
    assert r.string("p", "${A}-$${A}-$$") == "a-${A}-$$"
    assert r.string("p", "${B}") is None
    assert r.string("p", "${") is None
    assert r.problems == ["p: environment variable B is not set",
                          "p: ${ must be followed by a variable name and }, like ${HOME} (write"
                          " $${ for a literal ${)"]


@pytest.mark.parametrize(("raw", "value", "problem"), [
    (1, 1, None), (10, 10, None), (0, None, "p: must be between 1 and 10, got 0"),
    (11, None, "p: must be between 1 and 10, got 11"),
    (True, None, "p: expected an integer, got true (bool)"),
    (1.0, None, "p: expected an integer, got 1.0 (float)"),
], ids=["low", "high", "below", "above", "bool", "float"])
def test_an_integer_is_whole_and_within_its_bounds(raw: object, value: int | None,
                                                  problem: str | None) -> None:
    r = Reader()
    assert r.integer("p", raw, 1, 10) == value
    assert r.problems == ([] if problem is None else [problem])


@pytest.mark.parametrize(("raw", "value", "problem"), [
    (0, 0.0, None), (2.5, 2.5, None), (3, 3.0, None),
    (-0.5, None, "p: must be at least 0 (0 means unlimited), got -0.5"),
    (False, None, "p: expected a number of requests per second, got false (bool)"),
    ("5", None, 'p: expected a number of requests per second, got "5" (str)'),
    (float("nan"), None, "p: expected a number of requests per second, got nan (float)"),
], ids=["zero", "float", "int", "negative", "bool", "text", "nan"])
def test_a_rate_is_a_finite_number_of_at_least_zero(raw: object, value: float | None,
                                                    problem: str | None) -> None:
    r = Reader()
    assert r.rate("p", raw) == value
    assert r.problems == ([] if problem is None else [problem])


def test_a_flag_is_a_yaml_boolean() -> None:
    r = Reader()
    assert (r.flag("p", True), r.flag("p", False), r.flag("p", None), r.flag("p", 1)) == (
        True, False, None, None)
    assert r.problems == ["p: expected true or false, got 1 (int)"]


def test_a_mapping_may_be_null() -> None:
    r = Reader()
    assert (r.mapping("m", None), r.mapping("m", {"a": 1}), r.mapping("m", [1])) == (
        {}, {"a": 1}, {})
    assert r.problems == ["m: expected a mapping, got [1] (list)"]


def test_durations_apply_their_rules_in_order_and_name_what_was_written() -> None:
    r = Reader({})
    assert r.duration("d", "90s", positive) == 90
    assert r.seconds("d", "2m") == 120
    assert r.seconds("d", "1500ms") is None
    assert r.duration("d", "0s", positive, whole) is None
    assert r.duration("d", "7h", divides_day) is None
    assert r.duration("d", "6h", divides_day) == 6 * 3600
    assert r.duration("d", "x") is None
    assert r.problems == ["d: must be whole seconds, got 1500ms",
                          "d: must be greater than 0s, got 0s",
                          "d: must divide 1d evenly (like 15m, 1h or 6h), got 7h",
                          "d: invalid duration \"x\": unexpected 'x'; write whole numbers with"
                          " units (ms, s, m, h, d, w, y), like 30s, 5m or 1h30m"]


def test_the_bounds_of_at_least_and_at_most_are_inclusive() -> None:
    assert (at_least(5)(5), at_least(5)(4.5), at_most(60)(60), at_most(60)(61)) == (
        None, "must be at least 5s", None, "must be at most 1m")
    assert (positive(0.001), whole(2.0)) == (None, None)


def test_build_leaves_unread_values_at_their_defaults() -> None:
    assert build(HaConfig, timeout=None, username="u") == HaConfig(username="u")


@pytest.mark.parametrize(("path", "key", "joined"), [
    ("a", "b", "a.b"), ("", "b", "b"), ("a", 3, "a.3"), ("a", "b c", 'a["b c"]'),
    ("a", "x.y", 'a["x.y"]'), ("a", None, "a[null]"), ("", "[x]", '["[x]"]'),
], ids=["plain", "top", "index", "space", "dot", "null", "brackets"])
def test_join_spells_a_path_on_one_line(path: str, key: object, joined: str) -> None:
    assert join(path, key) == joined


def test_renderings_are_short_and_bounded() -> None:
    assert render(None) == "null" and render(True) == "true" and render(False) == "false"
    assert render("a\ud800") == '"a\\ud800"'
    assert render(2**70) == "<a very large integer>"
    assert render(2**63) == str(2**63)
    assert render(list(range(20))) == "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ...]"
    assert render("é") == '"é"'
    assert len(render("x" * 10_000)) == 4096
    assert quote("x" * 58) == '"' + "x" * 58 + '"'
    assert quote("x" * 59) == '\x00"' + "x" * 59 + '"\x01'
    assert scrub([f"p: got {quote('x' * 59)}"], []) == ["p: got \"" + "x" * 56 + "..."]
    assert cut("y" * 60) == "y" * 60
    assert cut("y" * 61) == "y" * 57 + "..."


@pytest.mark.parametrize(("value", "shown"), [
    ("5e6", '"5e6" (str: YAML reads a number written like this as text; write 5000000)'),
    (" -1.5E3 ", '" -1.5E3 " (str: YAML reads a number written like this as text; write -1500)'),
    ("2.5e-1", '"2.5e-1" (str: YAML reads a number written like this as text; write 0.25)'),
    ("1e19", '"1e19" (str: YAML reads a number written like this as text; write 1e+19)'),
    ("5e", '"5e" (str)'), (1.5, "1.5 (float)"), (None, "null"), ([1], "[1] (list)"),
], ids=["5e6", "spaced", "fraction", "huge", "not-a-number", "float", "null", "list"])
def test_got_says_the_value_its_type_and_how_yaml_read_it(value: object, shown: str) -> None:
    assert got(value) == shown


def test_a_key_holding_a_lone_surrogate_is_escaped_in_its_path() -> None:
    # YAML's "\ud800" escape makes one; a problem naming it must still encode (a reload reply).
    path = join("targets[0].labels", "a\ud800")
    assert path == 'targets[0].labels["a\\ud800"]'
    path.encode()


def test_a_problem_without_a_path_is_at_the_top_level() -> None:
    r = Reader()
    r.fail("", "expected a mapping")
    assert r.choice("p", 5, ("a",)) is None
    assert r.problems == ["(top level): expected a mapping", "p: expected a string, got 5 (int)"]


def test_renderings_at_their_edges() -> None:
    assert render(2**64) == "<a very large integer>"  # 65 bits
    assert render(2**64 - 1) == str(2**64 - 1)
    assert got(WrittenFloat(1.5, "1.50")) == "1.5 (float)"
    assert got("9.223372036854775808e18") == (
        '"9.223372036854775808e18" (str: YAML reads a number written like this as text; write'
        " 9.223372036854776e+18)")
    assert got("9.223372036854774784e18") == (
        '"9.223372036854774784e18" (str: YAML reads a number written like this as text; write'
        " 9223372036854774784)")

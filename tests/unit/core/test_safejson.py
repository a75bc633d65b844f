"""Bounded JSON at its edges: each limit's exact boundary, the words of each refusal, and how a
file that cannot be used is set aside (hostile documents at large: test_hostile_parsers.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from exporter.core.safejson import (
    Limits,
    SetAsideError,
    UnsafeJsonError,
    has_surrogate,
    load_or_set_aside,
    loads,
)

SMALL = Limits(max_bytes=100, max_containers=5, max_values=10, max_depth=4)
NOW = 1_700_000_000.9


def refusal(data: bytes, limits: Limits = SMALL) -> str:
    with pytest.raises(UnsafeJsonError) as refused:
        loads(data, limits)
    return str(refused.value)


def test_a_document_at_each_limit_is_taken() -> None:
    assert loads(b"[" + b" " * 98 + b"]", SMALL) == []  # exactly max_bytes
    assert loads(b"[[],[],[],[]]", SMALL) == [[], [], [], []]  # exactly max_containers
    assert loads(b"[" + b"0," * 10 + b"0]", SMALL) == [0] * 11  # exactly max_values commas
    assert loads(b"[[[[]]]]", SMALL) == [[[[]]]]  # exactly max_depth


def test_a_document_one_past_each_limit_is_refused_in_words() -> None:
    assert refusal(b"[" + b" " * 99 + b"]") == "larger than 100 bytes"
    assert refusal(b"[[],[],[],[],[]]") == "more than 5 objects and arrays"
    assert refusal(b"[" + b"0," * 11 + b"0]") == "more than 10 values"
    assert refusal(b"[[[[[]]]]]") == "nested more than 4 deep"
    assert refusal(b'{"a": [{"b": [[1]]}]}') == "nested more than 4 deep"


def test_text_inside_strings_counts_only_its_brackets_and_commas() -> None:
    assert loads(b'["' + b"X" * 90 + b'"]', SMALL) == ["X" * 90]


def test_a_document_the_decoder_cannot_nest_names_the_depth_limit() -> None:
    deep = b"[" * 40_000 + b"]" * 40_000  # past the C decoder's own guard
    assert refusal(deep, Limits(max_bytes=1 << 20, max_containers=50_000, max_values=0,
                                max_depth=7)) == "nested more than 7 deep"


@pytest.mark.parametrize("number", ["99999999999999999999", "-99999999999999999999",
                                    "9223372036854775808.0", "-9223372036854775808.0"])
def test_numbers_up_to_the_bounds_are_taken(number: str) -> None:
    assert loads(f"[{number}]", SMALL) == [json.loads(number)]
    assert loads(number, SMALL) == json.loads(number)


@pytest.mark.parametrize(("number", "why"), [
    ("100000000000000000000", "an integer has more than 20 digits"),
    ("-100000000000000000000", "an integer has more than 20 digits"),
    ("9.3e18", "a number is beyond ±2**63"),
    ("-9.3e18", "a number is beyond ±2**63"),
    ("1e999", "a number is beyond ±2**63"),
])
def test_numbers_past_the_bounds_are_refused_wherever_they_stand(number: str, why: str) -> None:
    for doc in (number, f"[{number}]", f'{{"a": [0, {number}]}}'):
        assert refusal(doc.encode()) == why


def test_what_is_not_json_says_where_or_why() -> None:
    assert refusal(b"[1, 2") == "not JSON (Expecting ',' delimiter at line 1 column 6)"
    assert refusal(b'"\xff"') == "not UTF-8 text"


def test_a_lone_surrogate_is_found_and_other_text_is_not() -> None:
    assert has_surrogate("a\ud800b")
    assert has_surrogate("\udfff")
    assert not has_surrogate("plain ascii")
    assert not has_surrogate("déjà 模型")
    assert not has_surrogate("")


# --- files that cannot be used are set aside ---

def parse_object(doc: object) -> dict[str, object]:
    if not isinstance(doc, dict):
        raise TypeError("not an object")
    return doc


def test_no_file_is_none(tmp_path: Path) -> None:
    assert load_or_set_aside(str(tmp_path / "state.json"), SMALL, parse_object, "state",
                             NOW) is None


def test_a_usable_file_is_parsed_and_stays(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text('{"a": 1}')
    assert load_or_set_aside(str(path), SMALL, parse_object, "state", NOW) == {"a": 1}
    assert path.exists()


@pytest.mark.parametrize(("content", "why"), [
    (b"x" * 101, "unreadable (larger than 100 bytes)"),  # the file's own refusal (strerror)
    (b'{"a": NaN}', "unreadable (NaN is not a JSON number)"),
    (b"[1]", "not a valid state (TypeError('not an object'))"),
])
def test_an_unusable_file_is_moved_aside_and_the_error_says_why_and_where(
        tmp_path: Path, content: bytes, why: str) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content)
    with pytest.raises(SetAsideError) as refused:
        load_or_set_aside(str(path), SMALL, parse_object, "state", NOW)
    assert str(refused.value) == (f"state file {path} is {why}; moved to "
                                  f"{path}.corrupt-1700000000")
    assert not path.exists()
    assert (tmp_path / "state.json.corrupt-1700000000").read_bytes() == content


def test_a_file_that_cannot_be_moved_aside_says_to_remove_it(tmp_path: Path) -> None:
    path = tmp_path / "cost.json"
    path.write_bytes(b"[")
    (tmp_path / "cost.json.corrupt-1700000000").mkdir()  # a directory is in the way
    (tmp_path / "cost.json.corrupt-1700000000" / "x").touch()
    with pytest.raises(SetAsideError) as refused:
        load_or_set_aside(str(path), SMALL, parse_object, "cost", NOW)
    assert str(refused.value) == (
        f"cost file {path} is unreadable (not JSON (Expecting value at line 1 column 2)) and "
        "could not be moved aside (Is a directory); remove it to start afresh")
    assert path.exists()


def raises(error: Exception) -> Callable[[object], object]:
    def parse(doc: object) -> object:
        raise error
    return parse


def test_a_parser_error_is_quoted_printable_and_bounded(tmp_path: Path) -> None:
    def aside(error: Exception) -> str:
        path = tmp_path / "state.json"
        path.write_text("{}")
        with pytest.raises(SetAsideError) as refused:
            load_or_set_aside(str(path), SMALL, raises(error), "state", 0)
        text = str(refused.value)
        return text[text.index("(") + 1:text.rindex("); moved to")]

    assert aside(UnsafeJsonError("bad\x1b[31m\u2028value")) == "bad?[31m?value"
    exact = KeyError("k" * 188)  # its repr is 200 characters long: kept whole
    assert len(repr(exact)) == 200
    assert aside(exact) == repr(exact)
    longer = KeyError("k" * 189)  # 201: cut to 200 and marked
    assert aside(longer) == repr(longer)[:200] + "…"

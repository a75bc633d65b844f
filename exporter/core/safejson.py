"""Bounded JSON for what comes from outside (API answers, state and cost files).

One error for every way a document can be unusable: too large, nested too deep, too many
objects for its size, NaN or Infinity, or a number no counter, time stamp or price could hold.
The checks are cheap and made before (or while) parsing, so a hostile document costs a bounded
amount of memory and time, and never raises RecursionError, OverflowError or MemoryError.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from exporter.core.smallfile import read_capped

T = TypeVar("T")
MAX_INT_DIGITS = 20  # 2**64 has 20 digits: enough for any count, anything more is garbage
MAX_INT = 10**MAX_INT_DIGITS
MAX_FLOAT = float(2**63)


class UnsafeJsonError(ValueError):
    """The document is not JSON the exporter will use; the message says why, never the data."""


@dataclass(frozen=True)
class Limits:
    """How much a document may be: bytes, objects and arrays in it, and nesting depth."""

    max_bytes: int
    max_containers: int
    max_values: int  # commas: numbers cost memory too (a float is 24 bytes from 2 of text)
    max_depth: int = 32


#: One API answer. A day of per-minute usage rows is under 1 MiB, ~7,500 objects and ~30,000
#: values; the caps bound what one parse may build (~20 MiB at worst), and answers.py lets only
#: two large answers be parsed at once.
API_ANSWER = Limits(max_bytes=4 << 20, max_containers=50_000, max_values=200_000)
#: The state and cost files: room for ~20,000 targets (the state of 10,000 is ~15 MiB); the
#: costliest file within these caps takes ~100 MiB to parse.
STATE_FILE = Limits(max_bytes=32 << 20, max_containers=600_000, max_values=2_000_000)


def loads(data: bytes | bytearray | str, limits: Limits) -> object:
    """The decoded document; UnsafeJsonError when it breaks ``limits`` or is not JSON."""
    _check_size(data, limits)
    doc = _decode(data, limits.max_depth)
    if isinstance(doc, dict | list):
        _check_tree(doc, limits.max_depth)
    else:
        _check_number(doc)
    return doc


def _check_size(data: bytes | bytearray | str, limits: Limits) -> None:
    """Bytes, brackets and commas, counted before parsing (brackets and commas in strings
    count too: that errs on the safe side)."""
    if len(data) > limits.max_bytes:
        raise UnsafeJsonError(f"larger than {limits.max_bytes} bytes")
    if _count(data, "{[") > limits.max_containers:
        raise UnsafeJsonError(f"more than {limits.max_containers} objects and arrays")
    if _count(data, ",") > limits.max_values:
        raise UnsafeJsonError(f"more than {limits.max_values} values")


def _count(data: bytes | bytearray | str, chars: str) -> int:
    if isinstance(data, str):
        return sum(data.count(c) for c in chars)
    return sum(data.count(c.encode()) for c in chars)


def _decode(data: bytes | bytearray | str, max_depth: int) -> object:
    """json.loads with every failure as UnsafeJsonError. Numbers are parsed natively (a hook
    per number costs ~4x the memory while parsing) and checked afterwards."""
    try:
        return json.loads(data, parse_constant=_constant)
    except UnsafeJsonError:  # from _constant: NaN or Infinity
        raise
    except RecursionError:  # the C decoder's own guard, far below what would hurt
        raise UnsafeJsonError(f"nested more than {max_depth} deep") from None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise UnsafeJsonError(f"not JSON ({exc.msg} at {where})") from None
    except UnicodeDecodeError:
        raise UnsafeJsonError("not UTF-8 text") from None
    except ValueError:  # int() refuses more than 4,300 digits
        raise UnsafeJsonError(f"an integer has more than {MAX_INT_DIGITS} digits") from None


def has_surrogate(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate ("\\ud800" is valid JSON and YAML): such a
    string is not text, and cannot be encoded to be sent, signed or rendered."""
    return not text.isascii() and _SURROGATE.search(text) is not None


_SURROGATE = re.compile("[\ud800-\udfff]")


def load_file(path: str | os.PathLike[str], limits: Limits) -> object:
    """The document in the regular file ``path``: OSError if unreadable, UnsafeJsonError if bad."""
    return loads(read_capped(path, limits.max_bytes), limits)


def _constant(name: str) -> object:
    raise UnsafeJsonError(f"{name} is not a JSON number")


def _check_tree(doc: object, max_depth: int) -> None:
    """Depth and numbers, iteratively (checking must not recurse), stacking only containers
    (a tuple per number would cost more memory than the numbers)."""
    stack: list[tuple[object, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > max_depth:
            raise UnsafeJsonError(f"nested more than {max_depth} deep")
        children = value.values() if isinstance(value, dict) else value
        assert isinstance(children, Iterable)
        for child in children:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
            else:
                _check_number(child)


def _check_number(value: object) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, int) and not -MAX_INT < value < MAX_INT:
        raise UnsafeJsonError(f"an integer has more than {MAX_INT_DIGITS} digits")
    if isinstance(value, float) and not abs(value) <= MAX_FLOAT:  # 1e999 parses as inf
        raise UnsafeJsonError("a number is beyond ±2**63")


class SetAsideError(ValueError):
    """A document file could not be used and was moved out of the way; the message says where."""


#: What a document parser may raise on a well-formed JSON value of the wrong shape.
SHAPE_ERRORS = (KeyError, TypeError, ValueError, AttributeError, ArithmeticError, IndexError)


def load_or_set_aside(path: str, limits: Limits, parse: Callable[[object], T], what: str,
                      now: float) -> T | None:
    """``parse`` of the JSON document at ``path``; None when there is no file.

    A file that cannot be read, breaks ``limits`` or does not parse (any of SHAPE_ERRORS) is
    renamed to ``PATH.corrupt-<now>`` so the next save starts clean and a restart never trips
    over it again; SetAsideError then says what was wrong and where the file went.
    """
    try:
        doc = load_file(path, limits)
    except FileNotFoundError:
        return None
    except (OSError, UnsafeJsonError) as exc:
        raise _set_aside(path, what, f"unreadable ({_reason(exc)})", now) from exc
    try:
        return parse(doc)
    except SHAPE_ERRORS as exc:
        raise _set_aside(path, what, f"not a valid {what} ({_reason(exc)})", now) from exc


def _set_aside(path: str, what: str, why: str, now: float) -> SetAsideError:
    aside = f"{path}.corrupt-{int(now)}"
    try:
        os.replace(path, aside)
    except OSError as exc:
        return SetAsideError(f"{what} file {path} is {why} and could not be moved aside "
                             f"({exc.strerror}); remove it to start afresh")
    return SetAsideError(f"{what} file {path} is {why}; moved to {aside}")


def _reason(exc: BaseException) -> str:
    """The error's own words, bounded: it may quote a value from the file."""
    text = (exc.strerror if isinstance(exc, OSError) and exc.strerror else None) or (
        str(exc) if isinstance(exc, UnsafeJsonError) else repr(exc))
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= 200 else text[:200] + "…"

"""Hostile input at each parser: bounded JSON, amounts, small files, Retry-After, API answers.

Every parser must answer garbage with its one well-defined error, never a foreign exception,
and never spend unbounded memory or time on it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.accounting.snapshot import Snapshot, TargetSnapshot
from exporter.api.answers import SMALL as SMALL_ANSWER
from exporter.api.answers import AnswerReader
from exporter.api.client import ApiClient
from exporter.api.errors import ApiError
from exporter.api.keys import parse_keys
from exporter.api.ratelimit import RateLimiter
from exporter.api.transport import _retry_after
from exporter.config import ApiConfig, Target
from exporter.core.amounts import bounded
from exporter.core.clock import FakeClock
from exporter.core.safejson import API_ANSWER, STATE_FILE, Limits, UnsafeJsonError, loads
from exporter.core.smallfile import FileRefusedError, read_capped
from exporter.metrics.exposition import render
from tests.bodies import StalledBody

ENDPOINT = "https://api.example.test/"
URL = ENDPOINT + "?Action=GetUMInferTokenUsage"
API = ApiConfig(endpoint=ENDPOINT, public_key="pub", private_key="private-key-x", timeout=5.0)
TARGET = Target(key="k", model="m")
SMALL = Limits(max_bytes=1000, max_containers=20, max_values=50, max_depth=4)


# --- bounded JSON ---

@pytest.mark.parametrize(("text", "why", "limits"), [
    ('{"origin": Infinity}', "Infinity is not a JSON number", SMALL),
    ('{"a": NaN}', "NaN is not a JSON number", SMALL),
    ("[-Infinity]", "-Infinity is not a JSON number", SMALL),
    ("1e999", "beyond", SMALL),
    ("1" * 5000, "more than 20 digits", API_ANSWER),
    ("[" * 100_000 + "]" * 100_000, "objects and arrays", API_ANSWER),
    ("[" * 5 + "]" * 5, "nested more than 4 deep", SMALL),
    ('{"a": {"b": {"c": {"d": {}}}}}', "nested more than 4 deep", SMALL),
    ("x" * 1001, "larger than 1000 bytes", SMALL),
    ("[1, 2", "not JSON", SMALL),
    ("[" + "0.5," * 60 + "0.5]", "more than 50 values", SMALL),
])
def test_unsafe_json_is_refused_with_one_error(text: str, why: str, limits: Limits) -> None:
    with pytest.raises(UnsafeJsonError, match=why):
        loads(text.encode(), limits)


def test_deep_nesting_under_the_container_cap_is_refused_not_recursed() -> None:
    deep = b"[" * 40_000 + b"]" * 40_000
    with pytest.raises(UnsafeJsonError, match="nested more than"):
        loads(deep, Limits(max_bytes=1 << 20, max_containers=50_000, max_values=10))


def test_sane_json_passes_unchanged() -> None:
    doc = {"RetCode": 0, "Data": {"InTotal": 2**63 - 1, "Price": 0.27, "Name": "\ud800"}}
    assert loads(json.dumps(doc).encode(), API_ANSWER) == doc


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_bytes_never_raise_a_foreign_error(data: bytes) -> None:
    with contextlib.suppress(UnsafeJsonError):
        loads(data, SMALL)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                  max_size=3),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_json_value_is_accepted_or_refused_cleanly(value: object) -> None:
    text = json.dumps(value)  # may hold NaN, Infinity, huge ints: all must be refused cleanly
    with contextlib.suppress(UnsafeJsonError):
        loads(text, STATE_FILE)


# --- amounts ---

@pytest.mark.parametrize("text", ["1e999999999", "1e18", "NaN", "-0.1", "Infinity",
                                  "0.0000000000000000001", "1" * 200, "1,5", ""])
def test_amounts_out_of_bounds_are_value_errors(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 -- the one error type callers catch
        bounded(text)


@pytest.mark.parametrize(("text", "expected"), [("0.27", "0.27"), ("0.50", "0.50"),
                                                ("1E-18", "1E-18"), ("999999999999999999", None)])
def test_amounts_in_bounds_are_exact(text: str, expected: str | None) -> None:
    assert bounded(text) == Decimal(expected or text)


@given(st.text(max_size=40) | st.floats() | st.integers())
def test_amounts_never_raise_a_foreign_error(value: object) -> None:
    try:
        amount = bounded(value)
    except ValueError:
        return
    assert amount * 2**63 * 2**63 >= 0  # bounded amounts never overflow a Decimal context


# --- small files ---

def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "key"
    os.mkfifo(fifo)
    with pytest.raises(FileRefusedError, match="not a regular file \\(a FIFO\\)"):
        read_capped(fifo, 100)


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null"])
def test_devices_are_refused(device: str) -> None:
    with pytest.raises(FileRefusedError, match="character device"):
        read_capped(device, 100)


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OSError):  # noqa: PT011 -- EISDIR or our own refusal, both OSErrors
        read_capped(tmp_path, 100)


def test_a_file_over_its_cap_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"x" * 101)
    with pytest.raises(FileRefusedError, match="larger than 100 bytes"):
        read_capped(big, 100)
    big.write_bytes(b"x" * 100)
    assert read_capped(big, 100) == b"x" * 100


# --- Retry-After ---

@pytest.mark.parametrize("header", ["²", "٣", "1e5", "9" * 50, "-1", "Sun, 06 Nov 99999 08:49:37",
                                    "\x1b[31m", "x" * 10_000, "7.5"])
def test_odd_retry_after_is_ignored(header: str) -> None:
    assert _retry_after(header, 1_700_000_000.0) is None


@given(st.text(max_size=60))
def test_retry_after_never_raises(header: str) -> None:
    seconds = _retry_after(header, 1_700_000_000.0)
    assert seconds is None or seconds >= 0


# --- API answers through the client ---

class _Observer:
    def __init__(self) -> None:
        self.outcomes: list[str] = []

    def observe_call(self, outcome: str, retcode: str, seconds: float) -> None:
        self.outcomes.append(outcome)


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock() as mock:
        yield mock


def _call(observer: _Observer) -> ApiError:
    clock = FakeClock()
    client = ApiClient(API, requests.Session(), clock, random.Random(1),
                       RateLimiter(0, burst=1, clock=clock), observer)
    with pytest.raises(ApiError) as info:
        client.get_usage(TARGET, 0, 10, deadline=0.1)  # one attempt, no retries
    return info.value


@pytest.mark.parametrize(("body", "why"), [
    (b'{"RetCode": 0, "Data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "objects and arrays"),
    (b'{"RetCode": 0, "Data": {"InTotal": ' + b"[" * 1000 + b"]" * 1000 + b"}}", "nested"),
    (b'{"RetCode": 0, "Data": {"InTotal": NaN}}', "NaN"),
    (b'{"RetCode": 0, "Data": {"InTotal": 1' + b"0" * 5000 + b"}}", "digits"),
    (b" " * (API_ANSWER.max_bytes + 1), "larger than"),
])
def test_hostile_answers_are_invalid_responses(rsps: responses.RequestsMock, body: bytes,
                                               why: str) -> None:
    rsps.add(responses.POST, URL, body=body, status=200)
    observer = _Observer()
    error = _call(observer)
    assert error.category == "invalid_response"
    assert why in error.message
    assert observer.outcomes == ["invalid_response"]


class _Endless(io.RawIOBase):
    """200 MiB of spaces, made on demand; counts what was actually read."""

    def __init__(self) -> None:
        self.produced = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.produced >= 200 << 20:
            return 0
        size = len(buffer)
        buffer[:size] = b" " * size
        self.produced += size
        return size


def test_a_huge_answer_is_not_read_to_its_end(rsps: responses.RequestsMock) -> None:
    endless = _Endless()
    rsps.add(responses.POST, URL, body=io.BufferedReader(endless), status=200)
    error = _call(_Observer())
    assert error.category == "invalid_response"
    assert "larger than" in error.message
    assert endless.produced <= API_ANSWER.max_bytes + (1 << 20)


def test_a_429_with_an_odd_retry_after_is_an_http_error(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.POST, URL, body=b"{}", status=429, headers={"Retry-After": "²"})
    error = _call(_Observer())
    assert (error.category, error.throttled, error.retry_after) == ("http", True, None)


# --- rendering what the API sent ---

def test_a_lone_surrogate_in_a_label_renders_escaped() -> None:
    target = Target(key="k", model="m", labels=(("key_name", "evil\ud800"),))
    body = render(Snapshot((TargetSnapshot(target, up=True),)))
    assert b'key_name="evil\\\\ud800"' in body
    body.decode("utf-8")  # valid UTF-8 throughout


@given(st.text(max_size=20))
def test_any_label_value_renders_to_utf8(value: str) -> None:
    target = Target(key=value, model="m", labels=(("x", value),))
    render(Snapshot((TargetSnapshot(target, up=True),))).decode("utf-8")


# --- large answers take a slot ---

def _response(body: bytes) -> requests.Response:
    response = requests.Response()
    response.status_code = 200
    response.raw = io.BytesIO(body)
    return response


def test_a_large_answer_waits_for_a_slot_and_a_small_one_does_not() -> None:
    reader = AnswerReader("api.example.test", slots=1)
    large = b'{"RetCode": 0, "Data": {"Pad": "' + b"x" * (3 * SMALL_ANSWER) + b'"}}'
    held = threading.Semaphore(0)
    release = threading.Event()


    first = _response(b"")
    # A large body that stops mid-way until told to go on, holding the one slot.
    first.raw = io.BufferedReader(StalledBody(large, SMALL_ANSWER, held, release, 5))
    results: list[object] = []
    thread = threading.Thread(target=lambda: results.append(reader.read(first, 5)))
    thread.start()
    assert held.acquire(timeout=5)
    assert reader.read(_response(b'{"RetCode": 0}'), 0.1) == {"RetCode": 0}
    with pytest.raises(ApiError) as info:
        reader.read(_response(large), 0.1)
    assert info.value.category == "timeout"
    release.set()
    thread.join(5)
    assert isinstance(results[0], dict)
    assert isinstance(reader.read(_response(large), 0.1), dict)  # the slot was given back


# --- key listings: what is sent back to the API must encode ---

@pytest.mark.parametrize("row", [
    {"KeyId": "k\ud800", "Name": "n"},
    {"KeyId": "k", "Name": "n", "GrantedModels": ["m\udfff"]},
])
def test_a_lone_surrogate_in_what_is_sent_back_is_an_invalid_response(
        row: dict[str, object]) -> None:
    with pytest.raises(ApiError) as info:
        parse_keys({"RetCode": 0, "Data": [row]})
    assert info.value.category == "invalid_response"


def test_a_lone_surrogate_in_a_key_name_is_kept_for_escaped_rendering() -> None:
    keys = parse_keys({"RetCode": 0, "Data": [{"KeyId": "k", "Name": "evil\ud800"}]})
    assert keys[0].name == "evil\ud800"

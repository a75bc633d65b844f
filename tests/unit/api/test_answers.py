"""Reading an answer's body: the size cap, the large-answer slots, and what an operator reads
when a body cannot be used (hostile bodies at large: test_hostile_parsers.py)."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests

from exporter.api.answers import SMALL, AnswerReader
from exporter.api.errors import ApiError
from exporter.core.safejson import API_ANSWER
from tests.bodies import StalledBody

HOST = "api.example.test:8443"
CAP = API_ANSWER.max_bytes


def response(body: bytes, **headers: str) -> requests.Response:
    answer = requests.Response()
    answer.status_code = 200
    answer.raw = io.BytesIO(body)
    answer.headers.update({name.replace("_", "-"): value for name, value in headers.items()})
    return answer


def padded(size: int) -> bytes:
    """A JSON object of exactly ``size`` bytes."""
    return b'{"Pad": "' + b"x" * (size - 11) + b'"}'


class Unread(io.RawIOBase):
    """A body that must not be read."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        raise AssertionError("the body was read")


class Broken(io.RawIOBase):
    """A body that breaks off after its first bytes."""

    def __init__(self) -> None:
        self.sent = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self.sent:
            self.sent = True
            buffer[:1] = b"{"
            return 1
        raise requests.exceptions.ChunkedEncodingError("broken") from ConnectionResetError(
            104, "Connection reset by peer")


@contextmanager
def every_slot_taken(reader: AnswerReader, slots: int) -> Iterator[None]:
    """Large answers that stop mid-way, holding each of ``reader``'s slots until the end."""
    held = threading.Semaphore(0)
    release = threading.Event()
    large = padded(3 * SMALL)

    threads = []
    for _ in range(slots):
        slow = response(b"")
        slow.raw = io.BufferedReader(StalledBody(large, SMALL, held, release, 10))
        threads.append(threading.Thread(target=reader.read, args=(slow, 10)))
        threads[-1].start()
        assert held.acquire(timeout=10)
    try:
        yield
    finally:
        release.set()
        for thread in threads:
            thread.join(10)


def test_an_answer_of_exactly_the_cap_is_read() -> None:
    body = padded(CAP)
    assert len(body) == CAP
    assert AnswerReader(HOST).read(response(body, Content_Length=str(CAP)), 5) == {
        "Pad": "x" * (CAP - 11)}


def test_an_answer_past_the_cap_is_refused_as_it_streams() -> None:
    with pytest.raises(ApiError) as info:
        AnswerReader(HOST).read(response(padded(CAP + 1)), 5)
    assert str(info.value) == f"invalid response: body from {HOST} is larger than {CAP} bytes"
    assert info.value.category == "invalid_response"


def test_an_answer_declared_past_the_cap_is_refused_unread() -> None:
    declared = response(b"", Content_Length=str(CAP + 1))
    declared.raw = io.BufferedReader(Unread())
    with pytest.raises(ApiError) as info:
        AnswerReader(HOST).read(declared, 5)
    assert str(info.value) == f"invalid response: body from {HOST} is larger than {CAP} bytes"


def test_a_declared_length_within_the_cap_is_read() -> None:
    assert AnswerReader(HOST).read(response(b'{"RetCode": 0}', Content_Length="14"), 5) == {
        "RetCode": 0}


def test_an_answer_that_breaks_off_is_a_transient_network_error() -> None:
    broken = response(b"")
    broken.raw = io.BufferedReader(Broken(), buffer_size=1)
    with pytest.raises(ApiError) as info:
        AnswerReader(HOST).read(broken, 5)
    assert str(info.value) == f"answer from {HOST} broke off: Connection reset by peer"
    assert (info.value.category, info.value.transient) == ("network", True)


def test_an_answer_of_up_to_small_bytes_needs_no_slot() -> None:
    reader = AnswerReader(HOST, slots=1)
    with every_slot_taken(reader, 1):
        assert reader.read(response(padded(SMALL)), 0) == {"Pad": "x" * (SMALL - 11)}
        with pytest.raises(ApiError) as info:
            reader.read(response(padded(SMALL + 1)), 0.25)
    assert str(info.value) == (f"a large answer from {HOST} waited 0.2s for other large "
                               "answers to be read")
    assert (info.value.category, info.value.transient) == ("timeout", True)


def test_a_large_answer_past_its_deadline_does_not_wait_for_a_slot() -> None:
    reader = AnswerReader(HOST, slots=1)
    with every_slot_taken(reader, 1):
        began = time.monotonic()
        with pytest.raises(ApiError, match=r"waited -3\.0s"):
            reader.read(response(padded(2 * SMALL)), -3)
        assert time.monotonic() - began < 0.9


def test_a_body_that_is_no_json_is_described_by_status_size_and_content_type() -> None:
    page = response(b"<html>", Content_Type="text/html;\x1b[31m" + "x" * 80)
    page.status_code = 502
    with pytest.raises(ApiError) as info:
        AnswerReader(HOST).read(page, 5)
    shown = repr("text/html;?[31m" + "x" * 45)  # printable, and 60 characters at most
    assert str(info.value) == (
        f"invalid response: body from {HOST} is not usable JSON: not JSON (Expecting value "
        f"at line 1 column 1) (HTTP 502, 6 bytes, Content-Type {shown})")
    assert (info.value.category, info.value.transient) == ("invalid_response", True)


def test_a_body_without_a_content_type_says_so() -> None:
    with pytest.raises(ApiError, match=r"\(HTTP 200, 1 bytes, Content-Type none\)$"):
        AnswerReader(HOST).read(response(b"["), 5)

"""Faults that never reach a JSON body: the status, headers and bytes (or the drop) they make."""

import pytest

from exporter.simulator import Fault, FaultKind
from exporter.simulator.outcome import Outcome, transport_outcome


def test_no_fault_is_no_transport_outcome() -> None:
    assert transport_outcome(None, 1.0) is None


@pytest.mark.parametrize("kind", [FaultKind.RETCODE, FaultKind.MALFORMED, FaultKind.LATENCY,
                                  FaultKind.EMPTY_DATA])
def test_faults_of_the_body_are_no_transport_outcome(kind: FaultKind) -> None:
    assert transport_outcome(Fault(kind), 0.0) is None


def test_a_timeout_that_answers_is_no_transport_outcome() -> None:
    assert transport_outcome(Fault(FaultKind.TIMEOUT, delay=2.0, then="answer"), 0.5) is None


def test_an_http_error_is_plain_text_naming_its_status() -> None:
    assert transport_outcome(Fault(FaultKind.HTTP, status=503), 0.25) == Outcome(
        0.25, 503, b"simulated HTTP 503\n", "text/plain", ())


@pytest.mark.parametrize(("retry_after", "header"), [(None, "1"), (7.0, "7"), (0.5, "0.5"),
                                                     (0.0, "0")],
                         ids=["default", "whole", "fraction", "zero"])
def test_a_429_says_when_to_retry(retry_after: float | None, header: str) -> None:
    outcome = transport_outcome(Fault(FaultKind.HTTP, status=429, retry_after=retry_after), 0.0)
    assert outcome == Outcome(0.0, 429, b"simulated HTTP 429\n", "text/plain",
                              (("Retry-After", header),))


def test_a_crafted_answer_is_sent_as_given() -> None:
    fault = Fault(FaultKind.CRAFTED, status=200, body='{"RetCode": 0}', header=" X-Req :  a: b ",
                  repeat=3)
    assert transport_outcome(fault, 0.5) == Outcome(
        0.5, 200, b'{"RetCode": 0}', "application/json", (("X-Req", "a: b"),), repeat=3)


def test_a_crafted_header_without_a_value_and_no_header() -> None:
    named = transport_outcome(Fault(FaultKind.CRAFTED, header="X-Empty"), 0.0)
    assert named is not None
    assert (named.status, named.headers, named.body) == (500, (("X-Empty", ""),), b"")
    bare = transport_outcome(Fault(FaultKind.CRAFTED, body="x"), 0.0)
    assert bare is not None
    assert (bare.headers, bare.repeat) == ((), 1)


def test_a_crafted_body_keeps_lone_surrogates_as_bytes() -> None:
    outcome = transport_outcome(Fault(FaultKind.CRAFTED, body="a\udcff"), 0.0)
    assert outcome is not None
    assert outcome.body == b"a\xed\xb3\xbf"


def test_a_timeout_that_drops_closes_after_both_waits() -> None:
    fault = Fault(FaultKind.TIMEOUT, delay=2.0, then="drop")
    assert transport_outcome(fault, 0.5) == Outcome(2.5, drop=FaultKind.CLOSE)


@pytest.mark.parametrize("kind", [FaultKind.RESET, FaultKind.CLOSE])
def test_reset_and_close_drop_the_connection(kind: FaultKind) -> None:
    outcome = transport_outcome(Fault(kind), 0.75)
    assert outcome == Outcome(0.75, drop=kind)
    assert outcome.body == b""

"""What polling is doing, in words: one warning per failure however many targets share it, a
recovery said at the level its failure was, why the API has not answered yet, and since when
counting runs."""

from __future__ import annotations

import logging

import pytest

from exporter.api.errors import ApiError
from exporter.polling.status import NOT_ANSWERED, PollStatus

DOWN = ApiError("network", "connection refused", transient=True)
THROTTLED = ApiError("retcode", "rate limited", retcode=153)


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    found = [(r.levelname, r.getMessage()) for r in caplog.records
             if r.name == "exporter.polling.poller"]
    caplog.clear()
    return found


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, "exporter.polling.poller")
    return caplog


def test_a_failure_shared_by_targets_is_warned_once_and_each_recovery_said_at_its_level(
        log: pytest.LogCaptureFixture) -> None:
    status = PollStatus()
    status.failed("a", DOWN)
    status.failed("b", DOWN)
    assert lines(log) == [
        ("WARNING", "target a failing: connection refused"),
        ("DEBUG", "target b failing: connection refused (as logged for another target)")]
    assert status.reasons() == {"a": "connection refused", "b": "connection refused"}
    status.succeeded("b", None)
    status.succeeded("a", None)
    assert lines(log) == [("DEBUG", "target b recovered"), ("INFO", "target a recovered")]
    assert status.reasons() == {}
    status.succeeded("a", None)  # not failing: nothing to say
    assert lines(log) == []


def test_a_failure_is_warned_again_once_no_target_shares_it(
        log: pytest.LogCaptureFixture) -> None:
    status = PollStatus()
    status.failed("a", DOWN)
    status.failed("b", DOWN)
    status.succeeded("a", None)
    lines(log)
    status.failed("c", DOWN)  # b still fails with it: already said
    assert lines(log) == [
        ("DEBUG", "target c failing: connection refused (as logged for another target)")]
    status.succeeded("b", None)
    status.succeeded("c", None)
    lines(log)
    status.failed("a", DOWN)  # nobody fails with it now: said again
    assert lines(log) == [("WARNING", "target a failing: connection refused")]


def test_a_target_failing_another_way_leaves_its_old_failure(
        log: pytest.LogCaptureFixture) -> None:
    status = PollStatus()
    status.failed("a", DOWN)
    status.failed("a", THROTTLED)
    assert status.reasons() == {"a": "rate limited"}
    status.failed("b", DOWN)  # a no longer fails with it
    assert lines(log) == [("WARNING", "target a failing: connection refused"),
                          ("WARNING", "target a failing: rate limited"),
                          ("WARNING", "target b failing: connection refused")]


def test_before_the_api_answers_a_target_says_why(log: pytest.LogCaptureFixture) -> None:
    status = PollStatus()
    error = status.not_answered()
    assert (error.category, error.transient) == ("network", True)
    assert error.message == (f"{NOT_ANSWERED}: counting begins at the first poll it answers")
    assert NOT_ANSWERED == "the API has not answered yet"
    status.no_answer("timed out after 2s")
    assert status.not_answered().message == (
        "the API has not answered yet (timed out after 2s): counting begins at the first poll "
        "it answers")
    status.failed("a", status.not_answered())
    status.succeeded("a", 1_800_000_000)  # the API answered: the reason is old news
    assert status.not_answered().message == (
        "the API has not answered yet: counting begins at the first poll it answers")
    status.no_answer("refused")
    status.succeeded("a", 1_800_000_000)  # a target not failing keeps the reason
    assert "(refused)" in status.not_answered().message
    status.no_answer(None)
    assert "(" not in status.not_answered().message


def test_a_window_read_alone_is_said_once_per_window_and_reason(
        log: pytest.LogCaptureFixture) -> None:
    log.set_level(logging.INFO, "exporter.polling.poller")
    status = PollStatus()
    for _ in range(2):
        status.window_read_alone("1d", "the totals differ")
        status.window_read_alone("1d", "rows are missing")
        status.window_read_alone("1h", "the totals differ")
    said = "window %s is read with a call of its own, not summed from the widest window's " \
           "answer: %s"
    assert lines(log) == [("INFO", said % ("1d", "the totals differ")),
                          ("INFO", said % ("1d", "rows are missing")),
                          ("INFO", said % ("1h", "the totals differ"))]


def test_counting_since_is_the_earliest_of_the_targets_asked() -> None:
    status = PollStatus()
    assert status.counting_since({"a"}) is None
    status.succeeded("a", 300)
    status.succeeded("b", 200)
    status.succeeded("c", 100)
    status.succeeded("a", None)  # a later read does not forget when counting began
    assert status.counting_since({"a", "b"}) == 200
    assert status.counting_since({"a"}) == 300
    assert status.counting_since({"d"}) is None
    status.failed("b", DOWN)
    status.succeeded("b", 250)
    assert status.counting_since({"a", "b"}) == 250


def test_a_recovery_is_said_at_the_level_of_the_failure_it_ends(
        log: pytest.LogCaptureFixture) -> None:
    status = PollStatus()
    status.failed("a", DOWN)
    status.succeeded("a", None)  # warned: recovery at info
    status.failed("b", DOWN)
    status.failed("a", DOWN)  # this time b said it
    lines(log)
    status.succeeded("a", None)
    assert lines(log) == [("DEBUG", "target a recovered")]

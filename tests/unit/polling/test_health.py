"""A target's poll health by concern (polling.health): what each change does to it."""

from __future__ import annotations

from exporter.accounting.ledger import Read
from exporter.api.errors import ApiError
from exporter.core.usage import Totals
from exporter.polling.health import CatchUp, Failures, FirstAnswer, Outcome, Strikes

BUSY = ApiError("retcode", "RetCode 150", retcode=150, transient=True)
DENIED = ApiError("retcode", "RetCode 171", retcode=171, transient=False)


def test_a_failure_is_news_only_when_the_problem_changes_and_a_permanent_one_pauses() -> None:
    failures = Failures()
    assert [failures.failed(BUSY, 10.0, 300.0) for _ in range(2)] == [True, False]
    assert not failures.paused(10.0)  # transient: no pause
    assert failures.failed(DENIED, 20.0, 300.0)
    assert failures.paused(319.9) and not failures.paused(320.0)
    assert failures.by_reason() == (("retcode", 3),)
    failures.cleared()  # a success: the same problem is news again, the pause ends
    assert not failures.paused(21.0) and failures.failed(DENIED, 21.0, 300.0)
    failures.lift()
    assert not failures.paused(21.0) and failures.counts == {"retcode": 4}


def test_a_success_or_a_reload_ends_a_pause_at_once() -> None:
    # A monotonic clock may start near 0 (a fresh container): no pause may outlast either.
    failures = Failures()
    failures.failed(DENIED, 0.25, 300.0)
    failures.cleared()
    assert not failures.paused(0.5)
    failures.failed(DENIED, 0.25, 300.0)
    failures.lift()
    assert not failures.paused(0.5)


def test_outcome_and_strikes() -> None:
    outcome = Outcome()
    outcome.tried()
    outcome.succeeded(5.0)
    outcome.failed()
    assert (outcome.polled, outcome.up, outcome.last_success) == (True, False, 5.0)
    strikes = Strikes()
    assert [strikes.struck(100) for _ in range(3)] == [1, 2, 3]
    strikes.cleared(100)
    strikes.cleared(200)  # never struck: nothing to clear
    assert strikes.struck(100) == 1


def test_the_first_answer_is_taken_once() -> None:
    first = FirstAnswer()
    read = Read(0, 59, (0,))
    first.hold(read, Totals(tokens=1), 3.0)
    assert first.take() == (read, Totals(tokens=1), 3.0)
    assert first.take() is None and not first.no_reach
    first.refused()
    assert first.no_reach


def test_catching_up_happens_once_until_a_ledger_from_elsewhere_restarts_it() -> None:
    catchup = CatchUp()
    assert not catchup.track(50) and catchup.remaining is None  # nothing planned yet
    catchup.plan(100)
    assert not catchup.track(50) and catchup.remaining == 51
    assert catchup.track(101) and catchup.remaining == 0 and catchup.caught_up
    assert not catchup.track(101)  # once
    catchup.restart()
    assert (catchup.caught_up, catchup.remaining) == (False, None)
    assert catchup.track(150)  # well past the plan: nothing is behind it

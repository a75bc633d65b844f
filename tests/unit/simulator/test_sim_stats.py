"""What the simulator counts: calls by action, status and RetCode, and the recent usage calls."""

import json

from exporter.simulator.stats import NO_RESPONSE, CallStats


def test_nothing_counted_at_first() -> None:
    snapshot = CallStats().snapshot()
    assert (snapshot.by_action, snapshot.by_retcode, snapshot.by_status) == ({}, {}, {})
    assert (snapshot.usage_calls, snapshot.calls) == ((), 0)


def test_calls_are_counted_by_action_status_and_retcode() -> None:
    stats = CallStats()
    for action in ("GetUMInferTokenUsage", "", "GetUMInferTokenUsage"):
        stats.action(action)
    stats.outcome(200, 0)
    stats.outcome(200, 171)
    stats.outcome(NO_RESPONSE, None)
    stats.outcome(503, None)
    snapshot = stats.snapshot()
    assert snapshot.by_action == {"GetUMInferTokenUsage": 2, "": 1}
    assert snapshot.by_status == {200: 2, 0: 1, 503: 1}
    assert snapshot.by_retcode == {0: 1, 171: 1}
    assert snapshot.calls == 4


def test_a_snapshot_is_a_copy() -> None:
    stats = CallStats()
    stats.action("A")
    stats.outcome(200, 0)
    stats.usage((1, 2, "k", "m"))
    before = stats.snapshot()
    stats.action("A")
    stats.outcome(200, 0)
    stats.usage((3, 4, "k", ""))
    assert (before.by_action, before.by_status, before.by_retcode) == ({"A": 1}, {200: 1}, {0: 1})
    assert before.usage_calls == ((1, 2, "k", "m"),)
    assert stats.snapshot().usage_calls == ((1, 2, "k", "m"), (3, 4, "k", ""))


def test_only_the_most_recent_usage_calls_are_kept() -> None:
    stats = CallStats(limit=2)
    for start in range(3):
        stats.usage((start, start + 1, "k", "m"))
    assert stats.snapshot().usage_calls == ((1, 2, "k", "m"), (2, 3, "k", "m"))


def test_a_hundred_thousand_usage_calls_are_kept_by_default() -> None:
    stats = CallStats()
    for start in range(100_001):
        stats.usage((start, start, "k", "m"))
    calls = stats.snapshot().usage_calls
    assert (len(calls), calls[0][0]) == (100_000, 1)


def test_reset_starts_every_count_from_zero() -> None:
    stats = CallStats(limit=5)
    stats.action("A")
    stats.outcome(200, 0)
    stats.usage((1, 2, "k", "m"))
    stats.reset()
    assert stats.snapshot().as_json() == {"by_action": {}, "by_retcode": {}, "by_status": {},
                                          "usage_calls": []}
    for start in range(6):
        stats.usage((start, start, "k", "m"))
    assert len(stats.snapshot().usage_calls) == 5


def test_the_json_form_has_string_keys_and_list_calls() -> None:
    stats = CallStats()
    stats.action("A")
    stats.outcome(200, 153)
    stats.usage((1, 2, "k", ""))
    shown = stats.snapshot().as_json()
    assert shown == {"by_action": {"A": 1}, "by_retcode": {"153": 1}, "by_status": {"200": 1},
                     "usage_calls": [[1, 2, "k", ""]]}
    assert json.loads(json.dumps(shown)) == shown

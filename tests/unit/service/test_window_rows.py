"""One read for all of a target's windows: narrower windows summed from the rows of the widest
window's answer where no bucket straddles their start, read on their own where one may.

The sums are checked against what the simulator answers for each window read on its own, under
every way of bucketing it plays; the calls against its counts.
"""

from __future__ import annotations

import logging
import re

import pytest
from prometheus_client import CollectorRegistry

from exporter.accounting.windows import NO_ROWS, STRADDLED, WindowRows, aligned_end
from exporter.config import ApiConfig, Config, PollConfig, Target
from exporter.core.clock import FakeClock
from exporter.core.grid import Grid
from exporter.core.usage import Reading, Totals
from exporter.service import Service
from exporter.simulator import BucketPolicy
from exporter.simulator.build import (
    DEMO_PRIVATE_KEY,
    DEMO_PROJECT,
    DEMO_PUBLIC_KEY,
    build_simulator,
)

H, DAY = 3600, 86400
END = 1_767_225_600 + 5 * H + 59  # a minute's last second; a provider day began at 16:00 UTC


def tok(n: int) -> Totals:
    return Totals(n, 0, n, 1, 0)


def rows(end: int, *buckets: tuple[int, int], width: int | None = None) -> WindowRows:
    labels = tuple(label for label, _ in buckets)
    taken = WindowRows(end, width)
    taken.add(Reading(sum((tok(n) for _, n in buckets), Totals()), labels,
                      tuple(tok(n) for _, n in buckets)))
    return taken


def test_a_narrower_window_is_the_sum_of_the_rows_from_its_start() -> None:
    start = END - H + 1  # a minute line
    taken = rows(END, (start - 120, 5), (start - 60, 7), (start, 11), (END - 59, 13))
    assert taken.total(H) == tok(11) + tok(13)
    assert taken.total(60) == tok(13)
    assert taken.total(2 * H) == tok(5) + tok(7) + tok(11) + tok(13)
    assert isinstance(taken.total(1), str)  # its start lies inside the last minute's bucket


def test_a_bucket_that_may_straddle_the_start_makes_the_window_a_read_of_its_own() -> None:
    start = END - H + 1
    hourly = rows(END, (start - H - 1800, 5), (start - 1800, 7))  # hours on the half hour
    assert hourly.total(H) == STRADDLED
    assert rows(END, (start - 60, 3)).total(H) == STRADDLED  # one label: a width unknown
    assert rows(END, (start - 60, 3), width=60).total(H) == Totals()  # the measured width
    assert rows(END, (start + 60, 3)).total(H) == tok(3)  # after the start: inside
    assert rows(END).total(H) == Totals()  # no usage at all: none in the narrower


def test_rows_that_do_not_add_up_to_the_totals_are_not_summed() -> None:
    taken = WindowRows(END, 60)
    taken.add(Reading(tok(5), (END - 60,), (tok(4),)))  # a row Type missing, say
    assert taken.total(60) == NO_ROWS
    taken = WindowRows(END, 60)
    taken.add(Reading(tok(5), (END - 60,)))  # labels but no rows (an older Reading)
    assert taken.total(60) == NO_ROWS
    late = WindowRows(END, 60)
    late.add(Reading(tok(5), (END * 1000,), (tok(5),)))  # milliseconds, say
    assert late.total(60) == "its Usages rows are labelled after the window's end"


@pytest.mark.parametrize(("width", "now", "end"), [
    (None, END + 30, END + 30), (60, END + 30, END), (60, END + 60, END + 60),
    (300, END + 30, END + 30 - 90), (H, END + 30, END + 30),  # an hour back is too far
])
def test_windows_end_on_a_line_of_small_buckets(width: int | None, now: int, end: int) -> None:
    assert aligned_end(Grid(), now, width) == end


def _gauges(body: str, key: str) -> tuple[dict[str, float], float]:
    tokens = {m.group(1): float(m.group(2)) for m in re.finditer(
        rf'uminfer_window_tokens{{[^}}]*key_id="{key}"[^}}]*window="(\w+)"[^}}]*}} (\S+)', body)}
    at = re.search(rf'uminfer_window_timestamp_seconds{{[^}}]*key_id="{key}"[^}}]*}} (\S+)', body)
    assert at is not None
    return tokens, float(at.group(1))


@pytest.mark.parametrize(("policy", "window_calls"), [
    (BucketPolicy(60), 1), (BucketPolicy(60, 0, "buckets"), 1),
    (BucketPolicy(300, 0, "outward"), 1),
    (BucketPolicy(H), 2), (BucketPolicy(DAY, 8 * H), 2), (BucketPolicy(60, rows=False), 2),
], ids=["minute", "minute-whole", "5min-outward", "hourly", "daily", "no-rows"])
def test_window_gauges_equal_the_windows_read_alone(
        policy: BucketPolicy, window_calls: int, caplog: pytest.LogCaptureFixture) -> None:
    """Against the simulator, whole exporter: each gauge is what the API answers for that
    window on its own at the gauges' time stamp, with one call for both windows where the
    buckets allow and, else, one each and one log line that says why."""
    clock = FakeClock(1_767_225_600.0 + 5 * H + 17)
    caplog.set_level(logging.INFO, "exporter.polling.poller")
    with build_simulator(3, 2, 1, clock, backfill=2 * DAY, tick=60, buckets=policy) as sim:
        target = Target("uminferapikey-demo01", "deepseek-ai/DeepSeek-V3", DEMO_PROJECT)
        config = Config(api=ApiConfig(endpoint=sim.url, public_key=DEMO_PUBLIC_KEY,
                                      private_key=DEMO_PRIVATE_KEY, timeout=5),
                        poll=PollConfig(), targets=(target,))
        service = Service(config, clock, CollectorRegistry(), lambda: config)
        try:
            service.run_cycle()
            clock.advance(config.poll.window_interval)
            sim.reset_stats()
            service.run_cycle()  # the counts and, due again, the windows
            tokens, at = _gauges(service.cache.body(False).decode(), target.key)
        finally:
            service.stop()
        usage_calls = sim.stats().by_action["GetUMInferTokenUsage"]
        for window in config.windows:
            read = sim.store.query(target.project, target.key, target.model,
                                   int(at) - window.seconds + 1, int(at), clock.time(), policy)
            assert tokens[window.name] == read.tokens, window
    assert tokens["1h"] > 0
    assert usage_calls == 1 + window_calls
    alone = [r.getMessage() for r in caplog.records if "call of its own" in r.getMessage()]
    assert len(alone) == window_calls - 1, alone

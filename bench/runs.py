"""The benchmark runs: each figure of issue #6, median of repetitions, ratios from the same run."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from bench import abuse, calls, procs, scrape


@dataclass(frozen=True)
class Sizes:
    """How big and how often; ``QUICK`` keeps the smoke test to seconds."""

    compare: tuple[int, ...] = (1000, 10000)  # scrape vs generate_latest
    curve: tuple[int, ...] = (100, 1000, 10000, 50000, 100000)
    single_cycle_from: int = 200000  # at and above: first cycle only (2 calls a target)
    steady_from: int = 50000  # at and above: a third cycle, as the first may have been cut
    steady_goal: int = 50000  # issue #29: one process keeps a 60 s steady cycle of these
    repeat: int = 5  # scrape repetitions
    cycle_targets: int = 1000
    cycle_latency: float = 0.1
    cycle_repeat: int = 3
    concurrency: int = 32
    rate_targets: int = 300
    rate_limit: float = 50.0
    rate_seconds: float = 8.0
    rate_repeat: int = 3
    call_polls: int = 120  # two hours at the default 60 s
    abuse: abuse.AbuseSizes = field(default_factory=abuse.AbuseSizes)


QUICK = Sizes(compare=(20,), curve=(10, 20, 30), single_cycle_from=30, steady_from=20,
              steady_goal=20,
              repeat=2, cycle_targets=10,
              cycle_latency=0.01, cycle_repeat=1, concurrency=4, rate_targets=10,
              rate_limit=20.0, rate_seconds=1.0, rate_repeat=1, call_polls=20,
              abuse=abuse.AbuseSizes(targets=5, flood=200, slowloris=20, slowloris_seconds=1.0,
                                     slow_readers=2, slow_read_seconds=1.0, pending=40,
                                     pending_seconds=1.0, hold=0.5))


@dataclass
class Results:
    """Everything BENCHMARKS.md reports."""

    sizes: Sizes
    scrapes: dict[int, scrape.ScrapeResult] = field(default_factory=dict)
    cycles: list[dict[str, Any]] = field(default_factory=list)  # the paced-out 100 ms runs
    rates: list[float] = field(default_factory=list)
    curve: dict[int, dict[str, Any]] = field(default_factory=dict)
    one_worker: dict[str, Any] = field(default_factory=dict)  # CPU of the work, no hand-offs
    floor: dict[str, Any] = field(default_factory=dict)  # a bare signed http.client round trip
    calls: dict[str, float] = field(default_factory=dict)  # calls per target per poll
    abuse: dict[str, Any] = field(default_factory=dict)  # the HTTP front under abuse


def run_all(sizes: Sizes, log: Any = print) -> Results:
    """Run every benchmark at ``sizes``."""
    results = Results(sizes)
    for count in sorted({*sizes.compare, *sizes.curve}):
        log(f"scrape: {count} targets")
        results.scrapes[count] = scrape.run(count, sizes.repeat, compare=count in sizes.compare)
    for i in range(sizes.cycle_repeat):
        log(f"first cycle: {sizes.cycle_targets} targets, {sizes.cycle_latency * 1000:g} ms "
            f"latency, run {i + 1}/{sizes.cycle_repeat}")
        results.cycles.append(procs.run(sizes.cycle_targets, sizes.cycle_latency,
                                        concurrency=sizes.concurrency, rate=0.0, cycles=2))
    for i in range(sizes.rate_repeat):
        log(f"rate limit {sizes.rate_limit:g}/s, run {i + 1}/{sizes.rate_repeat}")
        run = procs.run(sizes.rate_targets, 0.02, concurrency=16, rate=sizes.rate_limit,
                        interval=1.0, rate_seconds=sizes.rate_seconds)
        results.rates.append(run["rate"])
    log(f"CPU: {sizes.cycle_targets} targets, one worker thread")
    results.one_worker = procs.run(sizes.cycle_targets, 0.0, concurrency=1, rate=0.0, cycles=2)
    log(f"CPU floor: {sizes.cycle_targets} bare http.client signed round trips")
    results.floor = procs.run(sizes.cycle_targets, 0.0, concurrency=1, rate=0.0, floor=True)
    log(f"calls per target per poll at the defaults, {sizes.call_polls} polls on a fake clock")
    results.calls = calls.per_poll(sizes.call_polls)
    for count in sizes.curve:
        cycles = (1 if count >= sizes.single_cycle_from
                  else 3 if count >= sizes.steady_from else 2)
        log(f"scaling: {count} targets, {cycles} cycle(s), no added latency")
        results.curve[count] = procs.run(count, 0.0, concurrency=sizes.concurrency, rate=0.0,
                                         cycles=cycles)
    a = sizes.abuse
    log(f"HTTP abuse: flood of {a.flood}, slowloris of {a.slowloris}, {a.slow_readers} slow "
        f"readers, {a.pending} pending bodies, against {a.targets} targets")
    results.abuse = abuse.run_bench(a)
    return results


def median(values: list[float]) -> float:
    """The median, or NaN for no values."""
    return statistics.median(values) if values else float("nan")

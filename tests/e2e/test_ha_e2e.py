"""Two replicas, one truth: two real exporter processes with the same accounting.origin against
one API (two simulator front ends over one store, so each replica's calls are counted apart),
started minutes apart in API time, one killed with -9 and restarted without its state, scraped
by a real Prometheus with the shipped rules."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from exporter.core.clock import SystemClock
from exporter.core.usage import Totals
from exporter.simulator import Event, EventStore, SimulatorServer
from tests import fleet
from tests.harness import Exporter, wait_for
from tests.paths import ROOT
from tests.prom import Prometheus

pytestmark = pytest.mark.e2e  # starts processes

RULES = ROOT / "prometheus" / "rules.yml"
KEYS = ("ha-1", "ha-2", "ha-3")
SETTLE, PERIOD = 5, 10
USE = Totals(3, 2, 5, 1, 0)


class MovableClock(SystemClock):
    """Real time plus a shift that a test moves forward (the API's clock only)."""

    def __init__(self) -> None:
        self.shift = 0.0

    def time(self) -> float:
        return time.time() + self.shift


class Traffic:
    """Usage on every key at the API's current second, a few times a second."""

    def __init__(self, store: EventStore, clock: MovableClock) -> None:
        self.store, self.clock = store, clock
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stopping.wait(0.25):
            at = int(self.clock.time())
            for key in KEYS:
                self.store.add(Event(at, at, fleet.PROJECT, key, fleet.MODEL,
                                     fleet.sim_usage(USE)))


@contextmanager
def api() -> Iterator[tuple[EventStore, MovableClock, SimulatorServer, SimulatorServer]]:
    """One store, one clock, two front ends; a day of history, so the start probe finds the
    API's (one-second) buckets."""
    clock, store = MovableClock(), EventStore()
    now = int(clock.time())
    for start in range(now - 3 * 3600, now - 3, 7):
        # Labels one second apart: the API's one-second buckets are measured as such.
        for ts in (start, start + 1):
            for key in KEYS:
                store.add(Event(ts, ts, fleet.PROJECT, key, fleet.MODEL, fleet.sim_usage(USE)))
    with SimulatorServer(store, {fleet.PUBLIC: fleet.PRIVATE}, clock,
                         buckets=fleet.SECOND_BUCKETS) as one, \
            SimulatorServer(store, {fleet.PUBLIC: fleet.PRIVATE}, clock,
                            buckets=fleet.SECOND_BUCKETS) as two:
        yield store, clock, one, two


def config(sim: SimulatorServer, origin: int, peer: str, state: Path,
           interval: str = "1s") -> dict[str, Any]:
    stamp = datetime.fromtimestamp(origin, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return fleet.fleet_config(
        sim.url, KEYS,
        poll={"interval": interval, "settle": f"{SETTLE}s", "test_period": f"{PERIOD}s"},
        state={"path": str(state)}, accounting={"origin": stamp}, ha={"peers": [peer]})


def replicas(tmp_path: Path, stack: ExitStack) -> tuple[Exporter, Exporter]:
    """Exporters A and B, each in a directory of its own, killed when the test ends."""
    made = []
    for name in "ab":
        (tmp_path / name).mkdir()
        child = Exporter(tmp_path / name, None, env={"FLEET_PRIVATE_KEY": fleet.PRIVATE})
        stack.callback(child.kill)
        made.append(child)
    return made[0], made[1]


def traffic_on(store: EventStore, clock: MovableClock, stack: ExitStack) -> Traffic:
    """Traffic running until the test stops it or ends."""
    traffic = Traffic(store, clock)
    traffic.thread.start()
    stack.callback(traffic.stopping.set)
    return traffic


def counters(child: Exporter) -> dict[str, Totals | None]:
    samples = child.metrics()
    return {key: fleet.counters(samples, key) for key in KEYS}


def backfill_calls(sim: SimulatorServer, before: int) -> list[tuple[int, int, str, str]]:
    """Usage calls that read time before ``before``: catch-up of settled time."""
    return [call for call in sim.stats().usage_calls if call[0] < before]


def bootstrap_seconds(child: Exporter) -> float | None:
    found = re.findall(r"bootstrapped 3 of 3 targets from peer \S+ in ([0-9.]+)s", child.log())
    return float(found[-1]) if found else None


def test_two_replicas_started_apart_and_one_killed_agree_on_every_counter(
        tmp_path: Path) -> None:
    with api() as (store, clock, sim_a, sim_b), ExitStack() as stack:
        # Three minutes back, on a period line: both catch up from here, whenever they start.
        origin = int(clock.time()) // 60 * 60 - 180
        a, b = replicas(tmp_path, stack)
        a.write_config(config(sim_a, origin, b.url, tmp_path / "a" / "state.json"))
        b.write_config(config(sim_b, origin, a.url, tmp_path / "b" / "state.json"))
        prom = stack.enter_context(Prometheus(tmp_path, [f"127.0.0.1:{a.port}",
                                                         f"127.0.0.1:{b.port}"], [RULES]))
        traffic = traffic_on(store, clock, stack)

        # A alone: no peer answers, so it catches up from the origin through the API.
        a.start()
        wait_for(lambda: a.status("/metrics") == 200 and all(counters(a).values()), 30,
                 lambda: f"A's counters\n{a.log()}")
        assert "no peer gave its ledgers" in a.log()
        assert backfill_calls(sim_a, origin + 1), "A caught up from the origin"

        # Minutes later in API time, B starts: it takes A's settled ledgers in one call.
        clock.shift += 240
        time.sleep(3)
        b.start()
        b.wait_ready()
        wait_for(lambda: all(counters(b).values()), 30, lambda: f"B's counters\n{b.log()}")
        assert bootstrap_seconds(b) is not None, b.log()
        started_b = int(clock.time())
        # Nothing read from before its start but the open periods (settle + two periods):
        # neither settled time nor the start probe's day (its buckets came with the ledgers).
        assert backfill_calls(sim_b, started_b - SETTLE - 3 * PERIOD) == []

        # Steady state: what each replica costs the API over the same 10 s.
        time.sleep(3)
        before = sim_a.stats().calls, sim_b.stats().calls
        time.sleep(10)
        steady = sim_a.stats().calls - before[0], sim_b.stats().calls - before[1]

        # kill -9 A, lose its state, and start it again some seconds later.
        assert a.process is not None
        a.process.kill()
        a.process.wait(5)
        (tmp_path / "a" / "state.json").unlink()
        time.sleep(4)
        sim_a.reset_stats()
        restarted = int(clock.time())
        started = time.monotonic()
        a.start()
        a.wait_ready()
        wait_for(lambda: all(counters(a).values()), 30, lambda: f"A's counters\n{a.log()}")
        visible_after = time.monotonic() - started
        seconds = bootstrap_seconds(a)
        assert seconds is not None, a.log()
        assert backfill_calls(sim_a, restarted - SETTLE - 3 * PERIOD) == []

        # Stop the traffic and let everything settle on both.
        time.sleep(5)
        traffic.stopping.set()
        last = int(clock.time()) + 1
        settled = f"{last + SETTLE + PERIOD}"

        def both_settled() -> bool:
            for child in (a, b):
                for key in KEYS:
                    at = fleet.value(child.metrics(), "uminfer_settled_timestamp_seconds", key)
                    if at is None or at < last + 1:
                        return False
            return True

        wait_for(both_settled, 60, f"both replicas settled past {settled}")
        on_a, on_b = a.metrics(), b.metrics()
        for key in KEYS:
            exact = fleet.as_totals(store.truth(fleet.PROJECT, key, fleet.MODEL, origin,
                                                last + 1))
            assert fleet.counters(on_a, key) == fleet.counters(on_b, key) == exact, key
        # Every per-target counter of the pair is identical.
        same = {*fleet.QUANTITIES, "uminfer_settled_tokens_total", "uminfer_revisions_total",
                "uminfer_given_up_seconds_total", "uminfer_late_tokens_after_settle_total"}
        shared = [series for series in on_a if series[0] in same]
        assert len(shared) == len(same) * len(KEYS)
        assert {s: on_b.get(s) for s in shared} == {s: on_a[s] for s in shared}

        # Prometheus: the shipped rules' max over replicas is a counter through the kill, and
        # its increase over the whole run is exact for every target.
        time.sleep(3)
        for key in KEYS:
            rows = prom.query(f'target:uminfer_tokens_total:max{{key_id="{key}"}}[10m]')
            [row] = rows
            samples = [(float(t), float(v)) for t, v in row["values"]]
            values = [v for _, v in samples]
            assert values == sorted(values), f"{key}: the deduplicated counter went down"
            (first_t, first), (last_t, final) = samples[0], samples[-1]
            total = fleet.as_totals(store.truth(fleet.PROJECT, key, fleet.MODEL, origin,
                                                last + 1))
            assert final == total.tokens
            span = f"{int((last_t - first_t) * 1000)}ms"
            [inc] = prom.query(f'increase(target:uminfer_tokens_total:max{{key_id="{key}"}}'
                               f"[{span}] @ {last_t:.3f})")
            assert float(inc["value"][1]) == final - first, (key, inc, first, final)
            [resets] = prom.query(f'resets(target:uminfer_tokens_total:max{{key_id="{key}"}}'
                                  f"[{span}] @ {last_t:.3f})")
            assert float(resets["value"][1]) == 0
            # Never the sum of the replicas: the per-key daily figure is one replica's.
            [daily] = prom.query(
                f'project_id_key_id:uminfer_tokens:increase24h{{key_id="{key}"}}')
            assert float(daily["value"][1]) <= 1.5 * (final - first)

        print(f"\nHA e2e: bootstrap took {seconds:.3f}s in one call to the peer "
              f"(restart to counters exported {visible_after:.1f}s); API calls in a steady 10 s:"
              f" replica A {steady[0]}, replica B {steady[1]} (one replica alone makes one"
              f" share; the pair {sum(steady)})")


def test_a_pair_formed_from_a_running_exporter_survives_a_kill_of_the_one_ahead(
        tmp_path: Path) -> None:
    """The usual way to get a pair: A ran alone (no origin) and has state; the operator adds
    ``accounting.origin`` (before A's first start) and ``ha.peers`` and starts B. Then the
    replica that is ahead (it read last) is killed with -9 mid-period and restarted with its
    state. Both end at the usage since the origin; in Prometheus neither the recorded
    counter nor any replica's counters ever reset, and increase() over the run is exact.
    B polls every 4 s and A every second, so A is ahead when it dies and B stays behind for
    several scrapes and rule evaluations: a plain max over the replicas would go down."""
    with api() as (store, clock, sim_a, sim_b), ExitStack() as stack:
        origin = int(clock.time()) // PERIOD * PERIOD - 120  # before A's first start
        a, b = replicas(tmp_path, stack)
        state_a = tmp_path / "a" / "state.json"
        alone = config(sim_a, origin, b.url, state_a)
        del alone["accounting"], alone["ha"]
        a.write_config(alone)
        traffic = traffic_on(store, clock, stack)
        a.start()
        wait_for(lambda: a.status("/metrics") == 200 and all(counters(a).values()), 30,
                 lambda: f"A's counters\n{a.log()}")
        time.sleep(3)
        assert a.stop() == 0 and state_a.exists()

        prom = stack.enter_context(Prometheus(tmp_path, [f"127.0.0.1:{a.port}",
                                                         f"127.0.0.1:{b.port}"], [RULES]))
        a.write_config(config(sim_a, origin, b.url, state_a))
        b.write_config(config(sim_b, origin, a.url, tmp_path / "b" / "state.json", "4s"))
        a.start()
        b.start()
        wait_for(lambda: a.status("/metrics") == b.status("/metrics") == 200
                 and all(counters(a).values()) and all(counters(b).values()), 60,
                 lambda: f"both replicas' counters\nA:\n{a.log()}\nB:\n{b.log()}")
        assert "began counting after accounting.origin's day" in a.log()
        # Prometheus has scraped both for a while (A ahead of B in every scrape).
        both = f'count_over_time(uminfer_tokens_total{{key_id="{KEYS[0]}"}}[1m]) >= 4'
        prom.wait_query(both, 30, lambda result: len(result) == 2)

        # The one ahead (it read last) dies mid-period, then restarts with its state.
        ahead = a
        assert ahead.process is not None
        ahead.process.kill()
        ahead.process.wait(5)
        time.sleep(4)
        ahead.start()
        wait_for(lambda: ahead.status("/metrics") == 200 and all(counters(ahead).values()), 30,
                 lambda: f"restart\n{ahead.log()}")

        time.sleep(4)
        traffic.stopping.set()
        last = int(clock.time()) + 1

        def both_settled() -> bool:
            return all((fleet.value(child.metrics(), "uminfer_settled_timestamp_seconds", k)
                        or 0) >= last + 1 for child in (a, b) for k in KEYS)

        wait_for(both_settled, 60, "both replicas settled")
        time.sleep(3)  # Prometheus scrapes the settled values
        for key in KEYS:
            exact = fleet.as_totals(store.truth(fleet.PROJECT, key, fleet.MODEL, origin,
                                                last + 1))
            assert fleet.counters(a.metrics(), key) == fleet.counters(b.metrics(), key) == exact
            [row] = prom.query(f'target:uminfer_tokens_total:max{{key_id="{key}"}}[10m]')
            samples = [(float(t), float(v)) for t, v in row["values"]]
            (first_t, first), (last_t, final) = samples[0], samples[-1]
            assert final == exact.tokens
            span = f"{int((last_t - first_t) * 1000)}ms"
            at = f"[{span}] @ {last_t:.3f})"
            [inc] = prom.query(f'increase(target:uminfer_tokens_total:max{{key_id="{key}"}}{at}')
            assert float(inc["value"][1]) == final - first, (key, inc, first, final)
            for series in ("target:uminfer_tokens_total:max", "uminfer_tokens_total",
                           "uminfer_input_tokens_total", "uminfer_requests_total",
                           "uminfer_late_tokens_after_settle_total"):
                resets = prom.query(f'resets({series}{{key_id="{key}"}}{at}')
                assert resets and all(float(r["value"][1]) == 0 for r in resets), (series, resets)

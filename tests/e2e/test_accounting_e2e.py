"""The accounting promise through the real process, under the conditions issue #11 broke it with.

Each test runs the exporter as a child process against the simulator on loopback and compares
its counters with the simulator's ground truth, exactly: a reload during an API outage, a
corrupt state file with pricing on, a version 1 state migrated, the exporter's clock an hour off
or stepped by two hours (``faketime``), discovery failing at start, and a key missing from
some listings.

Clock tests and ``faketime`` (libfaketime 0.9.10, Debian's): by default libfaketime fakes
``CLOCK_MONOTONIC`` too, as the faked wall time, so a step of the fake wall clock would also
step Python's ``time.monotonic``. No real host does that (an NTP or manual step moves only
``CLOCK_REALTIME``), and the exporter rightly trusts monotonic time, so these tests set
``FAKETIME_DONT_FAKE_MONOTONIC=1``: only the wall clock is off, as on a drifted or stepped host.
The price: under that setting libfaketime breaks ``clock_nanosleep(CLOCK_MONOTONIC,
TIMER_ABSTIME)`` (wolfcw/libfaketime#426), which Python 3.11's ``time.sleep`` uses, so
``time.sleep`` raises EINVAL in the faked process (waits on events, locks and sockets are
fine). The configs here never make the exporter sleep (no rate limit, no pacing, no faults to
retry), and each clock test asserts the log shows no internal error, so a sleep that did happen
fails the test rather than hide.
"""

from __future__ import annotations

import glob
import json
import shutil
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from exporter.accounting.ledger import Ledger
from exporter.config import ModelPrice
from exporter.core.clock import SystemClock
from exporter.core.usage import Totals
from exporter.cost.pricing import cost_of
from exporter.simulator import (
    Catalog,
    Event,
    EventStore,
    Fault,
    FaultKind,
    SimKey,
    SimulatorServer,
)
from tests import fleet
from tests.harness import Exporter, Series, wait_for

pytestmark = pytest.mark.e2e

KEY = "k-acct"
ALPHA, BETA = "key-alpha", "key-beta"
MODEL, PROJECT = fleet.MODEL, fleet.PROJECT
PRICE = ModelPrice(MODEL, input=Decimal("0.27"), output=Decimal("1.10"),
                   request=Decimal("0.001"))
#: Short periods so that several of them pass within a test (period must divide a day).
FAST = {"test_period": "2s", "settle": "1s"}
CLOCKED = {"test_period": "5s", "settle": "2s"}
LISTING = "ListUMInferAPIKey"


def ident(key: str) -> str:
    """The state document's name for a fleet target."""
    return f"{PROJECT}/{key}/{MODEL}"


def one(samples: Mapping[Series, float], name: str) -> float | None:
    """A sample without labels."""
    return samples.get((name, frozenset()))


def settled(child: Exporter, key: str) -> int:
    """The target's ``uminfer_settled_timestamp_seconds`` (API seconds)."""
    value = fleet.value(child.metrics(), "uminfer_settled_timestamp_seconds", key)
    assert value is not None, f"{key} has no settled timestamp"
    return int(value)


def wait_exact(child: Exporter, sim: SimulatorServer, key: str, origin: int, want: Totals,
               after: int, timeout: float = 20.0) -> None:
    """Wait until usage up to ``after`` is settled; then the counters must be ``want``, which
    must be the simulator's truth over everything the exporter counts."""
    wait_for(lambda: settled(child, key) >= after, timeout,
             lambda: f"{key} settled past {after}; now {settled(child, key)}")
    got = fleet.counters(child.metrics(), key)
    truth = fleet.as_totals(sim.store.truth(PROJECT, key, MODEL, origin, settled(child, key)))
    assert (got, truth) == (want, want)


def wait_counted(child: Exporter, key: str, want: Totals, timeout: float = 20.0,
                 **extra: str) -> None:
    """Wait until the target's counters are exactly ``want``."""
    def last() -> Totals | None:
        return fleet.counters(child.metrics(), key, **extra)

    wait_for(lambda: last() == want, timeout, lambda: f"{key} counted {want}; last {last()}")


def wait_until(when: float, what: str) -> None:
    """Wait until the wall clock (the simulator's, the API's) reaches ``when``."""
    wait_for(lambda: time.time() >= when, max(0.0, when - time.time()) + 5, what)


def origin_of(child: Exporter, key: str) -> int:
    """The first second the exporter counts for a target it has not counted anything of."""
    return settled(child, key) + 1


# --- a: reload during an outage ----------------------------------------------------------------

def test_reload_during_an_outage_catches_up_every_token(tmp_path: Path) -> None:
    """A reload in an outage longer than ``state.max_backfill`` keeps the whole backlog: that
    limit is for the time no process was running, never for a running process."""
    state = {"path": str(tmp_path / "state.json"), "max_backfill": "1s"}
    with fleet.simulator() as sim:
        config = fleet.fleet_config(sim.url, [KEY], poll=FAST, state=state)
        with fleet.exporter(tmp_path, config) as child:
            origin = origin_of(child, KEY)
            wait_until(origin + 1, "counting to begin")
            total = Totals(10, 5, 15, 1, 0)
            fleet.add_usage(sim, KEY, total)
            wait_counted(child, KEY, total)

            outage = sim.faults.add(Fault(FaultKind.HTTP, status=503))
            wait_for(lambda: fleet.value(child.metrics(), "uminfer_up", KEY) == 0, 10, "down")
            began = time.time()
            for i in range(3):  # usage all through the outage, three periods long
                usage = Totals(100 * (i + 1), i + 1, 100 * (i + 1) + i + 1, 1, 0)
                ts = fleet.add_usage(sim, KEY, usage)
                total += usage
                wait_until(ts + 2, "a period of outage")
            assert time.time() - began > 5  # several periods, far beyond max_backfill (1 s)
            assert fleet.value(child.metrics(), "uminfer_up", KEY) == 0

            with requests.post(f"{child.url}/-/reload", timeout=10) as answer:
                assert answer.status_code == 200, answer.text
            reloaded = time.time()
            usage = Totals(7, 0, 7, 1, 0)
            ts = fleet.add_usage(sim, KEY, usage)  # still down after the reload
            total += usage
            wait_until(reloaded + 2, "the outage to outlast the reload")
            assert fleet.value(child.metrics(), "uminfer_up", KEY) == 0
            sim.faults.remove(outage)

            wait_exact(child, sim, KEY, origin, total, after=ts)
            samples = child.metrics()
            assert fleet.value(samples, "uminfer_up", KEY) == 1
            assert one(samples, "uminfer_backfill_skipped_seconds_total") == 0
            assert child.stop() == 0


# --- b: one state document: corruption with pricing, and the version 1 migration --------------

def priced_config(endpoint: str, state: Path) -> dict[str, Any]:
    """One target, priced, with a state file."""
    prices = {"input": str(PRICE.input), "output": str(PRICE.output),
              "request": str(PRICE.request)}
    return fleet.fleet_config(endpoint, [KEY], poll=FAST, state={"path": str(state)},
                              pricing={"currency": "USD", "models": {MODEL: prices}})


def cost(child: Exporter) -> float | None:
    """The target's ``uminfer_cost_total`` in USD."""
    return fleet.value(child.metrics(), "uminfer_cost_total", KEY, currency="USD")


def wait_priced(child: Exporter, want: Decimal) -> None:
    """Wait until the target's cost is exactly ``want`` (as the exposition renders it)."""
    wait_for(lambda: cost(child) == float(want), 10,
             lambda: f"cost {want}; last {cost(child)}")


def saved_entry(state: Path, key: str) -> dict[str, Any]:
    """The state document's entry for a target (version 2: ledger and cost together)."""
    doc = json.loads(state.read_text())
    assert doc["version"] == 2
    entry: dict[str, Any] = doc["targets"][ident(key)]
    return entry


def test_corrupt_state_restarts_counters_and_cost_together(tmp_path: Path) -> None:
    """Cost is price x counters after a corrupt state too: both start afresh, from one file."""
    state = tmp_path / "state.json"
    before = Totals(900_000, 300_000, 1_200_000, 40, 0)
    after = Totals(1000, 500, 1500, 3, 0)  # below ``before`` in every field
    with fleet.simulator() as sim:
        config = priced_config(sim.url, state)
        with fleet.exporter(tmp_path, config) as first:
            fleet.add_usage(sim, KEY, before)
            wait_counted(first, KEY, before)
            wait_priced(first, cost_of(before, PRICE))
            assert first.stop() == 0
        state.write_text('{"version": 2, "targets": {"' + ident(KEY) + '": {"ledger": ')

        with fleet.exporter(tmp_path, config) as second:
            assert list(tmp_path.glob("state.json.corrupt-*"))
            wait_counted(second, KEY, Totals())
            wait_priced(second, Decimal(0))
            fleet.add_usage(sim, KEY, after)
            wait_counted(second, KEY, after)
            wait_priced(second, cost_of(after, PRICE))
            assert second.stop() == 0
    entry = saved_entry(state, KEY)
    assert Ledger.from_dict(entry["ledger"]).counters() == after
    assert Decimal(entry["cost"]["cost"]["USD"]) == cost_of(after, PRICE)
    assert not Path(f"{state}.cost.json").exists()


def write_version_1(state: Path, key: str, counters: Totals, usd: str, period: int) -> None:
    """A state file and its ``.cost.json`` as version 1 wrote them: one settled ledger."""
    now = int(time.time())
    cursor = now - now % period
    zero = Totals().as_dict()
    ledger = {"origin": cursor - 10 * period, "period": period, "settle": 1, "audit": True,
              "cursor": cursor, "closed": counters.as_dict(), "revisions": 0,
              "revised_away": zero, "late_after_settle": zero, "skipped_seconds": 0,
              "open": [], "audits": []}
    state.write_text(json.dumps({"version": 1, "saved_at": now, "meta": {},
                                 "targets": {ident(key): ledger}}))
    meters = {ident(key): {"seen": counters.as_dict(), "cost": {"USD": usd}}}
    Path(f"{state}.cost.json").write_text(json.dumps({"version": 1, "meters": meters,
                                                       "budgets": {}}))


def test_version_1_state_and_cost_file_are_migrated(tmp_path: Path) -> None:
    """Counters and cost continue from a version 1 pair; the cost file goes after one write."""
    state = tmp_path / "state.json"
    before, old_cost = Totals(5000, 1000, 6000, 20, 0), Decimal("0.5")  # not price x before
    write_version_1(state, KEY, before, str(old_cost), period=2)
    with fleet.simulator() as sim, fleet.exporter(tmp_path, priced_config(sim.url, state)) as child:
        assert fleet.counters(child.metrics(), KEY) == before
        assert cost(child) == float(old_cost)
        assert not Path(f"{state}.cost.json").exists()  # ready: the first write is done
        assert Decimal(saved_entry(state, KEY)["cost"]["cost"]["USD"]) == old_cost
        more = Totals(3000, 700, 3700, 2, 0)
        fleet.add_usage(sim, KEY, more)
        wait_counted(child, KEY, before + more)
        wait_priced(child, old_cost + cost_of(more, PRICE))
        assert child.stop() == 0


# --- c: the exporter's clock off by an hour, and stepped by two -------------------------------

def faketime_library() -> str:
    """libfaketime's preload library; fails (never skips) when faketime is not installed."""
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1")
                   + glob.glob("/usr/lib/faketime/libfaketime.so.1"))
    if shutil.which("faketime") is None or not found:
        pytest.fail("faketime is not installed (Debian package faketime); run "
                    "scripts/install-system-deps as root")
    return found[0]


@contextmanager
def skewed_exporter(workdir: Path, config: Mapping[str, Any], faketime: Mapping[str, str]
                    ) -> Iterator[Exporter]:
    """The exporter with libfaketime preloaded, set by ``faketime`` (its environment
    variables), and a real monotonic clock (see the module docstring).

    Preloaded directly rather than through the ``faketime`` command, which sets the same two
    variables but runs the program as a child and does not pass SIGTERM on: the graceful stop
    checked here would kill the wrapper and orphan the exporter.
    """
    env = {"LD_PRELOAD": faketime_library(), "FAKETIME_DONT_FAKE_MONOTONIC": "1", **faketime}
    child = Exporter(workdir, config, env={"FLEET_PRIVATE_KEY": fleet.PRIVATE, **env})
    with child:
        child.wait_ready()
        yield child
        assert "internal error" not in child.log()


def offset_near(child: Exporter, want: float) -> bool:
    """Whether ``uminfer_api_clock_offset_seconds`` is within 3 s of ``want``."""
    offset = one(child.metrics(), "uminfer_api_clock_offset_seconds")
    return offset is not None and abs(offset - want) < 3


def wait_offset(child: Exporter, want: float) -> None:
    """Wait until the exporter measures the API's clock ``want`` seconds off its own."""
    wait_for(lambda: offset_near(child, want), 10, f"an API clock offset of {want:+g}s")


def clocked_config(endpoint: str) -> dict[str, Any]:
    """One target with a window gauge; no rate limit, so the exporter never sleeps."""
    return fleet.fleet_config(endpoint, [KEY], poll=CLOCKED, windows=["1m"],
                              advanced={"window_interval": "1s"})


def assert_on_api_time(child: Exporter) -> None:
    """No revision, and the window gauges end at the API's time, not the local clock's."""
    samples = child.metrics()
    assert fleet.value(samples, "uminfer_revisions_total", KEY) == 0
    window_end = fleet.value(samples, "uminfer_window_timestamp_seconds", KEY)
    # Read every second; 15 s of slack for a loaded machine is still far from a 1-2 h offset.
    assert window_end is not None and abs(window_end - time.time()) < 15


@pytest.mark.parametrize("skew", [3600, -3600])
def test_local_clock_an_hour_off_counts_exactly(tmp_path: Path, skew: int) -> None:
    """``faketime -f +3600s`` (and -3600s): periods close by the API's clock, so on-time and
    late-within-settle usage are counted exactly, with no revision."""
    with fleet.simulator() as sim, skewed_exporter(
            tmp_path, clocked_config(sim.url), {"FAKETIME": f"{skew:+d}s"}) as child:
        assert offset_near(child, -skew)
        origin = origin_of(child, KEY)
        assert abs(origin - time.time()) < 10  # anchored to the API's clock
        wait_until(origin + 1, "counting to begin")
        on_time, late = Totals(120, 30, 150, 2, 0), Totals(7, 3, 10, 1, 0)
        now = fleet.add_usage(sim, KEY, on_time)
        # Visible within settle (2 s):
        sim.store.add(Event(now, now + 1.5, PROJECT, KEY, MODEL, fleet.sim_usage(late)))
        wait_exact(child, sim, KEY, origin, on_time + late, after=now)
        assert_on_api_time(child)
        assert child.stop() == 0


def test_local_clock_stepped_two_hours_and_back_counts_exactly(tmp_path: Path) -> None:
    """The wall clock steps +2 h mid-run (``FAKETIME_TIMESTAMP_FILE``, re-read every second)
    and back: periods keep closing by the API's clock and every token is counted once.

    ``FAKETIME`` is left unset: it would win over the file.
    """
    offset = tmp_path / "faketime-offset"
    offset.write_text("+0s\n")
    # Re-read at most once a second: with FAKETIME_NO_CACHE every clock call opens the file,
    # which slows the whole process enough to miss the harness's 2 s deadlines under load.
    env = {"FAKETIME_TIMESTAMP_FILE": str(offset), "FAKETIME_CACHE_DURATION": "1"}
    with fleet.simulator() as sim, skewed_exporter(tmp_path, clocked_config(sim.url),
                                                   env) as child:
        origin = origin_of(child, KEY)
        wait_until(origin + 1, "counting to begin")
        total = Totals(50, 10, 60, 1, 0)
        fleet.add_usage(sim, KEY, total)
        wait_counted(child, KEY, total)
        for step, usage in ((7200, Totals(300, 100, 400, 3, 0)), (0, Totals(9, 1, 10, 1, 0))):
            offset.write_text(f"{step:+d}s\n")
            wait_offset(child, -step)
            ts = fleet.add_usage(sim, KEY, usage)
            total += usage
            # A period holding usage closes while the clock is stepped.
            wait_exact(child, sim, KEY, origin, total, after=ts)
        assert_on_api_time(child)
        assert child.stop() == 0


# --- d, e: discovery failing at start, and keys missing from some listings --------------------

@contextmanager
def keyed_simulator(*keys: str) -> Iterator[SimulatorServer]:
    """A simulator whose catalog lists ``keys`` in the fleet's project."""
    catalog = Catalog()
    for key in keys:
        catalog.add_key(SimKey(PROJECT, key, name_of(key), f"sk-secret-{key}"))
    with SimulatorServer(EventStore(), {fleet.PUBLIC: fleet.PRIVATE}, SystemClock(),
                         catalog=catalog, buckets=fleet.SECOND_BUCKETS) as sim:
        yield sim


def name_of(key: str) -> str:
    """The key's display name in the catalog (discovery exports it as ``key_name``)."""
    return key.removeprefix("key-")


def discovery_config(endpoint: str, state: Path) -> dict[str, Any]:
    """Discovery only (no static targets), listing every second, with a state file."""
    config = fleet.fleet_config(endpoint, [], poll=FAST, state={"path": str(state)},
                                discovery={"projects": [PROJECT], "models": [MODEL],
                                           "refresh": "1s"})
    del config["targets"]
    return config


def found(child: Exporter, key: str) -> Totals | None:
    """A discovered target's counters, or None when it is not in /metrics."""
    return fleet.counters(child.metrics(), key, key_name=name_of(key))


def test_discovery_failing_at_start_keeps_and_continues_the_ledgers(tmp_path: Path) -> None:
    """A start while ListUMInferAPIKey fails keeps the discovered targets' ledgers in the
    state; once listing works, their counters continue from where they stood."""
    state = tmp_path / "state.json"
    first_use, while_down, later = (Totals(40, 10, 50, 2, 0), Totals(8, 2, 10, 1, 0),
                                    Totals(3, 2, 5, 1, 0))
    with keyed_simulator(ALPHA) as sim:
        config = discovery_config(sim.url, state)
        with fleet.exporter(tmp_path, config) as first:
            wait_counted(first, ALPHA, Totals(), key_name=name_of(ALPHA))
            fleet.add_usage(sim, ALPHA, first_use)
            wait_counted(first, ALPHA, first_use, key_name=name_of(ALPHA))
            assert first.stop() == 0

        failing = sim.faults.add(Fault(FaultKind.RETCODE, retcode=150), action=LISTING)
        fleet.add_usage(sim, ALPHA, while_down)
        with fleet.exporter(tmp_path, config) as second:
            wait_for(lambda: (one(second.metrics(), "uminfer_discovery_failures_total")
                              or 0) >= 2, 15, "two failed listings")
            assert found(second, ALPHA) is None  # not listed yet, so not polled
            entry = saved_entry(state, ALPHA)
            assert Ledger.from_dict(entry["ledger"]).counters() == first_use
            assert isinstance(entry["parked_at"], int)

            sim.faults.remove(failing)
            seen: list[Totals] = []

            def listed() -> bool:
                now = found(second, ALPHA)
                if now is not None:
                    seen.append(now)
                return now is not None

            wait_for(listed, 10, "alpha listed again", interval=0.05)
            assert seen[0].dominates(first_use), seen[0]  # continued, never back to 0
            fleet.add_usage(sim, ALPHA, later)
            wait_counted(second, ALPHA, first_use + while_down + later, key_name=name_of(ALPHA))
            assert second.stop() == 0


def test_key_missing_from_listings_leaves_after_three_and_continues(tmp_path: Path) -> None:
    """Missing from one or two listings a key keeps its series and counter; from three in a row
    it leaves /metrics; when it is listed again its counter continues."""
    before, absent = Totals(20, 5, 25, 1, 0), Totals(6, 4, 10, 1, 0)
    with keyed_simulator(ALPHA, BETA) as sim, fleet.exporter(
            tmp_path, discovery_config(sim.url, tmp_path / "state.json")) as child:
        wait_counted(child, BETA, Totals(), key_name=name_of(BETA))
        fleet.add_usage(sim, BETA, before)
        wait_counted(child, BETA, before, key_name=name_of(BETA))

        assert sim.catalog.remove_key(PROJECT, BETA)
        # Each listing's outcome is published with its time stamp; one state per listing.
        history: list[tuple[float | None, float | None, Totals | None]] = []

        def gone() -> bool:
            samples = child.metrics()
            history.append((one(samples, "uminfer_discovery_last_success_timestamp_seconds"),
                            one(samples, "uminfer_discovery_keys"),
                            fleet.counters(samples, BETA, key_name=name_of(BETA))))
            return history[-1][2] is None

        wait_for(gone, 15, "beta to leave /metrics", interval=0.05)
        without_beta: dict[float | None, Totals | None] = {}
        for stamp, keys, beta in history:
            if keys == 1:
                without_beta.setdefault(stamp, beta)
        assert list(without_beta.values()) == [before, before, None]
        assert all(beta == before for _, _, beta in history[:-1])
        assert one(child.metrics(), "uminfer_discovery_targets") == 1

        fleet.add_usage(sim, BETA, absent)  # while it is not polled
        sim.catalog.add_key(SimKey(PROJECT, BETA, name_of(BETA), "sk-secret-again"))
        wait_counted(child, BETA, before + absent, key_name=name_of(BETA))
        assert child.stop() == 0

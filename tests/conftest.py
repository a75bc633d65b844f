"""Suite-wide hooks: a test that starts a process must be marked ``e2e`` (the fast loop,
``scripts/test --fast``, runs the others), and the run ends with a plain statement of every
test that did not run."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from typing import Any

import pytest
from hypothesis import settings

from exporter.core.clock import Clock, SystemClock
from exporter.simulator import EventStore, SimulatorServer

# No per-example deadline: it is a timing assertion, and this suite runs on shared, loaded
# machines (speed is measured in bench/, never asserted in a test).
settings.register_profile("uminfer", deadline=None)
settings.load_profile("uminfer")

StartSimulator = Callable[..., SimulatorServer]
"""``start(keys, *, store=None, clock=None, **options)``: a running simulator (see
:func:`start_simulator`)."""


class ProcessInUnitTestError(AssertionError):
    """A test not marked ``e2e`` tried to start a process."""


@pytest.fixture(autouse=True)
def _processes_only_in_e2e(request: pytest.FixtureRequest) -> Iterator[None]:
    """Only tests marked ``e2e`` may start a process (an exporter, Prometheus, promtool,
    git): the fast loop leaves them out and must not start one by surprise."""
    if request.node.get_closest_marker("e2e") is not None:
        yield
        return
    original = subprocess.Popen._execute_child  # type: ignore[attr-defined]

    def refuse(self: subprocess.Popen[Any], args: object, *rest: object) -> None:
        raise ProcessInUnitTestError(f"{request.node.nodeid} starts a process ({args!r:.120}): "
                                "mark it pytest.mark.e2e")

    subprocess.Popen._execute_child = refuse  # type: ignore[attr-defined]
    try:
        yield
    finally:
        subprocess.Popen._execute_child = original  # type: ignore[attr-defined]


@pytest.fixture
def start_simulator() -> Iterator[StartSimulator]:
    """Starts simulators of the API on loopback, each stopped when the test ends: ``keys`` are
    the key pairs it accepts, ``store`` its usage (empty), ``clock`` its time (the real one),
    and ``options`` go to SimulatorServer (``catalog``, ``buckets``, ``faults``...)."""
    with ExitStack() as running:
        def start(keys: Mapping[str, str], *, store: EventStore | None = None,
                  clock: Clock | None = None, **options: Any) -> SimulatorServer:
            server = SimulatorServer(store or EventStore(), keys, clock or SystemClock(), **options)
            return running.enter_context(server)

        yield start


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def not_run(stats: dict[str, list[object]]) -> list[tuple[str, str]]:
    """(node id, why) for every skipped, deselected or expected-to-fail test, in that order."""
    rows: list[tuple[str, str]] = []
    for report in stats.get("skipped", []):
        if isinstance(report, pytest.TestReport | pytest.CollectReport):
            rows.append((report.nodeid, f"skipped: {_skip_reason(report)}"))
    for item in stats.get("deselected", []):
        if isinstance(item, pytest.Item):
            rows.append((item.nodeid, "deselected (-k, -m or --deselect)"))
    for report in stats.get("xfailed", []):
        if isinstance(report, pytest.TestReport):
            rows.append((report.nodeid, f"xfailed: {getattr(report, 'wasxfail', '') or '-'}"))
    return rows


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which tests did not run and why, so a skip is never only a letter in a dot line."""
    rows = not_run(terminalreporter.stats)
    terminalreporter.section("tests that did not run", sep="=")
    selected = terminalreporter.config.option.markexpr
    if selected:  # a phase of the suite (scripts/test): the other phase runs the rest
        left = sum(why.startswith("deselected") for _, why in rows)
        rows = [(nodeid, why) for nodeid, why in rows if not why.startswith("deselected")]
        terminalreporter.write_line(f"only tests matching -m {selected!r} were collected"
                                    + (f" ({left} others left to the other phase)" if left
                                       else ""))
    if not rows:
        terminalreporter.write_line("every collected test ran")
        return
    terminalreporter.write_line(f"{len(rows)} tests did not run:")
    for nodeid, why in rows:
        terminalreporter.write_line(f"  {nodeid}: {why}")

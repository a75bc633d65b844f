"""Suite-wide hooks: the run ends with a plain statement of every test that did not run."""

from __future__ import annotations

import pytest


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
    if not rows:
        terminalreporter.write_line("every collected test ran")
        return
    terminalreporter.write_line(f"{len(rows)} tests did not run:")
    for nodeid, why in rows:
        terminalreporter.write_line(f"  {nodeid}: {why}")

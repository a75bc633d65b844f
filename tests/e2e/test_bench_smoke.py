"""The benchmark code at toy sizes, so it cannot rot; no timing is asserted here."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bench import report, runs, samples
from exporter.metrics.exposition import render

pytestmark = pytest.mark.e2e  # starts processes


def _samples(text: str) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
    return {(s.name, tuple(sorted(s.labels.items())), s.value)
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_the_comparison_registry_holds_exactly_our_samples() -> None:
    snap = samples.snapshot(60)
    ours = _samples(render(snap).decode())
    theirs = _samples(generate_latest(samples.client_registry(snap)).decode())
    assert ours == theirs
    assert len(ours) > 60 * 15  # every family is populated, not an empty comparison


def test_quick_run_produces_every_section() -> None:
    results = runs.run_all(runs.QUICK, log=lambda _text: None)
    sizes = runs.QUICK
    assert set(results.scrapes) == {*sizes.compare, *sizes.curve}
    for result in results.scrapes.values():
        assert result.body_bytes > 0 and result.gzip_bytes > 0
    # Every usage call succeeds; the one other call is the exporter learning the API's clock
    # (a plain GET, answered with RetCode 160 "Action missing").
    assert all(run["simulator"]["ok"] == run["simulator"]["calls"] - 1 > 0
               for run in results.cycles)
    first = results.cycles[0]["cycles"][0]
    # Counters plus one window read per target (the 24h window's rows give the 1h one), plus
    # one key health listing (ListUMInferAPIKey) per project of the sample (up to 7).
    projects = len({t.project for t in samples.targets(sizes.cycle_targets)})
    assert first["calls"] == 2 * sizes.cycle_targets + projects
    # The calls-per-poll figure the README quotes, measured as BENCHMARKS.md's row is.
    assert results.calls["usage"] == pytest.approx(1 + 1 / 5)  # a window read every 5 polls
    assert results.calls["all"] <= 1.25
    assert results.floor["cycles"][0]["calls"] == sizes.cycle_targets
    assert results.rates and all(rate > 0 for rate in results.rates)
    text = report.render(results, "scripts/bench --quick", 1.0)
    assert results.abuse["phases"]["after the flood"].latencies
    for heading in ("## Goals (issues #6 and #29)", "## How each figure is measured",
                    "## Scaling curve", "## The HTTP front under abuse"):
        assert heading in text
    assert text.count("≤ 0.05") == 2 * len(sizes.compare)
    assert f"| {sizes.curve[-1]:,} |" in text
    assert "| API calls per target per poll at the defaults" in text
    assert "| floor: a bare `http.client` signed round trip" in text
    assert "| `Poller.poll_target`: plan, ledger, buckets, health |" in text
    assert f"| steady cycle, {sizes.steady_goal:,} targets, one process" in text


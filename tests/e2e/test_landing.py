"""The landing page says, in words, what the exporter is doing now: targets up and down with
the reason, since when counting runs, the API's buckets, the state file (the real process)."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests import fleet
from tests.harness import Exporter, wait_for

pytestmark = pytest.mark.e2e

KEYS = ["k-a", "k-b"]


def _page(child: Exporter) -> str:
    if child.status("/-/healthy") == 0:
        return ""
    return " ".join(requests.get(f"{child.url}/", timeout=5).text.split())


def test_the_landing_page_tells_what_runs_now(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    with fleet.simulator() as sim:
        config = fleet.fleet_config(sim.url, KEYS, state={"path": str(state)})
        with fleet.exporter(tmp_path, config) as child:
            wait_for(lambda: "saved at" in _page(child) and "Counting since" in _page(child),
                     15, lambda: _page(child))
            page = _page(child)
    assert "Polling 2 targets every 1 s: 2 up, 0 down." in page
    assert "the counters (uminfer_*_total) hold the usage since then" in page
    assert "The API's time buckets are" in page
    assert f"State file {state}: saved at " in page


def test_the_landing_page_names_each_down_target_and_why(tmp_path: Path) -> None:
    config = fleet.fleet_config("http://127.0.0.1:9/", KEYS)
    with fleet.exporter(tmp_path, config, ready=False) as child:
        wait_for(lambda: "2 down" in _page(child), 15, lambda: _page(child))
        page = _page(child)
    assert "Polling 2 targets every 1 s: 0 up, 2 down." in page
    for key in KEYS:
        assert (f"{fleet.PROJECT}/{key}/{fleet.MODEL}: the API has not answered yet (cannot "
                "reach 127.0.0.1:9: connection refused)") in page
    assert "Counting has not begun" in page
    assert "No state file (state.path)" in page

"""The real exporter against the simulator: exact cost across a price change, live discovery,
budgets, and the secret API key in no output (debug log, /metrics, state files)."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from exporter.config import ModelPrice
from exporter.core.usage import Totals
from exporter.cost.pricing import cost_of
from exporter.simulator import Catalog, Event, SimKey, SimulatorServer
from tests import fleet
from tests.conftest import StartSimulator
from tests.fleet import SECOND_BUCKETS
from tests.harness import Exporter, wait_for

pytestmark = pytest.mark.e2e
DAY = 86400

PUBLIC, PRIVATE = "c-public", "c-private-0123456789"
PROJECT, MODEL = "org-cost", "deepseek-ai/DeepSeek-V3"
SECRET = "sk-SUPER-SECRET-DO-NOT-LEAK"
OLD = ModelPrice(MODEL, input=Decimal("0.27"), output=Decimal("1.10"), request=Decimal("0.001"))
NEW = ModelPrice(MODEL, input=Decimal("0.14"), output=Decimal("2.19"), request=Decimal("0.002"))


def config(endpoint: str, state: Path, price: ModelPrice) -> dict[str, Any]:
    """Discovery of every normal key of PROJECT, one model each, priced and budgeted."""
    return {
        "api": {"endpoint": endpoint, "public_key": PUBLIC, "private_key": PRIVATE,
                "timeout": "2s", "rate_limit": 0},
        "poll": {"interval": "1s", "settle": "4s", "test_period": "10s"},
        "advanced": {"window_interval": "1s"},
        "state": {"path": str(state)},
        "windows": ["1m"],
        "discovery": {"projects": [PROJECT], "models": [MODEL], "refresh": "1s",
                      "labels": {"source": "discovery"}},
        "pricing": {"currency": "USD", "models": {MODEL: {
            "input": str(price.input), "output": str(price.output),
            "request": str(price.request)}}},
        "budgets": [{"name": "alpha-day", "period": "daily", "key": "key-alpha", "tokens": 1000},
                    {"name": "all-month", "period": "monthly", "cost": "0.5"}],
    }


@pytest.fixture
def sim(start_simulator: StartSimulator) -> SimulatorServer:
    catalog = Catalog()
    for key, name in (("key-alpha", "alpha"), ("key-beta", "beta")):
        catalog.add_key(SimKey(PROJECT, key, name, f"{SECRET}-{name}"))
    return start_simulator({PUBLIC: PRIVATE}, catalog=catalog, buckets=SECOND_BUCKETS)


def labels(key: str, name: str) -> dict[str, str]:
    return {"project_id": PROJECT, "key_id": key, "model": MODEL, "key_name": name,
            "source": "discovery"}


def use(sim: SimulatorServer, key: str, totals: Totals) -> None:
    now = int(time.time())
    sim.store.add(Event(now, now, PROJECT, key, MODEL, fleet.sim_usage(totals)))


def tokens(exporter: Exporter, key: str, name: str) -> float | None:
    return exporter.value("uminfer_tokens_total", **labels(key, name))


def cost(exporter: Exporter, key: str, name: str) -> float | None:
    return exporter.value("uminfer_cost_total", currency="USD", **labels(key, name))


def admin(sim: SimulatorServer, method: str, path: str, **kwargs: Any) -> None:
    response = requests.request(method, f"{sim.url}_sim/{path}", timeout=5, **kwargs)
    with response:
        response.raise_for_status()


#: Far more than this test takes (about 10 s), far less than the per-test timeout (300 s).
RUN_BOUND = 120


def within_one_utc_day(seconds: int, now: float | None = None) -> float:
    """Seconds to wait so that the next ``seconds`` lie within one UTC day (0 when they do).

    The daily budget restarts at UTC midnight: a test that straddled it would see the day's use
    drop to what came after midnight and fail for a reason that is not a bug.
    """
    now = time.time() if now is None else now
    left = DAY - now % DAY  # until the next UTC midnight
    return 0.0 if left > seconds else left + 1


@pytest.mark.parametrize(("now", "wait"), [
    (1_700_006_400.0, 0.0),  # a UTC midnight: a whole day ahead
    (1_700_006_400.0 - 121, 0.0),
    (1_700_006_400.0 - 120, 121.0),  # 120 s to midnight: wait until one second past it
    (1_700_006_400.0 - 0.5, 1.5),
])
def test_the_run_is_kept_within_one_utc_day(now: float, wait: float) -> None:
    assert 1_700_006_400 % DAY == 0
    assert within_one_utc_day(RUN_BOUND, now) == wait


def test_cost_discovery_budgets_and_secrecy(tmp_path: Path, sim: SimulatorServer) -> None:
    time.sleep(within_one_utc_day(RUN_BOUND))  # "alpha-day" is a UTC day: never straddle one
    state = tmp_path / "state.json"
    exporter = Exporter(tmp_path, config(sim.url, state, OLD))
    with exporter:
        exporter.wait_ready()
        wait_for(lambda: tokens(exporter, "key-beta", "beta") == 0, 10, "both keys discovered")
        first, beta = Totals(1000, 200, 1200, 3, 0), Totals(10, 10, 20, 1, 0)
        use(sim, "key-alpha", first)
        use(sim, "key-beta", beta)
        wait_for(lambda: tokens(exporter, "key-alpha", "alpha") == 1200, 10, "alpha counted")
        wait_for(lambda: cost(exporter, "key-alpha", "alpha") == float(cost_of(first, OLD)), 5,
                 "alpha's cost at the old price")

        # A price change applies from now on; what was counted keeps its old price.
        exporter.write_config(config(sim.url, state, NEW))
        with requests.post(f"{exporter.url}/-/reload", timeout=10) as response:
            assert response.status_code == 200, response.text
        second = Totals(500, 50, 550, 2, 0)
        use(sim, "key-alpha", second)
        want = cost_of(first, OLD) + cost_of(second, NEW)
        wait_for(lambda: tokens(exporter, "key-alpha", "alpha") == 1750, 10, "second use")
        wait_for(lambda: cost(exporter, "key-alpha", "alpha") == float(want), 5,
                 f"cost {want} = old tokens x old price + new tokens x new price")
        assert exporter.value("uminfer_budget_used", budget="alpha-day", period="daily",
                              unit="tokens") == 1750
        assert exporter.value("uminfer_budget_limit", budget="all-month", period="monthly",
                              unit="USD") == 0.5
        window = float(cost_of(first + second, NEW))  # a gauge: today's price on the window
        wait_for(lambda: exporter.value("uminfer_window_cost", window="1m", currency="USD",
                                        **labels("key-alpha", "alpha")) == window, 5,
                 "the window's cost at the new price")

        # Keys come and go live; the others' counters and cost do not move.
        admin(sim, "POST", "keys", json={"project": PROJECT, "key_id": "key-gamma",
                                         "name": "gamma", "secret": f"{SECRET}-gamma"})
        admin(sim, "DELETE", "keys", params={"project": PROJECT, "key_id": "key-beta"})
        wait_for(lambda: tokens(exporter, "key-gamma", "gamma") == 0, 10, "gamma discovered")
        wait_for(lambda: tokens(exporter, "key-beta", "beta") is None, 10, "beta gone")
        assert tokens(exporter, "key-alpha", "alpha") == 1750
        assert cost(exporter, "key-alpha", "alpha") == float(want)
        assert exporter.value("uminfer_discovery_targets") == 2
        use(sim, "key-gamma", beta)
        wait_for(lambda: tokens(exporter, "key-gamma", "gamma") == 20, 10, "gamma counted")

        metrics_text = requests.get(f"{exporter.url}/metrics", timeout=5).text
        assert exporter.stop() == 0

    # A restart continues discovered targets' counters and cost from the state document.
    again = Exporter(tmp_path, None)
    with again:
        again.wait_ready()
        wait_for(lambda: tokens(again, "key-alpha", "alpha") == 1750, 10, "alpha continued")
        assert cost(again, "key-alpha", "alpha") == float(want)
        assert again.value("uminfer_budget_used", budget="alpha-day", period="daily",
                           unit="tokens") == 1750
        assert again.stop() == 0
    assert not Path(f"{state}.cost.json").exists()  # one document: cost lives in the state
    files = [again.log(), metrics_text, state.read_text()]
    for text in files:
        assert SECRET not in text
        assert PRIVATE not in text

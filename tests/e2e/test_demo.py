"""``--demo``: within 10 s, all five quantities and the window gauges for several keys and models,
rising."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.harness import Exporter, Series, wait_for

pytestmark = pytest.mark.e2e

COUNTERS = ("uminfer_input_tokens_total", "uminfer_output_tokens_total", "uminfer_tokens_total",
            "uminfer_requests_total", "uminfer_image_generations_total")
WINDOWS = ("uminfer_window_input_tokens", "uminfer_window_output_tokens", "uminfer_window_tokens",
           "uminfer_window_requests", "uminfer_window_image_generations")


def full(samples: dict[Series, float]) -> bool:
    """Every quantity, counter and window, for at least 3 keys and 3 models, and usage in both."""
    for name in COUNTERS + WINDOWS:
        series = [dict(labels) for n, labels in samples if n == name]
        if len({s["key_id"] for s in series}) < 3 or len({s["model"] for s in series}) < 3:
            return False
    windows = {dict(labels)["window"] for n, labels in samples if n == "uminfer_window_tokens"}
    return (windows == {"1h", "24h"} and total(samples, "uminfer_window_image_generations") > 0
            and keys_shown(samples))


KEY_FAMILIES = ("uminfer_key_info", "uminfer_key_expiry_timestamp_seconds",
                "uminfer_key_limit_amount", "uminfer_key_used_amount", "uminfer_cost_total")


def keys_shown(samples: dict[Series, float]) -> bool:
    """The cloud's numbers for every demo key (limits, use, expiry) and cost at list prices."""
    demo_keys = {dict(labels)["key_id"] for n, labels in samples if n == "uminfer_tokens_total"}
    return all({dict(labels)["key_id"] for n, labels in samples if n == name} == demo_keys
               for name in KEY_FAMILIES)


def total(samples: dict[Series, float], name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def test_demo_shows_everything_within_10_seconds_and_rises(tmp_path: Path) -> None:
    began = time.monotonic()
    with Exporter(tmp_path, None, "--demo") as demo:
        wait_for(lambda: demo.status("/-/healthy") == 200 and full(demo.metrics()), 10.0,
                 "a full /metrics from --demo")
        elapsed = time.monotonic() - began
        first = demo.metrics()
        # Counting begins at the first bucket start after the start (the simulator's buckets
        # are minutes, see docs/accounting.md), then rises every poll.
        wait_for(lambda: all(total(demo.metrics(), n) > total(first, n)
                             for n in ("uminfer_tokens_total", "uminfer_requests_total",
                                       "uminfer_cost_total")),
                 80.0, "demo counters to rise")
        assert demo.stop() == 0
    print(f"--demo: first full /metrics after {elapsed:.2f} s")

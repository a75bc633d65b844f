"""A first real start explains itself: when the API fails, the log says why in one line, once
for all the targets failing that way (not once per target), through the real process."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from exporter.simulator import SimulatorServer
from exporter.simulator.faults import Fault, FaultKind
from tests import fleet
from tests.harness import Exporter, wait_for

pytestmark = pytest.mark.e2e

KEYS = ["k-a", "k-b", "k-c"]
WARNED = re.compile(r"level=warn source=exporter\.polling\.poller .*"
                    r"msg=\"(target .* failing: .*)\"")


def _endpoint(case: str, sim: SimulatorServer) -> str:
    if case == "name not resolved":
        return "http://uminfer-no-such-host.invalid/"
    if case == "connection refused":
        return "http://127.0.0.1:9/"
    if case == "TLS failed":
        return sim.url.replace("http://", "https://")  # the simulator speaks plain HTTP
    return sim.url


def _api(case: str) -> dict[str, Any]:
    api: dict[str, Any] = {"timeout": "1s"}
    if case == "RetCode 171":
        api["private_key"] = "not-the-private-key"
    return api


@contextmanager
def _started(tmp_path: Path, case: str) -> Iterator[Exporter]:
    with fleet.simulator() as sim:
        if case == "HTTP 503":
            sim.faults.add(Fault(FaultKind.HTTP, status=503), action="GetUMInferTokenUsage")
        if case == "no answer":
            sim.faults.set_latency(3.0)
        config = fleet.fleet_config(_endpoint(case, sim), KEYS, api=_api(case))
        config["keys"] = {"enabled": False}  # key health logs its own failures
        with fleet.exporter(tmp_path, config, ready=False) as child:
            yield child


def _failures(child: Exporter, key: str) -> float:
    if child.status("/-/healthy") == 0:
        return 0.0  # not listening yet
    samples = child.metrics()
    return sum(v for (name, labels), v in samples.items()
               if name == "uminfer_target_failures_total" and ("key_id", key) in labels)


@pytest.mark.parametrize(("case", "why"), [
    ("name not resolved", "cannot reach uminfer-no-such-host.invalid: name not resolved"),
    ("connection refused", "cannot reach 127.0.0.1:9: connection refused"),
    ("TLS failed", "TLS failed"),
    ("no answer", "within 1.0s"),
    ("HTTP 503", "HTTP 503"),
    ("RetCode 171", "RetCode 171 (signature wrong: check api.private_key): "),
])
def test_the_first_failure_says_why_once_for_every_target(tmp_path: Path, case: str,
                                                           why: str) -> None:
    with _started(tmp_path, case) as child:
        wait_for(lambda: all(_failures(child, key) >= 2 for key in KEYS), 30,
                 "every target to fail twice")
        log = child.log()
    warned = WARNED.findall(log)
    assert len(warned) == 1, warned
    assert why in warned[0]

"""A state file that can never be written is a start-up error, not a silent empty /metrics: the
directory is made when it can be, else the start is refused with one line; a later failure holds
the counters but still shows target health and the self-metrics."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from exporter.core.usage import Totals
from exporter.simulator.faults import Fault, FaultKind
from tests import fleet
from tests.harness import free_port, wait_for

pytestmark = pytest.mark.e2e

KEYS = ["k-a"]


def _config(tmp_path: Path, state: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(fleet.fleet_config("http://127.0.0.1:9/", KEYS,
                                                      state={"path": str(state)})))
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exporter", *args], capture_output=True,
                          text=True, timeout=30, check=False,
                          env={**os.environ, "FLEET_PRIVATE_KEY": fleet.PRIVATE})


@pytest.mark.parametrize("case", ["no parent", "parent is a file", "path is a directory"])
def test_a_state_file_that_cannot_be_written_refuses_the_start(tmp_path: Path,
                                                               case: str) -> None:
    if case == "no parent":
        state = tmp_path / "missing" / "also-missing" / "state.json"
    elif case == "parent is a file":
        (tmp_path / "file").write_text("")
        state = tmp_path / "file" / "dir" / "state.json"
    else:
        state = tmp_path / "state.json"
        state.mkdir()
    result = _run(f"--config.file={_config(tmp_path, state)}",
                  f"--web.listen-address=127.0.0.1:{free_port()}")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert f"state file {state}" in lines[0]
    assert "--state.path" in lines[0] or "name a file" in lines[0]


def test_config_check_warns_when_the_state_directory_is_missing(tmp_path: Path) -> None:
    state = tmp_path / "not-yet" / "state.json"
    result = _run(f"--config.file={_config(tmp_path, state)}", "--config.check")
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == (
        f"warning: state file {state}: directory {state.parent} does not exist; it is created "
        f"at start when {tmp_path} is writable, else the exporter refuses to start")
    assert not state.parent.exists()  # a check changes nothing
    state.parent.mkdir()
    result = _run(f"--config.file={_config(tmp_path, state)}", "--config.check")
    assert (result.returncode, result.stderr) == (0, "")


def test_a_missing_state_directory_is_made_and_a_later_failure_still_shows_health(
        tmp_path: Path) -> None:
    directory = tmp_path / "state"
    state = directory / "state.json"
    with fleet.simulator() as sim:
        config = fleet.fleet_config(sim.url, KEYS, state={"path": str(state)})
        with fleet.exporter(tmp_path, config) as child:
            child.wait_ready()
            assert state.exists()
            usage = Totals(5, 6, 11, 1, 0)
            fleet.add_usage(sim, "k-a", usage)
            wait_for(lambda: fleet.counters(child.metrics(), "k-a") == usage, 10, "counted")
            directory.rename(tmp_path / "elsewhere")  # writes fail from now on (ENOTDIR)
            directory.write_text("")
            fleet.add_usage(sim, "k-a", usage)
            wait_for(lambda: (child.value("uminfer_state_writes_total", outcome="error") or 0)
                     >= 2, 10, "failed state writes")
            sim.faults.add(Fault(FaultKind.HTTP, status=503))
            wait_for(lambda: fleet.value(child.metrics(), "uminfer_up", "k-a") == 0, 10,
                     "the target shown down while the state is not saved")
            samples = child.metrics()
    assert fleet.counters(samples, "k-a") == usage  # held: not what a restart takes back
    assert (fleet.value(samples, "uminfer_target_failures_total", "k-a", reason="http") or 0) > 0
    assert "state not saved" in child.log()

"""Start the simulator and the exporter side as separate processes and collect their JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.pollproc import Job

ROOT = Path(__file__).resolve().parent.parent


def _env() -> dict[str, str]:
    """This environment with the repository on the path, so ``-m bench.…`` works from anywhere."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT)}


def run(targets: int, latency: float, **job: Any) -> dict[str, Any]:
    """One exporter run against a fresh simulator; both processes' figures in one dict."""
    sim = subprocess.Popen([sys.executable, "-m", "bench.simproc", str(targets), str(latency)],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert sim.stdout is not None and sim.stdin is not None
        url = sim.stdout.readline().strip()
        if not url.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"simulator did not start (said {url!r})")
        spec = json.dumps(asdict(Job(url=url, targets=targets, **job)))
        done = subprocess.run([sys.executable, "-m", "bench.pollproc", spec],
                              capture_output=True, text=True, check=True, env=_env())
        result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
        sim.stdin.close()
        result["simulator"] = json.loads(sim.stdout.readline())
    finally:
        for pipe in (sim.stdin, sim.stdout):
            if pipe is not None and not pipe.closed:
                pipe.close()  # stdin's EOF is the simulator's signal to stop
        sim.wait(timeout=30)
    return result

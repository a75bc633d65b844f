"""The exporter side in its own process: real Service, client and poller against a simulator URL.

Run as ``python -m bench.pollproc JSON_ARGS``; prints one JSON line of measurements. Process CPU
time (``time.process_time``) here is the exporter's alone: the simulator runs elsewhere.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
from dataclasses import asdict, dataclass
from urllib.parse import urlencode, urlsplit

from prometheus_client import CollectorRegistry

from bench import layers, samples
from bench.simproc import PRIVATE_KEY, PUBLIC_KEY
from exporter.api.signing import sign
from exporter.config import ApiConfig, Config, PollConfig
from exporter.core.clock import SystemClock
from exporter.service import Service


@dataclass(frozen=True)
class Job:
    """What to run: ``cycles`` back-to-back cycles, or ``rate_seconds`` of the paced loop."""

    url: str
    targets: int
    concurrency: int
    rate: float
    windows: bool = True
    cycles: int = 2
    interval: float = 60.0
    rate_seconds: float = 0.0
    floor: bool = False  # a bare http.client signed round trip per target instead


def config(job: Job) -> Config:
    """A production-shaped config for ``job`` (windows 1h and 24h unless turned off)."""
    api = ApiConfig(endpoint=job.url, public_key=PUBLIC_KEY, private_key=PRIVATE_KEY,
                    timeout=30.0, max_concurrency=job.concurrency, rate_limit=job.rate)
    windows = samples.WINDOWS if job.windows else ()
    return Config(api=api, poll=PollConfig(interval=job.interval), windows=windows,
                  targets=samples.targets(job.targets))


def api_calls(registry: CollectorRegistry) -> int:
    """Every API call attempt so far, whatever its outcome."""
    return int(sum(s.value for m in registry.collect() if m.name == "uminfer_api_requests"
                   for s in m.samples if s.name == "uminfer_api_requests_total"))


def rss_mib() -> tuple[float, float]:
    """Resident memory now and at its peak, in MiB (Linux /proc)."""
    fields = {}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            name, _, value = line.partition(":")
            fields[name] = value
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def run_cycles(service: Service, registry: CollectorRegistry,
               cycles: int) -> list[dict[str, float]]:
    """Wall, CPU and calls of each cycle (the first one starts from empty ledgers)."""
    results = []
    for _ in range(cycles):
        calls, cpu, began = api_calls(registry), time.process_time(), time.perf_counter()
        service.run_cycle()
        results.append({"wall": time.perf_counter() - began, "cpu": time.process_time() - cpu,
                        "calls": api_calls(registry) - calls})
    return results


def measure_rate(service: Service, registry: CollectorRegistry, seconds: float) -> float:
    """Calls per second over the second half of ``seconds`` of the real poll loop."""
    loop = threading.Thread(target=service.run, daemon=True)
    loop.start()
    time.sleep(seconds / 2)  # past the initial burst of the token bucket
    calls, began = api_calls(registry), time.perf_counter()
    time.sleep(seconds / 2)
    rate = (api_calls(registry) - calls) / (time.perf_counter() - began)
    service.stopping.set()
    return rate


def floor(job: Job) -> dict[str, float]:
    """The floor under CPU per target poll: per target, sign the usage call's parameters,
    POST them with a bare ``http.client`` keep-alive connection and decode the JSON answer,
    one thread, against the same simulator; no retries, limiter, parsing or ledger. Measured
    on the second pass over the targets, as the exporter's steady cycle is."""
    parts = urlsplit(job.url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    path = f"{parts.path or '/'}?Action=GetUMInferTokenUsage"
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    end, targets = int(time.time()), samples.targets(job.targets)
    for _ in range(2):  # the first pass warms up; the second is measured
        cpu, began = time.process_time(), time.perf_counter()
        for target in targets:
            params: dict[str, object] = {"Action": "GetUMInferTokenUsage", "KeyId": target.key,
                                         "Model": target.model, "ProjectId": target.project,
                                         "StartTime": end - 3600, "EndTime": end}
            conn.request("POST", path, urlencode(sign(params, PUBLIC_KEY, PRIVATE_KEY)),
                         headers)
            json.loads(conn.getresponse().read())
    conn.close()
    return {"wall": time.perf_counter() - began, "cpu": time.process_time() - cpu,
            "calls": job.targets}


def main(argv: list[str]) -> int:
    """Run the job given as JSON; print the measurements as JSON."""
    job = Job(**json.loads(argv[0]))
    cfg = config(job)
    if job.floor:
        measured = {"job": asdict(job), "cycles": [floor(job)],
                    "layers": layers.measure(job.url, cfg)}
        print(json.dumps(measured), flush=True)
        return 0
    registry = CollectorRegistry()
    service = Service(cfg, SystemClock(), registry, lambda: cfg)
    out: dict[str, object] = {"job": asdict(job)}
    if job.rate_seconds:
        out["rate"] = measure_rate(service, registry, job.rate_seconds)
    else:
        out["cycles"] = run_cycles(service, registry, job.cycles)
    out["rss_mib"], out["peak_rss_mib"] = rss_mib()
    out["body_bytes"] = len(service.cache.body(False))
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

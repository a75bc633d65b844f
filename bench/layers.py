"""What CPU per target poll is made of: the same usage call at each layer of the exporter's
stack, one thread, against the same simulator, in one process (``pollproc``'s floor job).

Each layer adds to the one before: a bare ``http.client`` round trip (the floor), urllib3's
pool, requests' adapter as ``api.transport`` drives it, the whole ``ApiClient.get_usage``
(limiter, bounded answer, JSON checks, Date, parsing), and ``Poller.poll_target`` (plan,
ledger, buckets, health).
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable
from urllib.parse import urlencode, urlsplit

import urllib3
from prometheus_client import CollectorRegistry

from bench import samples
from bench.simproc import PRIVATE_KEY, PUBLIC_KEY
from exporter.api.signing import sign
from exporter.api.transport import FormPoster, pooled_session
from exporter.config import Config, Target
from exporter.core.clock import SystemClock
from exporter.service import Service

ACTION = "GetUMInferTokenUsage"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _form(target: Target, end: int) -> str:
    params: dict[str, object] = {"Action": ACTION, "KeyId": target.key, "Model": target.model,
                                 "ProjectId": target.project, "StartTime": end - 3600,
                                 "EndTime": end}
    return urlencode(sign(params, PUBLIC_KEY, PRIVATE_KEY))


def _cpu_per_call(calls: Callable[[], int]) -> float:
    """Milliseconds of process CPU per call: the best of three passes after a warm-up."""
    calls()
    best = float("inf")
    for _ in range(3):
        began = time.process_time()
        count = calls()
        best = min(best, (time.process_time() - began) / count * 1000)
    return best


def measure(url: str, cfg: Config) -> dict[str, float]:
    """CPU per call at each layer, in milliseconds, for ``cfg``'s targets."""
    parts, end = urlsplit(url), int(time.time())
    targets = samples.targets(len(cfg.targets))
    path = f"{parts.path or '/'}?Action={ACTION}"
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    pool = urllib3.HTTPConnectionPool(parts.hostname or "127.0.0.1", parts.port, maxsize=1)
    poster = FormPoster(pooled_session(url, 1, {}))
    service = Service(cfg, SystemClock(), CollectorRegistry(), lambda: cfg)
    service.run_cycle()  # the clock learnt, ledgers begun

    def floor() -> int:
        for target in targets:
            conn.request("POST", path, _form(target, end), FORM)
            json.loads(conn.getresponse().read())
        return len(targets)

    def pooled() -> int:
        for target in targets:
            json.loads(pool.urlopen("POST", path, body=_form(target, end), headers=FORM).data)
        return len(targets)

    def adapter() -> int:
        for target in targets:
            with poster.post(f"{url.rstrip('/')}/?Action={ACTION}", _form(target, end),
                             30) as response:
                json.loads(response.content)
        return len(targets)

    def client() -> int:
        for target in targets:
            service._api.client.get_usage(target, end - 3600, end, time.monotonic() + 30)
        return len(targets)

    def poll() -> int:
        deadline = time.monotonic() + 60
        for target in targets:
            service._poller.poll_target(target, deadline)
        return len(targets)

    try:
        return {name: _cpu_per_call(calls) for name, calls in (
            ("floor", floor), ("urllib3", pooled), ("requests", adapter),
            ("client", client), ("poll", poll))}
    finally:
        conn.close()
        pool.close()
        service.stop()

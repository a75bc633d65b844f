"""The ``/_sim/`` JSON endpoints that steer a simulator running in another process."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from exporter.simulator.catalog import Catalog, SimKey, SimModel
from exporter.simulator.faults import FaultPlan, rule_from_json
from exporter.simulator.stats import CallStats
from exporter.simulator.store import Event, EventStore
from exporter.simulator.traffic import TrafficGenerator
from exporter.simulator.usage import Clock, Usage

Reply = tuple[int, dict[str, Any]]
_MAX_COUNT = 2**63 - 1


class AdminError(Exception):
    """The admin request cannot be carried out; the message says why."""


#: The amounts a key may be given, in SimKey's order, with their defaults (no limit, none used).
_AMOUNTS = (("daily_limit", ""), ("daily_used", "0"), ("monthly_limit", ""), ("monthly_used", "0"))


def _count(item: Mapping[str, Any], name: str) -> int:
    value = item.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_COUNT:
        raise AdminError(f"{name} must be an integer between 0 and 2**63-1, got {value!r}")
    return value


def event_from_json(item: Mapping[str, Any]) -> Event:
    """An event from ``{project, key, model, ts, visible_at | delay, input_tokens, ...}``."""
    if not isinstance(item.get("key"), str) or not isinstance(item.get("model"), str):
        raise AdminError("each event needs string fields key and model")
    ts = item.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, int):
        raise AdminError(f"ts must be integer Unix seconds, got {ts!r}")
    visible = float(item.get("visible_at", ts + float(item.get("delay", 0.0))))
    inp, out = _count(item, "input_tokens"), _count(item, "output_tokens")
    requests, images = _count(item, "requests"), _count(item, "image_generations")
    totals = Usage(inp, out, inp + out, requests, images)
    return Event(ts, visible, str(item.get("project", "")), item["key"], item["model"], totals)


class Admin:
    """Dispatches ``(method, path)`` to one small method each."""

    def __init__(
        self,
        store: EventStore,
        faults: FaultPlan,
        stats: CallStats,
        clock: Clock,
        traffic: TrafficGenerator | None,
        *,
        catalog: Catalog | None = None,
    ) -> None:
        self._store, self._faults, self._stats = store, faults, stats
        self._catalog = catalog if catalog is not None else Catalog()
        self._clock, self._traffic = clock, traffic
        self._routes: dict[tuple[str, str], Callable[[dict[str, str], Any], Reply]] = {
            ("POST", "/_sim/usage"): self._usage,
            ("POST", "/_sim/faults"): self._add_fault,
            ("DELETE", "/_sim/faults"): self._clear_faults,
            ("POST", "/_sim/latency"): self._latency,
            ("GET", "/_sim/truth"): self._truth,
            ("GET", "/_sim/stats"): self._get_stats,
            ("DELETE", "/_sim/stats"): self._reset_stats,
            ("POST", "/_sim/keys"): self._add_key,
            ("DELETE", "/_sim/keys"): self._remove_key,
            ("POST", "/_sim/models"): self._add_model,
        }

    def handle(self, method: str, path: str, query: str, body: bytes) -> Reply:
        """Run one admin request; errors come back as 400/404 with a message."""
        route = self._routes.get((method, path.rstrip("/")))
        if route is None:
            return 404, {"error": f"no admin endpoint {method} {path}"}
        try:
            payload = json.loads(body) if body.strip() else None
            return route(dict(parse_qsl(query)), payload)
        except (AdminError, ValueError, TypeError) as exc:
            return 400, {"error": str(exc)}

    def _usage(self, _: dict[str, str], payload: Any) -> Reply:
        items = payload.get("events") if isinstance(payload, dict) else payload
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise AdminError("send a JSON list of event objects (or {\"events\": [...]})")
        events = [event_from_json(item) for item in items]
        self._store.add_many(events)
        return 200, {"added": len(events)}

    def _add_fault(self, _: dict[str, str], payload: Any) -> Reply:
        if not isinstance(payload, dict):
            raise AdminError("send a JSON object describing the fault")
        fault, match = rule_from_json(payload)
        return 200, {"id": self._faults.add(fault, **match)}

    def _clear_faults(self, query: dict[str, str], _: Any) -> Reply:
        if "id" in query:
            return 200, {"removed": int(self._faults.remove(int(query["id"])))}
        return 200, {"removed": self._faults.clear()}

    def _latency(self, _: dict[str, str], payload: Any) -> Reply:
        if not isinstance(payload, dict):
            raise AdminError('send {"fixed": seconds, "jitter": seconds}')
        fixed, jitter = float(payload.get("fixed", 0.0)), float(payload.get("jitter", 0.0))
        self._faults.set_latency(fixed, jitter)
        return 200, {}

    def _truth(self, query: dict[str, str], _: Any) -> Reply:
        missing = [n for n in ("key", "model", "start", "end") if n not in query]
        if missing:
            raise AdminError(f"missing query parameters: {', '.join(missing)}")
        now = self._clock.time()
        if self._traffic is not None:
            self._traffic.advance(now)
        args = (query.get("project", ""), query["key"], query["model"])
        start, end = int(query["start"]), int(query["end"])
        visible = self._store.query(*args, start, end, now)
        total = self._store.truth(*args, start, end)
        return 200, {"at": now, "visible": visible.as_dict(), "total": total.as_dict()}

    def _get_stats(self, _: dict[str, str], __: Any) -> Reply:
        return 200, self._stats.snapshot().as_json()

    def _reset_stats(self, _: dict[str, str], __: Any) -> Reply:
        self._stats.reset()
        return 200, {}

    def _add_key(self, _: dict[str, str], payload: Any) -> Reply:
        if not isinstance(payload, dict) or not isinstance(payload.get("key_id"), str):
            raise AdminError('send {"key_id": ..., "name": ..., "project": ..., "secret": ...,'
                             ' "status": 1, "granted_models": [...], "expire_time": -1,'
                             ' "daily_limit": "10.00", "daily_used": "1.25", ...}')
        granted = payload.get("granted_models", [])
        if not isinstance(granted, list) or not all(isinstance(m, str) for m in granted):
            raise AdminError("granted_models must be a list of model names")
        daily_limit, daily_used, monthly_limit, monthly_used = (
            str(payload.get(f, default)) for f, default in _AMOUNTS)
        expire = payload.get("expire_time", -1)
        if isinstance(expire, bool) or not isinstance(expire, int):
            raise AdminError("expire_time must be an integer (Unix seconds, -1 never)")
        key = SimKey(str(payload.get("project", "")), payload["key_id"],
                     str(payload.get("name", "")), str(payload.get("secret", "")),
                     _count(payload, "status") if "status" in payload else 1,
                     bool(payload.get("disabled", False)), tuple(granted), expire,
                     daily_limit, daily_used, monthly_limit, monthly_used)
        self._catalog.add_key(key)
        return 200, {"added": key.key_id}

    def _remove_key(self, query: dict[str, str], _: Any) -> Reply:
        if "key_id" not in query:
            raise AdminError("missing query parameter: key_id")
        return 200, {"removed": int(self._catalog.remove_key(query.get("project", ""),
                                                              query["key_id"]))}

    def _add_model(self, _: dict[str, str], payload: Any) -> Reply:
        if not isinstance(payload, dict) or not isinstance(payload.get("name"), str):
            raise AdminError('send {"name": ..., "kind": 1, "prompt": 0.27, "completion": ...,'
                             ' "image": ..., "currency": "CNY", "unit": "元/百万tokens",'
                             ' "unit_en": "per 1M tokens"}')
        prompt, completion, image = (_price(payload.get(f, 0.0))
                                     for f in ("prompt", "completion", "image"))
        unit, unit_en = (str(payload[f]) if f in payload else None for f in ("unit", "unit_en"))
        model = SimModel(payload["name"], _count(payload, "kind") or 1, prompt, completion, image,
                         str(payload.get("currency", "USD")), unit, unit_en)
        self._catalog.add_model(model)
        return 200, {"added": model.name}


def _price(value: object) -> float | str:
    """A number as the float the API sends; a string as given (a hostile API's price)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return str(value)

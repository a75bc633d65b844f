"""What the gateway checks and answers for one API call, with no HTTP in sight."""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from exporter.simulator.buckets import BucketPolicy
from exporter.simulator.catalog import MAX_LIMIT, Catalog, SimKey
from exporter.simulator.faults import retcode_message
from exporter.simulator.gatewaysig import flatten, signature
from exporter.simulator.store import EventStore
from exporter.simulator.usage import Usage

USAGE_ACTION = "GetUMInferTokenUsage"
LIST_KEYS_ACTION = "ListUMInferAPIKey"
MODELS_ACTION = "GetUMInferAPIModel"
ACTIONS = frozenset({USAGE_ACTION, LIST_KEYS_ACTION, MODELS_ACTION})


class GatewayError(Exception):
    """The gateway refuses the call with a RetCode."""

    def __init__(self, retcode: int, message: str | None = None) -> None:
        super().__init__(message or retcode_message(retcode))
        self.retcode = retcode
        self.message = message or retcode_message(retcode)


@dataclass(frozen=True)
class UsageQuery:
    """A validated GetUMInferTokenUsage call; ``model`` None means every model of the key."""

    project: str
    key: str
    model: str | None
    start: int
    end: int


def parse_params(query: str, body: bytes, content_type: str) -> dict[str, str]:
    """Parameters from the URL query and a form or JSON body (the body wins on conflicts)."""
    params = dict(parse_qsl(query, keep_blank_values=True))
    text = body.decode("utf-8", errors="replace")
    if "json" in content_type:
        try:
            decoded = json.loads(text) if text.strip() else {}
        except ValueError:
            decoded = {}
        if isinstance(decoded, dict):
            params.update(flatten(decoded))
    else:
        params.update(parse_qsl(text, keep_blank_values=True))
    return params


def check_action(params: Mapping[str, str]) -> str:
    """The Action, or GatewayError 160 (missing) / 161 (not served here)."""
    action = params.get("Action", "")
    if not action:
        raise GatewayError(160)
    if action not in ACTIONS:
        raise GatewayError(161, f"Action [{action}] not exist")
    return action


def check_signature(params: Mapping[str, str], keys: Mapping[str, str]) -> None:
    """GatewayError 170 (no signature), 172 (unknown PublicKey) or 171 (wrong signature)."""
    sent = params.get("Signature", "")
    if not sent:
        raise GatewayError(170)
    private = keys.get(params.get("PublicKey", ""))
    if private is None:
        raise GatewayError(172)
    expected = signature({k: v for k, v in params.items() if k != "Signature"}, private)
    if not hmac.compare_digest(expected, sent.lower()):
        raise GatewayError(171)


def _int_param(params: Mapping[str, str], name: str) -> int:
    if name not in params:
        raise GatewayError(220, f"Missing params [{name}]")
    try:
        return int(params[name])
    except ValueError:
        raise GatewayError(230, f"Params [{name}] not valid") from None


def parse_usage(params: Mapping[str, str], max_window: int) -> UsageQuery:
    """GatewayError 220 (missing), 230 (invalid) or 110 (window the gateway cannot finish)."""
    if not params.get("KeyId"):
        raise GatewayError(220, "Missing params [KeyId]")
    start, end = _int_param(params, "StartTime"), _int_param(params, "EndTime")
    if start < 0 or start > end:
        raise GatewayError(230, "Params [StartTime] not valid: must be >= 0 and <= EndTime")
    if end - start > max_window:
        # The real gateway grinds for 60 s first; nobody needs the simulator to wait too.
        raise GatewayError(110)
    model = params.get("Model") or None
    return UsageQuery(params.get("ProjectId", ""), params["KeyId"], model, start, end)


def usage_data(store: EventStore, query: UsageQuery, at: float, policy: BucketPolicy
               ) -> dict[str, Any]:
    """The ``Data`` object: totals visible at ``at`` plus per-bucket ``Usages`` rows, the window
    counted as ``policy`` says (``exact`` by default)."""
    models = [query.model] if query.model else store.models(query.project, query.key)
    totals, rows = Usage(), []
    for model in models:
        args = (query.project, query.key, model, query.start, query.end, at)
        totals += store.query(*args, policy)
        rows += store.rows(*args, policy)
    data: dict[str, Any] = dict(totals.data())
    if not policy.rows:
        return data
    data["Usages"] = [
        {"Type": kind, "Count": count, "Timestamp": ts, "Model": model}
        for kind, count, ts, model in rows
    ]
    return data


def list_keys_data(catalog: Catalog, params: Mapping[str, str],
                   meter: Callable[[SimKey], SimKey] = lambda key: key) -> list[dict[str, Any]]:
    """ListUMInferAPIKey's ``Data``: a page of keys, secret ``Key`` included as the API does;
    ``meter`` brings a metered key's used amounts up to now."""
    offset = _int_param(params, "Offset") if "Offset" in params else 0
    limit = _int_param(params, "Limit") if "Limit" in params else 20
    if offset < 0 or not 1 <= limit <= MAX_LIMIT:
        raise GatewayError(230, f"Params [Limit] not valid: must be 1..{MAX_LIMIT}, Offset >= 0")
    page = catalog.page(params.get("ProjectId", ""), offset, limit)
    return [meter(key).as_api() for key in page]


def models_data(catalog: Catalog, params: Mapping[str, str]) -> list[dict[str, Any]]:
    """GetUMInferAPIModel's ``Data``: the models the key may call, with list prices."""
    if not params.get("KeyId"):
        raise GatewayError(220, "Missing params [KeyId]")
    kind = _int_param(params, "ModelType") if "ModelType" in params else 1
    models = catalog.models(params["KeyId"], kind)
    if models is None:
        raise GatewayError(230, "Params [KeyId] not valid")
    return [model.as_api(index) for index, model in models]


def reply(action: str, retcode: int = 0, message: str = "", data: Any = None) -> dict[str, Any]:
    """The response envelope; ``Data`` only on success, as the gateway does."""
    body: dict[str, Any] = {"RetCode": retcode, "Action": f"{action}Response", "Message": message}
    if data is not None:
        body["Data"] = data
    return body

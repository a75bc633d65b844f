"""How body faults spoil (or leniently reshape) an otherwise correct JSON answer."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from exporter.simulator.faults import Fault, FaultKind
from exporter.simulator.usage import DATA_FIELDS

Body = dict[str, Any]
_ABSURD = 2**64  # beyond int64 and uint64 alike: no exporter may export it


def _counts(body: Body, change: Callable[[int], object]) -> Body:
    """Apply ``change`` to the five totals and every ``Usages[].Count``."""
    data = body.get("Data")
    if isinstance(data, dict):
        for name in DATA_FIELDS:
            if isinstance(data.get(name), int):
                data[name] = change(data[name])
        for row in data.get("Usages") or []:
            row["Count"] = change(row["Count"])
    return body


def _garbage(style: str) -> Callable[[int], object]:
    styles: dict[str, Callable[[int], object]] = {
        "string": lambda n: f"{n}abc",
        "float": lambda n: n + 0.5,
        "bool": lambda n: True,
    }
    if style not in styles:
        raise ValueError(f"garbage must be one of: {', '.join(styles)}")
    return styles[style]


def _usages_object(body: Body) -> Body:
    data = body.get("Data")
    if isinstance(data, dict) and isinstance(data.get("Usages"), list):
        data["Usages"] = data["Usages"][0] if data["Usages"] else {}
    return body


def _empty_data(body: Body) -> Body:
    if "Data" in body:
        body["Data"] = {}
    return body


def _string_retcode(body: Body) -> Body:
    body["RetCode"] = str(body["RetCode"])
    return body


def mangle(body: Body, fault: Fault) -> Body:
    """A copy of ``body`` with ``fault`` applied (unchanged for kinds that are not body faults)."""
    body = copy.deepcopy(body)
    changes: dict[FaultKind, Callable[[Body], Body]] = {
        FaultKind.WRONG_TYPE: lambda b: _counts(b, _garbage(fault.garbage)),
        FaultKind.NEGATIVE: lambda b: _counts(b, lambda n: -n - 1),
        FaultKind.ABSURD: lambda b: _counts(b, lambda n: n + _ABSURD),
        FaultKind.STRING_COUNTS: lambda b: _counts(b, str),
        FaultKind.USAGES_OBJECT: _usages_object,
        FaultKind.EMPTY_DATA: _empty_data,
        FaultKind.STRING_RETCODE: _string_retcode,
    }
    change = changes.get(fault.kind)
    return change(body) if change else body


def encode(body: Body, fault: Fault | None = None) -> bytes:
    """The response bytes; a MALFORMED fault cuts the JSON off mid-value."""
    if fault is None:
        return json.dumps(body).encode()
    raw = json.dumps(mangle(body, fault)).encode()
    if fault.kind is FaultKind.MALFORMED:
        return raw[: max(1, len(raw) // 2)]
    return raw

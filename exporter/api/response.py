"""Strict-but-lenient parsing of a GetUMInferTokenUsage response body into Totals."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from exporter.api.errors import ApiError, retcode_error
from exporter.core.usage import Reading, Totals

#: The answer's ``Data`` field for each Totals field, in exposition order.
API_FIELDS: dict[str, str] = {
    "input_tokens": "InTotal",
    "output_tokens": "OutTotal",
    "tokens": "Total",
    "requests": "RequestTotal",
    "image_generations": "ImageGenerationNum",
}

MAX_COUNT = 2**63 - 1
#: Each ``Usages[].Type`` and the place of its Totals field (Totals.NAMES).
ROW_FIELDS = {"in": 0, "out": 1, "total": 2, "request_count": 3, "image_generation": 4}
ROW_TYPES = frozenset(ROW_FIELDS)
# Integers, optionally spelled "42.0"; the length bound keeps int() cheap on hostile input.
_INT_TEXT = re.compile(r"[+-]?[0-9]{1,30}(?:\.0*)?", re.ASCII)
_MAX_SHOWN = 40


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One ``Data.Usages`` entry; the exporter counts the totals, rows only sum narrower window
    gauges (accounting.windows) and tell the API's buckets (api.buckets)."""

    type: str
    count: int
    timestamp: int
    model: str


def parse_usage(body: object) -> Totals:
    """The totals in a decoded JSON body; raise ApiError for errors and for garbage (rows are
    not counted, but garbage in them says the whole answer is not to be trusted)."""
    return parse_reading(body).totals


def parse_reading(body: object) -> Reading:
    """The totals and the distinct bucket labels (``Usages[].Timestamp``) of a decoded body."""
    data = _data(body)
    rows = _rows(data)
    totals = Totals(**{name: _count(data, api, f"Data.{api}") for name, api in API_FIELDS.items()})
    by_label: dict[int, list[int]] = {}
    for row in rows:
        by_label.setdefault(row.timestamp, [0, 0, 0, 0, 0])[ROW_FIELDS[row.type]] += row.count
    labels = tuple(sorted(by_label))
    return Reading(totals, labels, tuple(Totals(*by_label[label]) for label in labels))


def parse_usage_rows(body: object) -> list[UsageRow]:
    """The ``Data.Usages`` rows of known Type, validated like the totals."""
    return _rows(_data(body))


def invalid(message: str) -> ApiError:
    """An ApiError for a body that is not a usable answer; retried, it may be a glitch."""
    return ApiError("invalid_response", f"invalid response: {message}", transient=True)


def envelope(body: object) -> object:
    """The ``Data`` of any action's answer, after the RetCode says success; ApiError otherwise.

    Lenient where the API has been seen to be (RetCode as a numeric string), strict about
    anything that is not an answer at all.
    """
    if not isinstance(body, dict):
        raise invalid(f"body is a JSON {_json_type(body)}, not an object")
    if "RetCode" not in body:
        raise invalid("RetCode missing")
    code = as_int(body["RetCode"])
    if code is None:
        raise invalid(f"RetCode is not an integer: {_shown(body['RetCode'])}")
    if code != 0:
        raise retcode_error(code, body.get("Message"))
    return body.get("Data")


def _data(body: object) -> Mapping[str, object]:
    # The documented empty answer is Data == {}. A success without Data, or with null, says
    # nothing: read as zero it would settle a period at zero, so it is an invalid answer
    # (retried) instead.
    data = envelope(body)
    if data is None:
        raise invalid("Data missing or null in a successful answer")
    if not isinstance(data, dict):
        raise invalid(f"Data is a JSON {_json_type(data)}, not an object")
    return data


def _rows(data: Mapping[str, object]) -> list[UsageRow]:
    usages = data.get("Usages")
    if usages is None:
        return []
    # An early schema sent a single object instead of a list.
    items = usages if isinstance(usages, list) else [usages]
    return [row for i, item in enumerate(items) if (row := _row(item, f"Data.Usages[{i}]"))]


def _row(item: object, where: str) -> UsageRow | None:
    if not isinstance(item, dict):
        raise invalid(f"{where} is a JSON {_json_type(item)}, not an object")
    kind = item.get("Type")
    if kind not in ROW_TYPES:
        return None  # unknown Types appear on some clouds; they are not ours to count
    model = item.get("Model", "")
    if not isinstance(model, str):
        raise invalid(f"{where}.Model is not a string: {_shown(model)}")
    return UsageRow(
        type=str(kind),
        count=_count(item, "Count", f"{where}.Count"),
        timestamp=_count(item, "Timestamp", f"{where}.Timestamp"),
        model=model,
    )


def _count(obj: Mapping[str, object], key: str, where: str) -> int:
    """A non-negative 64-bit integer field; absent or null means zero."""
    value = obj.get(key)
    if value is None:
        return 0
    number = as_int(value)
    if number is None or not 0 <= number <= MAX_COUNT:
        raise invalid(f"{where} is not a non-negative integer: {_shown(value)}")
    return number


def as_int(value: object) -> int | None:
    """An integer from an int, an integral float or a numeric string; None otherwise."""
    if isinstance(value, bool):
        return None  # bool is an int subclass, but True is not a count
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else None
    if isinstance(value, str):
        text = value.strip()
        if _INT_TEXT.fullmatch(text):
            return int(text.split(".", 1)[0])
    return None


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "…"

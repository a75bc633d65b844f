"""Injected failures: which requests they hit, and what each does to the wire."""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

#: Messages the gateway sends with each RetCode (the wording of UCloud-style gateways).
RETCODE_MESSAGES: dict[int, str] = {
    110: "gateway timeout",
    130: "gateway auth service failure",
    150: "Service unavailable",
    153: "Request frequency exceeds the limit",
    160: "Missing Action",
    161: "Action not exist",
    170: "Missing signature",
    171: "Signature verification failed",
    172: "user not exist",
    174: "token not exist",
    220: "Missing params",
    230: "Params not valid",
    292: "Project not exist",
    294: "IP not allowed",
    299: "Permission denied",
}


def retcode_message(code: int) -> str:
    """The message for ``code``; service-specific codes (> 2000) get a generic one."""
    return RETCODE_MESSAGES.get(code, f"service error {code}")


class FaultKind(StrEnum):
    """Everything that can go wrong with one API call."""

    HTTP = "http"  # a non-200 status (429 carries Retry-After)
    TIMEOUT = "timeout"  # hold the request ``delay`` seconds, then answer or drop it
    RESET = "reset"  # TCP reset, no response
    CLOSE = "close"  # orderly close, no response
    RETCODE = "retcode"  # HTTP 200 with a non-zero RetCode
    MALFORMED = "malformed"  # truncated JSON
    WRONG_TYPE = "wrong_type"  # counts as garbage strings, floats or booleans
    NEGATIVE = "negative"  # counts below zero
    ABSURD = "absurd"  # counts above 2**63
    USAGES_OBJECT = "usages_object"  # Usages as one object instead of a list
    EMPTY_DATA = "empty_data"  # Data is {}
    STRING_RETCODE = "string_retcode"  # RetCode "0" (lenient: still a success)
    STRING_COUNTS = "string_counts"  # counts as numeric strings (lenient: still valid)
    LATENCY = "latency"  # answer normally, ``delay`` seconds late
    CRAFTED = "crafted"  # answer ``status``, ``header`` and ``body`` (x ``repeat``) verbatim


@dataclass(frozen=True)
class Fault:
    """One failure; only the fields its kind uses matter."""

    kind: FaultKind
    status: int = 500
    retry_after: float | None = None
    delay: float = 0.0
    then: str = "drop"  # after a timeout: "drop" or "answer"
    retcode: int = 150
    message: str | None = None
    garbage: str = "string"  # wrong_type: "string", "float" or "bool"
    body: str = ""  # crafted: the answer's body, sent ``repeat`` times over (streamed)
    header: str | None = None  # crafted: one extra "Name: value" header line
    repeat: int = 1

    def __post_init__(self) -> None:
        # Checked here so a bad admin request fails when added, not on some later API call.
        if self.then not in ("drop", "answer"):
            raise ValueError(f"then must be 'drop' or 'answer', got {self.then!r}")
        if self.garbage not in ("string", "float", "bool"):
            raise ValueError(f"garbage must be 'string', 'float' or 'bool', got {self.garbage!r}")
        if self.kind is FaultKind.HTTP and not 400 <= self.status <= 599:
            raise ValueError(f"status must be an HTTP error status (400-599), got {self.status}")
        if self.repeat < 1:
            raise ValueError(f"repeat must be at least 1, got {self.repeat}")
        if self.delay < 0:
            raise ValueError(f"delay must not be negative, got {self.delay}")


@dataclass
class _Rule:
    fault: Fault
    key: str | None
    model: str | None
    times: int | None
    probability: float
    action: str | None = None

    def matches(self, key: str | None, model: str | None, action: str | None) -> bool:
        return (self.key in (None, key) and self.model in (None, model)
                and self.action in (None, action))


class FaultPlan:
    """Rules matched per request, in the order they were added."""

    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)  # noqa: S311 -- reproducible chaos, not secrets
        self._rules: dict[int, _Rule] = {}
        self._next_id = 1
        self._latency = (0.0, 0.0)
        self._lock = threading.Lock()

    def add(
        self,
        fault: Fault,
        *,
        key: str | None = None,
        model: str | None = None,
        times: int | None = None,
        probability: float = 1.0,
        action: str | None = None,
    ) -> int:
        """Apply ``fault`` to matching requests (None matches any; ``action`` e.g.
        "ListUMInferAPIKey"): the next ``times`` of them (None: until removed), each with
        ``probability``. Returns the rule's id."""
        with self._lock:
            rule_id, self._next_id = self._next_id, self._next_id + 1
            self._rules[rule_id] = _Rule(fault, key, model, times, probability, action)
            return rule_id

    def remove(self, rule_id: int) -> bool:
        """Drop one rule; False when it was already gone."""
        with self._lock:
            return self._rules.pop(rule_id, None) is not None

    def clear(self) -> int:
        """Drop every rule; return how many there were."""
        with self._lock:
            count = len(self._rules)
            self._rules.clear()
            return count

    def __len__(self) -> int:
        """Number of active rules."""
        with self._lock:
            return len(self._rules)

    def set_latency(self, fixed: float, jitter: float = 0.0) -> None:
        """Slow every API call by ``fixed`` plus up to ``jitter`` seconds (a sluggish service)."""
        with self._lock:
            self._latency = (max(0.0, fixed), max(0.0, jitter))

    def latency(self) -> float:
        """This call's share of the global latency."""
        with self._lock:
            fixed, jitter = self._latency
            return fixed + (self._rng.uniform(0, jitter) if jitter else 0.0)

    def pick(self, key: str | None, model: str | None,
             action: str | None = None) -> list[Fault]:
        """Faults for one request: any latency rules that fire, then at most one other fault."""
        picked: list[Fault] = []
        with self._lock:
            for rule_id, rule in list(self._rules.items()):
                if not rule.matches(key, model, action) or self._rng.random() >= rule.probability:
                    continue
                picked.append(rule.fault)
                self._spend(rule_id, rule)
                if rule.fault.kind is not FaultKind.LATENCY:
                    break
        return picked

    def _spend(self, rule_id: int, rule: _Rule) -> None:
        if rule.times is not None:
            rule.times -= 1
            if rule.times <= 0:
                del self._rules[rule_id]


_FAULT_FIELDS = {f.name for f in fields(Fault)}
_MATCH_FIELDS = {"key", "model", "times", "probability", "action"}


def rule_from_json(data: Mapping[str, Any]) -> tuple[Fault, dict[str, Any]]:
    """A fault and its match arguments from an admin request; ValueError says what is wrong."""
    unknown = set(data) - _FAULT_FIELDS - _MATCH_FIELDS
    if unknown:
        raise ValueError(f"unknown fault fields: {', '.join(sorted(unknown))}")
    try:
        kind = FaultKind(str(data.get("kind")))
    except ValueError:
        raise ValueError(f"kind must be one of: {', '.join(k.value for k in FaultKind)}") from None
    params = {k: v for k, v in data.items() if k in _FAULT_FIELDS and k != "kind"}
    fault = Fault(kind=kind, **params)
    return fault, {k: v for k, v in data.items() if k in _MATCH_FIELDS}

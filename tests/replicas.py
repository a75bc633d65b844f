"""A static check that PromQL never aggregates a replicated series across replicas.

Replicas of a pair (``ha.peers``) export the same counters and gauges for each target, budget
and key, so a query must take one replica's value per series (``max without (instance, pod)``,
or any ``max``/``min`` that drops ``instance`` and ``pod``) before it sums, counts or ranks
them: a ``sum`` over both replicas doubles every number. Self-metrics about one process
(API calls, poll duration, state writes, ...) are each replica's own and are not checked.
"""

from __future__ import annotations

import re

# Series every replica exports alike: usage, cost, windows, budgets, the cloud's key health,
# and the per-target state (up, settling, late or given-up usage, revisions).
REPLICATED = re.compile(
    r"(?<![\w:])uminfer_(?:(?:input_|output_)?tokens_total|requests_total"
    r"|image_generations_total|cost_total|window_\w+|budget_\w+"
    r"|key_(?:info|disabled|expiry_timestamp_seconds|limit_amount|used_amount)"
    r"|up|last_success_timestamp_seconds|settled_\w+|late_tokens_after_settle_total"
    r"|given_up_seconds_total|revisions_total)(?![\w:])")
AGGREGATIONS = frozenset(("sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
                          "count_values", "bottomk", "topk", "quantile", "limitk",
                          "limit_ratio"))
REPLICA_LABELS = frozenset(("instance", "pod"))
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_HEAD = re.compile(r"(\w+)\s*(?:(by|without)\s*\(([^()]*)\)\s*)?$")
_TAIL = re.compile(r"\s*(by|without)\s*\(([^()]*)\)")


def _pairs(expr: str) -> dict[int, int]:
    """Each opening parenthesis's index mapped to its closing one's."""
    stack: list[int] = []
    pairs: dict[int, int] = {}
    for i, char in enumerate(expr):
        if char == "(":
            stack.append(i)
        elif char == ")":
            pairs[stack.pop()] = i
    assert not stack, f"unbalanced parentheses: {expr}"
    return pairs


def _aggregation(expr: str, opening: int, closing: int) -> tuple[str, str, set[str]] | None:
    """(operator, by/without or "", labels) of the aggregation whose argument list opens at
    ``opening``; None when that parenthesis belongs to a function or plain grouping."""
    head = _HEAD.search(expr[:opening].rstrip())
    if not head or head[1] not in AGGREGATIONS:
        return None
    modifier, labels = head[2] or "", head[3] or ""
    if not modifier:
        tail = _TAIL.match(expr, closing + 1)
        modifier, labels = (tail[1], tail[2]) if tail else ("", "")
    return head[1], modifier, {label.strip() for label in labels.split(",") if label.strip()}


def _deduplicates(operator: str, modifier: str, labels: set[str]) -> bool:
    """Whether this aggregation takes one replica's value per series (drops the replicas'
    labels without adding them up)."""
    if operator not in ("max", "min"):
        return False
    if modifier == "without":
        return labels >= REPLICA_LABELS
    return not REPLICA_LABELS & labels  # by (...) without them, or everything into one


def undeduplicated(expr: str) -> list[str]:
    """The replicated series in ``expr`` that reach an aggregation (or the result) with each
    replica's value apart: empty when the query is right for one replica or several."""
    text = _STRING.sub(lambda m: '"' + " " * (len(m[0]) - 2) + '"', expr)
    pairs = _pairs(text)
    problems = []
    for found in REPLICATED.finditer(text):
        enclosing = sorted((o for o, c in pairs.items() if o < found.start() < c), reverse=True)
        first = next((agg for o in enclosing
                      if (agg := _aggregation(text, o, pairs[o])) is not None), None)
        if first is None:
            problems.append(f"{found[0]}: shown per replica (no max/min across replicas)")
        elif not _deduplicates(*first):
            problems.append(f"{found[0]}: {first[0]} across replicas before deduplicating")
    return problems

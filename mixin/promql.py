"""The selector added to every uminfer_* series a PromQL expression reads."""

from __future__ import annotations

import re

# A metric name where PromQL reads a series: not part of a longer name, not a recording rule's
# name (level:metric:operation), not inside a quoted string; optionally with its matchers.
_SERIES = re.compile(r'(?<![\w:"])(uminfer_[A-Za-z0-9_]*)(?![\w:(])(\{)?')
#: Series the user defines, not the exporter: they carry no scrape job.
UNSCOPED = frozenset({"uminfer_cost_reconciliation_tolerance"})


def scoped(expr: str, selector: str) -> str:
    """``expr`` with ``selector`` (e.g. ``job="uminfer"``) among the matchers of each series."""
    def add(match: re.Match[str]) -> str:
        name, brace = match.group(1), match.group(2)
        if name in UNSCOPED:
            return match.group(0)
        if brace:
            return f"{name}{{{selector}, "
        return f"{name}{{{selector}}}"
    scoped_expr = _SERIES.sub(add, expr)
    return scoped_expr.replace(f"{selector}, }}", f"{selector}}}")  # x{} stays well formed

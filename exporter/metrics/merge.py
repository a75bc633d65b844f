"""Series that differ only in dropped labels, made one: summed, or the value that holds for all."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from decimal import Decimal

from exporter.metrics.shape import LEAST, MOST

# A label pair as families.escape writes it: any escaped character inside the quotes.
_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def merged(family: str, lines: Iterable[str], drop: frozenset[str]) -> list[str]:
    """``lines`` (one family's samples) without the ``drop`` labels, one line per label set
    left, in the order of first appearance; values combined by the family's rule.

    Per-target lines come with the labels already left out (only their merging is done here);
    a line that still holds a dropped label (key health, a process-wide family) is parsed.
    A label value cannot hold ``name="`` (its quotes are escaped), so the check is exact
    enough: a longer label name ending in a dropped one only costs the parse.
    """
    combine = _rule(family)
    needles = tuple(f'{name}="' for name in drop)
    found: dict[str, Decimal] = {}
    for line in lines:
        head, _, value = line.rstrip("\n").rpartition(" ")
        head = _without(head, drop) if any(n in head for n in needles) else _tidy(head)
        number = Decimal(value)
        found[head] = combine(found[head], number) if head in found else number
    return [f"{head} {_number(value)}\n" for head, value in found.items()]


def _without(head: str, drop: frozenset[str]) -> str:
    name, brace, text = head.partition("{")
    pairs = [(k, v) for k, v in _PAIR.findall(text[:-1] if brace else "") if k not in drop]
    labels = ",".join(f'{k}="{v}"' for k, v in pairs)
    return f"{name}{{{labels}}}" if labels else name


def _tidy(head: str) -> str:
    """A head whose per-target labels were all dropped: no leading comma, no empty braces."""
    name, brace, rest = head.partition("{")
    if rest.startswith(","):
        rest = rest[1:]
    return name if rest == "}" else name + brace + rest


def _rule(family: str) -> Callable[[Decimal, Decimal], Decimal]:
    if family in LEAST:
        return min
    if family in MOST:
        return max
    return lambda a, b: a + b


def _number(value: Decimal) -> str:
    return str(int(value)) if value == value.to_integral_value() else repr(float(value))

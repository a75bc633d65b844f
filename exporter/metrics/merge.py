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
    left, in the order of first appearance; values combined by the family's rule."""
    combine = _rule(family)
    found: dict[tuple[str, tuple[tuple[str, str], ...]], Decimal] = {}
    for line in lines:
        head, _, value = line.rstrip("\n").rpartition(" ")
        name, brace, text = head.partition("{")
        pairs = tuple(p for p in _PAIR.findall(text[:-1] if brace else "") if p[0] not in drop)
        key = (name, pairs)
        number = Decimal(value)
        found[key] = combine(found[key], number) if key in found else number
    return [_line(name, pairs, value) for (name, pairs), value in found.items()]


def _rule(family: str) -> Callable[[Decimal, Decimal], Decimal]:
    if family in LEAST:
        return min
    if family in MOST:
        return max
    return lambda a, b: a + b


def _line(name: str, pairs: tuple[tuple[str, str], ...], value: Decimal) -> str:
    labels = ",".join(f'{k}="{v}"' for k, v in pairs)
    shown = str(int(value)) if value == value.to_integral_value() else repr(float(value))
    return f"{name}{{{labels}}} {shown}\n" if labels else f"{name} {shown}\n"

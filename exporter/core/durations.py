"""Prometheus duration syntax (``500ms``, ``1h30m``, ``7d``) to seconds and back."""

from __future__ import annotations

import json
import math
import re

_DAY_MS = 86_400_000

# Largest first: the order units must be written in, and the order they are printed in.
_UNITS: tuple[tuple[str, int], ...] = (
    ("y", 365 * _DAY_MS),
    ("w", 7 * _DAY_MS),
    ("d", _DAY_MS),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1000),
    ("ms", 1),
)
_UNIT_MS = dict(_UNITS)
_RANK = {unit: rank for rank, (unit, _) in enumerate(_UNITS)}
_PART = re.compile(r"([0-9]+)([a-zA-Z]*)")
_NUMBER = re.compile(r"[0-9]+")
# Prometheus stores durations as int64 milliseconds; anything longer is a typo, not a setting.
_MAX_MS = 2**63 - 1
_HINT = "write whole numbers with units (ms, s, m, h, d, w, y), like 30s, 5m or 1h30m"


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration like ``90s`` or ``1h30m``; ValueError says what's wrong."""
    return _milliseconds(text) / 1000


def format_duration(seconds: float) -> str:
    """The Prometheus spelling of ``seconds`` (to the millisecond), e.g. 90 -> ``1m30s``."""
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"cannot format {seconds!r} as a duration: it must be finite and >= 0")
    ms = round(seconds * 1000)
    if ms == 0:
        return "0s"
    parts = []
    for unit, size in _UNITS:
        # Like Prometheus: years and weeks only when exact, since "90d" reads better than "12w6d".
        if unit in ("y", "w") and ms % size:
            continue
        count, ms = divmod(ms, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def _milliseconds(text: str) -> int:
    """Whole milliseconds in ``text``, after rejecting the common mistakes with a specific hint."""
    if not text:
        raise ValueError(f"empty duration; {_HINT}")
    if text.startswith("-"):
        raise _invalid(text, "negative durations are not allowed")
    if _NUMBER.fullmatch(text):
        raise _invalid(text, f"missing unit; did you mean {text}s?")
    if "." in text:
        raise _invalid(text, "fractions are not allowed; combine units, like 1h30m or 1500ms")
    return _sum_parts(text)


def _sum_parts(text: str) -> int:
    """Add up ``<number><unit>`` parts, insisting on largest-to-smallest order."""
    total, pos, last_rank = 0, 0, -1
    while pos < len(text):
        part = _PART.match(text, pos)
        if part is None or (not part.group(2) and part.end() < len(text)):
            bad = text[part.end() if part else pos]
            raise _invalid(text, f"unexpected {bad!r}; {_HINT}")
        digits, unit = part.groups()
        if not unit:
            raise _invalid(text, f"missing unit after {digits}; {_HINT}")
        if unit not in _UNIT_MS:
            raise _invalid(text, f'unknown unit "{unit}" (use ms, s, m, h, d, w or y)')
        if _RANK[unit] <= last_rank:
            raise _invalid(text, "units must go from largest to smallest, each once, like 1h30m")
        if len(digits) > 15:
            raise _invalid(text, "too large")
        total += int(digits) * _UNIT_MS[unit]
        pos, last_rank = part.end(), _RANK[unit]
    if total > _MAX_MS:
        raise _invalid(text, "too large")
    return total


def _invalid(text: str, reason: str) -> ValueError:
    # JSON quoting keeps a stray newline or quote from breaking the one-line message.
    return ValueError(f"invalid duration {json.dumps(text, ensure_ascii=False)}: {reason}")

"""Label values the API supplies (key names, model names, currencies), bounded before export.

Every such value is copied into each series of its target and held in the exposition two or
three times over (plain, gzip, the render), so one key name of 300,000 characters once made
an 8 MB ``/metrics`` (issue #26, N7). Values are cut at MAX_CHARS characters with a visible
marker, and control characters (which terminals and dashboards would act on, bidirectional
overrides and line separators included) become U+FFFD.
Values that are sent back to the API (a key's id, a granted model's name) cannot be cut
without breaking the calls: :func:`id_problem` says why such a value is left out instead.
"""

from __future__ import annotations

import re

MAX_CHARS = 128  # characters of a label value from the API, the marker included
CUT_MARK = "…[cut]"  # ends a value that was longer than MAX_CHARS
# C0, DEL and C1 controls, line and paragraph separators, and the bidirectional controls that
# make text display in another order than it reads ("Trojan Source").
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def label_text(value: str) -> str:
    """``value`` with control characters replaced, cut to MAX_CHARS ending in CUT_MARK."""
    if len(value) > MAX_CHARS:
        value = value[:MAX_CHARS - len(CUT_MARK)] + CUT_MARK
    return _CONTROL.sub("\ufffd", value)


def id_problem(value: str) -> str | None:
    """Why ``value`` cannot be both sent back to the API and exported as it is, or None."""
    if len(value) > MAX_CHARS:
        return f"is {len(value):,} characters long (at most {MAX_CHARS})"
    if _CONTROL.search(value):
        return "holds a control character"
    return None

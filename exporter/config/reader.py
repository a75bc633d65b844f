"""Reads raw YAML values at dotted paths: type checks, ${VAR} expansion, value rules, problems.

One reader serves both files an operator writes: the exporter's config (with ``${VAR}``
expansion) and the web config (the exporter-toolkit's format, taken literally).
"""

from __future__ import annotations

import json
import math
import re
import reprlib
from collections.abc import Callable, Mapping
from typing import TypeVar

from exporter.core.durations import format_duration, parse_duration
from exporter.core.safejson import has_surrogate
from exporter.core.secrets import mask_secrets

Rule = Callable[[float], str | None]
"""A check on a parsed duration in seconds: None when fine, else what it must be."""

DAY = 86400
REDACTED = "<secret>"
"""What ``redacted`` shows instead of a secret."""
_ENV_REF = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$\{")
_PLAIN_KEY = re.compile(r"[^\s.\[\]\"]+")


class Reader:
    """Reads raw YAML values at dotted paths, collecting every problem instead of stopping."""

    def __init__(self, environ: Mapping[str, str] | None = None,
                 refused: Mapping[str, str] | None = None) -> None:
        """``environ`` expands ``${VAR}`` (None: strings are taken literally); ``refused`` maps
        keys and values that are known but not supported to the reason they are refused."""
        self.environ = environ
        self.refused: Mapping[str, str] = refused or {}
        self.problems: list[str] = []
        self.warnings: list[str] = []  # valid but worth saying: a deprecated key, a no-op
        self.secrets: list[str] = []  # every secret value seen, to scrub from the messages

    def fail(self, path: str, message: str) -> None:
        """Record one problem at ``path``."""
        self.problems.append(f"{path or '(top level)'}: {message}")

    def warn(self, path: str, message: str) -> None:
        """Record one warning at ``path``: the config loads, but the operator should know."""
        self.warnings.append(f"{path}: {message}")

    def mapping(self, path: str, raw: object) -> dict[object, object]:
        """``raw`` as a dict; null is an empty one, anything else a problem."""
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.fail(path, f"expected a mapping, got {got(raw)}")
            return {}
        return raw

    def section(self, path: str, raw: object, keys: tuple[str, ...],
                old: tuple[str, ...] = ()) -> dict[str, object]:
        """A mapping of known ``keys``; unknown keys are problems, null values count as absent.
        ``old`` keys (deprecated spellings) are read too but not offered in the messages."""
        d = self.mapping(path, raw)
        for key in d:
            if isinstance(key, str) and key in self.refused:
                self.fail(join(path, key), self.refused[key])
            elif key not in keys and key not in old:
                self.fail(join(path, key), f"unknown key (expected one of: {', '.join(keys)})")
        return {k: v for k, v in d.items()
                if isinstance(k, str) and (k in keys or k in old) and v is not None}

    def string(self, path: str, raw: object, expected: str = "a string",
               secret: bool = False) -> str | None:
        """``raw`` with ``${VAR}`` expanded; a secret's value is never shown, only its type."""
        if raw is None:
            return None
        if not isinstance(raw, str):
            shown = type(raw).__name__ if secret else got(raw)
            self.fail(path, f"expected {expected}, got {shown}")
            return None
        if has_surrogate(raw):
            self.fail(path, "holds a lone surrogate (like \\ud800), which is not text")
            return None
        if self.environ is None:
            return raw
        before = len(self.problems)
        text = _ENV_REF.sub(lambda ref: self._resolve(path, ref), raw)
        if secret:
            self.secrets.append(text)
        return text if len(self.problems) == before else None

    def empty(self, path: str, raw: object) -> None:
        """Record that ``path`` must not be empty, naming the variables that made it so."""
        names = ([m.group(1) for m in _ENV_REF.finditer(raw) if m.group(1)]
                 if isinstance(raw, str) and self.environ is not None else [])
        blank = [name for name in names if self.environ and self.environ.get(name) == ""]
        because = (f" (environment variable {', '.join(blank)} is set but empty)"
                   if blank else "")
        self.fail(path, "must not be empty" + because)

    def _resolve(self, path: str, ref: re.Match[str]) -> str:
        name = ref.group(1)
        assert self.environ is not None  # only called when expanding
        if ref.group(0) == "$${":
            return "${"
        if name is None:
            self.fail(path, "${ must be followed by a variable name and }, like ${HOME}"
                            " (write $${ for a literal ${)")
        elif name not in self.environ:
            self.fail(path, f"environment variable {name} is not set")
        else:
            return self.environ[name]
        return ""

    def duration(self, path: str, raw: object, *rules: Rule) -> float | None:
        """A duration string in seconds, checked against ``rules``."""
        text = self.string(path, raw, expected="a duration like 60s")
        return None if text is None else self.parse(path, text, *rules)

    def seconds(self, path: str, raw: object, *rules: Rule) -> int | None:
        """A duration that must be whole seconds."""
        value = self.duration(path, raw, whole, *rules)
        return None if value is None else int(value)

    def parse(self, path: str, text: str, *rules: Rule) -> float | None:
        """Parse ``text`` and apply ``rules`` in order, reporting the first one broken."""
        try:
            seconds = parse_duration(text)
        except ValueError as exc:
            self.fail(path, str(exc))
            return None
        for rule in rules:
            if (problem := rule(seconds)) is not None:
                self.fail(path, f"{problem}, got {text}")
                return None
        return seconds

    def integer(self, path: str, raw: object, low: int, high: int) -> int | None:
        """An integer in ``[low, high]``."""
        if raw is None:
            return None
        if isinstance(raw, bool) or not isinstance(raw, int):
            self.fail(path, f"expected an integer, got {got(raw)}")
            return None
        if not low <= raw <= high:
            self.fail(path, f"must be between {low} and {high}, got {quote(raw)}")
            return None
        return raw

    def rate(self, path: str, raw: object) -> float | None:
        """Requests per second: a finite number >= 0, where 0 means unlimited."""
        if raw is None:
            return None
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
            self.fail(path, f"expected a number of requests per second, got {got(raw)}")
            return None
        if raw < 0:
            self.fail(path, f"must be at least 0 (0 means unlimited), got {quote(raw)}")
            return None
        return float(raw)

    def flag(self, path: str, raw: object) -> bool | None:
        """A YAML boolean."""
        if raw is None or isinstance(raw, bool):
            return raw
        self.fail(path, f"expected true or false, got {got(raw)}")
        return None

    def choice(self, path: str, raw: object, allowed: tuple[str, ...]) -> str | None:
        """One of ``allowed``, or None after recording why not."""
        text = self.string(path, raw)
        if text is None or text in allowed:
            return text
        reason = f"must be one of {', '.join(allowed)}; got {_literal(text)}"
        self.fail(path, self.refused.get(text, reason))
        return None

    def choices(self, path: str, raw: object, allowed: tuple[str, ...]) -> list[str]:
        """The list's items that are among ``allowed``; every other item is a problem."""
        if not isinstance(raw, list):
            self.fail(path, f"expected a list, got {got(raw)}")
            return []
        chosen = [self.choice(f"{path}[{i}]", item, allowed) for i, item in enumerate(raw)]
        return [item for item in chosen if item is not None]

    def strings(self, path: str, raw: object) -> tuple[str, ...] | None:
        """A list of strings (each ``${VAR}``-expanded)."""
        if raw is None:
            return None
        if not isinstance(raw, list):
            self.fail(path, f"expected a list of strings, got {got(raw)}")
            return None
        texts = [self.string(f"{path}[{i}]", item) for i, item in enumerate(raw)]
        return tuple(t for t in texts if t is not None)


# --- duration rules ---


def positive(seconds: float) -> str | None:
    """Rule: more than zero."""
    return None if seconds > 0 else "must be greater than 0s"


def whole(seconds: float) -> str | None:
    """Rule: whole seconds."""
    return None if seconds.is_integer() else "must be whole seconds"


def divides_day(seconds: float) -> str | None:
    """Rule: a whole number of them make one day."""
    return None if DAY % seconds == 0 else "must divide 1d evenly (like 15m, 1h or 6h)"


def at_least(minimum: float) -> Rule:
    """Rule: no shorter than ``minimum``."""
    return lambda s: None if s >= minimum else f"must be at least {format_duration(minimum)}"


def at_most(maximum: float) -> Rule:
    """Rule: no longer than ``maximum``."""
    return lambda s: None if s <= maximum else f"must be at most {format_duration(maximum)}"


# --- helpers ---

T = TypeVar("T")


def build(factory: Callable[..., T], **values: object) -> T:
    """``factory`` called with only the values that were read, so dataclass defaults apply."""
    return factory(**{name: value for name, value in values.items() if value is not None})


def join(path: str, key: object) -> str:
    """``path.key``, or ``path["odd key"]`` when the key would not read as one line."""
    if not isinstance(key, str | int) or (isinstance(key, str) and (
            not _PLAIN_KEY.fullmatch(key) or has_surrogate(key))):
        # One line per problem, whatever the key holds; a lone surrogate escaped, since it
        # cannot be encoded (a /-/reload reply would fail).
        return f"{path}[{quote(key)}]"
    return f"{path}.{key}" if path else str(key)


def quote(value: object) -> str:
    """A short, YAML-looking rendering of a user's value for a message.

    A long one is marked rather than cut here: :func:`scrub` masks secrets in it first and
    then cuts it, so a cut can never leave most of a secret behind.
    """
    text = render(value)
    return text if len(text) <= _SHOWN else f"{_OPEN}{text}{_CLOSE}"


def render(value: object) -> str:
    """``value`` spelled out, in bounded time and length whatever it holds (an alias bomb)."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, str):
        text = json.dumps(value[:_RENDERED], ensure_ascii=False)
    elif isinstance(value, int) and value.bit_length() > 64:
        return "<a very large integer>"  # repr() of a huge int is slow and may even raise
    else:
        text = _REPR.repr(value)
    # A lone surrogate cannot be printed or encoded (a /-/reload reply would fail): escape it.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")[:_RENDERED]


def cut(text: str) -> str:
    """``text`` cut to the length a message shows."""
    return text if len(text) <= _SHOWN else text[:_SHOWN - 3] + "..."


_SHOWN = 60
_RENDERED = 4096  # rendered before masking: longer than any real key, bounded all the same
_OPEN, _CLOSE = "\x00", "\x01"  # around a long rendering, until scrub() has masked and cut it
_LONG = re.compile(f"{_OPEN}(.*?){_CLOSE}", re.DOTALL)
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, _RENDERED, 200
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 10


def _literal(text: str) -> str:
    """A string as Python writes it (the web config's choices quote so), cut to one short line."""
    return cut(repr(text[:100]))


def got(value: object) -> str:
    """``value`` and its type, for "expected X, got Y" messages."""
    if isinstance(value, str) and _YAML_TEXT_NUMBER.fullmatch(value.strip()):
        number = float(value)
        spelt = str(int(number)) if number.is_integer() and abs(number) < 2**63 else repr(number)
        return (f"{quote(value)} (str: YAML reads a number written like this as text; "
                f"write {spelt})")
    kind = "float" if isinstance(value, float) else type(value).__name__  # a WrittenFloat too
    return quote(value) if value is None else f"{quote(value)} ({kind})"


# What YAML 1.1 (PyYAML) reads as a string though it reads as a number: 5e6, 1.5E3, 2.e-4
# (a float needs a dot and a signed exponent there, like 5.0e+6).
_YAML_TEXT_NUMBER = re.compile(r"[-+]?(?:\d[\d_]*\.?\d*|\.\d+)[eE][-+]?\d+")


def scrub(problems: list[str], secrets: list[str]) -> list[str]:
    """``problems`` with every secret seen replaced by REDACTED, then long values cut."""
    # Belt and braces: if the private key was also pasted into another field (or ${VAR} put it
    # there), no message may echo it. Values are masked, not prose (see mask_secrets).
    problems = [mask_secrets(problem, secrets, REDACTED) for problem in problems]
    return [_LONG.sub(lambda m: cut(m.group(1)), problem) for problem in problems]

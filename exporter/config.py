"""The configuration: parsed once, at the edge, into frozen dataclasses."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TypeVar
from urllib.parse import urlsplit

import yaml

from exporter.durations import format_duration, parse_duration

DEFAULT_ENDPOINT = "https://api.sigcalcloud.com/"
DEFAULT_PORT = 9866
DEFAULT_LISTEN_ADDRESS = f":{DEFAULT_PORT}"
BUILTIN_LABELS = ("project_id", "key_id", "model", "window", "currency", "instance", "job")


class ConfigError(Exception):
    """Every problem found in a config, each prefixed with its dotted path."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class ApiConfig:
    """How to reach and authenticate to the API."""

    endpoint: str = DEFAULT_ENDPOINT
    public_key: str = ""
    private_key: str = field(default="", repr=False)
    timeout: float = 60.0
    max_concurrency: int = 16
    rate_limit: float = 20.0  # requests per second for the whole process; 0 disables


@dataclass(frozen=True)
class PollConfig:
    """When and how usage is read."""

    interval: float = 60.0
    settle: int = 600
    period: int = 3600
    window_interval: float = 300.0
    permanent_error_retry: float = 300.0


@dataclass(frozen=True)
class StateConfig:
    """Where the ledger is persisted, and how far back a restart catches up."""

    path: str | None = None
    max_backfill: int = 86400


@dataclass(frozen=True)
class Window:
    """A trailing window exported as gauges; ``name`` is the label value as written."""

    name: str
    seconds: int


@dataclass(frozen=True)
class Target:
    """One (project, key, model) whose usage is read."""

    key: str
    model: str
    project: str = ""
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def ident(self) -> str:
        """A stable identity for state files and sharding."""
        return f"{self.project}/{self.key}/{self.model}"


@dataclass(frozen=True)
class Config:
    """The whole, validated configuration."""

    api: ApiConfig = ApiConfig()
    poll: PollConfig = PollConfig()
    state: StateConfig = StateConfig()
    windows: tuple[Window, ...] = (Window("1h", 3600), Window("24h", 86400))
    targets: tuple[Target, ...] = ()


Rule = Callable[[float], str | None]
"""A check on a parsed duration in seconds: None when fine, else what it must be."""

_ROOT_KEYS = ("api", "poll", "state", "windows", "targets")
_API_KEYS = ("endpoint", "public_key", "public_key_file", "private_key", "private_key_file",
             "timeout", "max_concurrency", "rate_limit")
_POLL_KEYS = ("interval", "settle", "period", "window_interval", "permanent_error_retry")
_STATE_KEYS = ("path", "max_backfill")
_TARGET_KEYS = ("project", "key", "model", "labels")
_DAY = 86400
_MAX_WINDOW = 31 * _DAY
_ENV_REF = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$\{")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_PLAIN_KEY = re.compile(r"[^\s.\[\]\"]+")
REDACTED = "<secret>"
"""What ``redacted`` shows instead of a secret."""


def load_config(path: str, environ: Mapping[str, str]) -> Config:
    """Read and validate the YAML file at ``path``; raise ConfigError listing every problem."""
    try:
        with open(path, encoding="utf-8") as file:
            data = yaml.safe_load(file)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not valid UTF-8 text"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_problem(path, exc)]) from None
    return parse_config(data, environ, os.path.dirname(os.path.abspath(path)))


def parse_config(
    data: object, environ: Mapping[str, str], base_dir: str, *, require_targets: bool = True
) -> Config:
    """Validate already-loaded YAML ``data``; relative file paths resolve against ``base_dir``."""
    if data is not None and not isinstance(data, dict):
        # Everything else would be reported missing too: one line says it better.
        raise ConfigError([f"(top level): expected a mapping of sections, got {_got(data)}"])
    reader = _Reader(environ)
    root = reader.section("", data, _ROOT_KEYS)
    config = _build(
        Config,
        api=_api(reader, root.get("api"), base_dir),
        poll=_poll(reader, root.get("poll")),
        state=_state(reader, root.get("state"), base_dir),
        windows=_windows(reader, root.get("windows")),
        targets=_targets(reader, root.get("targets"), require_targets),
    )
    if reader.problems:
        raise ConfigError(_scrub(reader.problems, reader.secrets))
    return config


def redacted(config: Config) -> dict[str, object]:
    """The effective config as JSON-able data, durations spelled out, secrets replaced."""
    api, poll, state = config.api, config.poll, config.state
    return {
        "api": {"endpoint": api.endpoint, "public_key": api.public_key, "private_key": REDACTED,
                "timeout": format_duration(api.timeout), "max_concurrency": api.max_concurrency,
                "rate_limit": api.rate_limit},
        "poll": {name: format_duration(getattr(poll, name)) for name in _POLL_KEYS},
        "state": {"path": state.path, "max_backfill": format_duration(state.max_backfill)},
        "windows": [window.name for window in config.windows],
        "targets": [{"project": t.project, "key": t.key, "model": t.model, "labels": dict(t.labels)}
                    for t in config.targets],
    }


# --- sections: each reads one part of the file; absent keys keep the dataclass defaults ---


def _api(r: _Reader, raw: object, base_dir: str) -> ApiConfig:
    d = r.section("api", raw, _API_KEYS)
    return _build(
        ApiConfig,
        endpoint=_endpoint(r, d.get("endpoint")),
        public_key=_credential(r, d, "public_key", base_dir),
        private_key=_credential(r, d, "private_key", base_dir),
        timeout=r.duration("api.timeout", d.get("timeout"), _positive),
        max_concurrency=r.integer("api.max_concurrency", d.get("max_concurrency"), 1, 256),
        rate_limit=r.rate("api.rate_limit", d.get("rate_limit")),
    )


def _endpoint(r: _Reader, raw: object) -> str | None:
    url = r.string("api.endpoint", raw)
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            r.fail("api.endpoint", f"expected an http:// or https:// URL, got {_quote(url)}")
            return None
    return url


def _credential(r: _Reader, d: dict[str, object], name: str, base_dir: str) -> str | None:
    """``name`` given literally or as ``name_file``: exactly one of the two."""
    path, file_key, secret = f"api.{name}", f"{name}_file", name == "private_key"
    literal = r.string(path, d.get(name), secret=secret)
    filename = r.string(f"api.{file_key}", d.get(file_key))
    if name in d and file_key in d:
        r.fail(f"api.{file_key}", f"conflicts with api.{name}; set only one of them")
        return None
    if filename is not None:
        return _read_key_file(r, f"api.{file_key}", os.path.join(base_dir, filename))
    if name not in d:
        r.fail(path, f"required (or set api.{file_key})")
    elif literal == "":
        r.fail(path, "must not be empty")
        return None
    return literal


def _read_key_file(r: _Reader, path: str, filename: str) -> str | None:
    # The content is a credential: messages name the file, never what is in it.
    try:
        with open(filename, encoding="utf-8") as file:
            key = file.read().strip()
    except OSError as exc:
        r.fail(path, f"cannot read {filename}: {exc.strerror or type(exc).__name__}")
        return None
    except UnicodeDecodeError:
        r.fail(path, f"{filename} is not valid UTF-8 text")
        return None
    if not key:
        r.fail(path, f"{filename} is empty")
        return None
    r.secrets.append(key)
    return key


def _poll(r: _Reader, raw: object) -> PollConfig:
    d = r.section("poll", raw, _POLL_KEYS)
    read = {
        "interval": r.duration("poll.interval", d.get("interval"), _at_least(1)),
        "settle": r.seconds("poll.settle", d.get("settle")),
        "period": r.seconds("poll.period", d.get("period"), _positive, _at_most(_DAY),
                            _divides_day),
        "window_interval": r.duration("poll.window_interval", d.get("window_interval"), _positive),
        "permanent_error_retry": r.duration(
            "poll.permanent_error_retry", d.get("permanent_error_retry"), _positive),
    }
    poll = _build(PollConfig, **read)
    if all(read[k] is not None or k not in d for k in ("interval", "period")):
        _check_period(r, poll)
    # A window read more often than the targets are polled would show nothing new.
    return replace(poll, window_interval=max(poll.window_interval, poll.interval))


def _check_period(r: _Reader, poll: PollConfig) -> None:
    if poll.period < poll.interval:
        r.fail("poll.period", f"must be at least poll.interval ({format_duration(poll.interval)}),"
                              f" got {format_duration(poll.period)}")


def _state(r: _Reader, raw: object, base_dir: str) -> StateConfig:
    d = r.section("state", raw, _STATE_KEYS)
    path = r.string("state.path", d.get("path"))
    if path == "":
        r.fail("state.path", "must not be empty (omit it to keep counters in memory only)")
    return _build(
        StateConfig,
        path=os.path.join(base_dir, path) if path else None,
        max_backfill=r.seconds("state.max_backfill", d.get("max_backfill"), _positive),
    )


def _windows(r: _Reader, raw: object) -> tuple[Window, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        r.fail("windows", f"expected a list of durations like [1h, 24h], got {_got(raw)}")
        return None
    windows: list[Window] = []
    for i, item in enumerate(raw):
        path = f"windows[{i}]"
        name = r.string(path, item, expected="a duration like 1h")
        seconds = None if name is None else r.parse(
            path, name, _whole, _positive, _at_most(_MAX_WINDOW))
        if name is None or seconds is None:
            continue
        # "1h" and "60m" would be two series with the same numbers under different labels.
        first = next((j for j, w in enumerate(windows) if w.seconds == seconds), None)
        if first is not None:
            r.fail(path, f"duplicate of windows[{first}] ({windows[first].name})")
        else:
            windows.append(Window(name, int(seconds)))
    return tuple(windows)


def _targets(r: _Reader, raw: object, required: bool) -> tuple[Target, ...]:
    if raw is not None and not isinstance(raw, list):
        r.fail("targets", f"expected a list of targets, got {_got(raw)}")
        return ()
    if not raw:
        if required:
            r.fail("targets", "at least one target is required")
        return ()
    seen: dict[tuple[str, str, str], int] = {}
    targets: list[Target] = []
    for i, item in enumerate(raw):
        target = _target(r, f"targets[{i}]", item)
        if target is None:
            continue
        ident = (target.project, target.key, target.model)
        if ident in seen:
            project, key, model = (_quote(part) for part in ident)
            what = f"(project {project}, key {key}, model {model})"
            r.fail(f"targets[{i}]", f"duplicate of targets[{seen[ident]}] {what}")
            continue
        seen[ident] = i
        targets.append(target)
    return tuple(targets)


def _target(r: _Reader, path: str, raw: object) -> Target | None:
    if not isinstance(raw, dict):
        r.fail(path, f"expected a mapping with key and model, got {_got(raw)}")
        return None
    d = r.section(path, raw, _TARGET_KEYS)
    key, model = (_required(r, f"{path}.{name}", d.get(name)) for name in ("key", "model"))
    project = r.string(f"{path}.project", d.get("project"))
    labels = _labels(r, f"{path}.labels", d.get("labels"))
    if key is None or model is None:
        return None
    return _build(Target, key=key, model=model, project=project, labels=labels)


def _required(r: _Reader, path: str, raw: object) -> str | None:
    if raw is None:
        r.fail(path, "required")
    text = r.string(path, raw)
    if text == "":
        r.fail(path, "must not be empty")
        return None
    return text


def _labels(r: _Reader, path: str, raw: object) -> tuple[tuple[str, str], ...]:
    pairs = []
    for name, value in r.mapping(path, raw).items():
        where = _join(path, name)
        if not _label_name_ok(r, where, name):
            continue
        text = r.string(where, value) if value is not None else None
        if value is None or text == "":
            r.fail(where, "must be a non-empty string (an empty label is no label)")
        elif text is not None:
            pairs.append((str(name), text))
    return tuple(sorted(pairs))


def _label_name_ok(r: _Reader, path: str, name: object) -> bool:
    if not isinstance(name, str) or not _LABEL_NAME.fullmatch(name):
        r.fail(path, "invalid label name (use letters, digits and _, not starting with a digit)")
    elif name.startswith("__"):
        r.fail(path, "label names starting with __ are reserved for Prometheus")
    elif name in BUILTIN_LABELS:
        r.fail(path, f"collides with a built-in label (built-in: {', '.join(BUILTIN_LABELS)})")
    else:
        return True
    return False


# --- the reader: type checks and ${VAR} expansion, collecting problems by dotted path ---


class _Reader:
    """Reads raw YAML values at dotted paths, collecting every problem instead of stopping."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[str] = []
        self.secrets: list[str] = []  # every secret value seen, to scrub from the messages

    def fail(self, path: str, message: str) -> None:
        """Record one problem at ``path``."""
        self.problems.append(f"{path or '(top level)'}: {message}")

    def mapping(self, path: str, raw: object) -> dict[object, object]:
        """``raw`` as a dict; null is an empty one, anything else a problem."""
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.fail(path, f"expected a mapping, got {_got(raw)}")
            return {}
        return raw

    def section(self, path: str, raw: object, keys: tuple[str, ...]) -> dict[str, object]:
        """A mapping of known ``keys``; unknown keys are problems, null values count as absent."""
        d = self.mapping(path, raw)
        for key in d:
            if key not in keys:
                self.fail(_join(path, key), f"unknown key (expected one of: {', '.join(keys)})")
        return {k: v for k, v in d.items() if isinstance(k, str) and k in keys and v is not None}

    def string(self, path: str, raw: object, expected: str = "a string",
               secret: bool = False) -> str | None:
        """``raw`` with ``${VAR}`` expanded; a secret's value is never shown, only its type."""
        if raw is None:
            return None
        if not isinstance(raw, str):
            shown = type(raw).__name__ if secret else _got(raw)
            self.fail(path, f"expected {expected}, got {shown}")
            return None
        before = len(self.problems)
        text = _ENV_REF.sub(lambda ref: self._resolve(path, ref), raw)
        if secret:
            self.secrets.append(text)
        return text if len(self.problems) == before else None

    def _resolve(self, path: str, ref: re.Match[str]) -> str:
        name = ref.group(1)
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
        value = self.duration(path, raw, _whole, *rules)
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
            self.fail(path, f"expected an integer, got {_got(raw)}")
            return None
        if not low <= raw <= high:
            self.fail(path, f"must be between {low} and {high}, got {_quote(raw)}")
            return None
        return raw

    def rate(self, path: str, raw: object) -> float | None:
        """Requests per second: a finite number >= 0, where 0 means unlimited."""
        if raw is None:
            return None
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
            self.fail(path, f"expected a number of requests per second, got {_got(raw)}")
            return None
        if raw < 0:
            self.fail(path, f"must be at least 0 (0 means unlimited), got {_quote(raw)}")
            return None
        return float(raw)


# --- duration rules ---


def _positive(seconds: float) -> str | None:
    return None if seconds > 0 else "must be greater than 0s"


def _whole(seconds: float) -> str | None:
    return None if seconds.is_integer() else "must be whole seconds"


def _divides_day(seconds: float) -> str | None:
    return None if _DAY % seconds == 0 else "must divide 1d evenly (like 15m, 1h or 6h)"


def _at_least(minimum: float) -> Rule:
    return lambda s: None if s >= minimum else f"must be at least {format_duration(minimum)}"


def _at_most(maximum: float) -> Rule:
    return lambda s: None if s <= maximum else f"must be at most {format_duration(maximum)}"


# --- helpers ---

T = TypeVar("T")


def _build(factory: Callable[..., T], **values: object) -> T:
    """``factory`` called with only the values that were read, so dataclass defaults apply."""
    return factory(**{name: value for name, value in values.items() if value is not None})


def _join(path: str, key: object) -> str:
    if not isinstance(key, str | int) or (isinstance(key, str) and not _PLAIN_KEY.fullmatch(key)):
        return f"{path}[{_quote(key)}]"  # one line per problem, whatever the key holds
    return f"{path}.{key}" if path else str(key)


def _quote(value: object) -> str:
    """A short, YAML-looking rendering of a user's value for a message."""
    if isinstance(value, bool) or value is None:
        text = {True: "true", False: "false", None: "null"}[value]
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, int) and value.bit_length() > 64:
        text = "<a very large integer>"  # repr() of a huge int is slow and may even raise
    else:
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _got(value: object) -> str:
    return _quote(value) if value is None else f"{_quote(value)} ({type(value).__name__})"


def _yaml_problem(path: str, exc: yaml.YAMLError) -> str:
    # Only the problem and position: str(exc) quotes the offending line, which may hold a key.
    mark = getattr(exc, "problem_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else path
    problem = getattr(exc, "problem", None) or "not valid YAML"
    return f"{where}: invalid YAML: {problem}"


def _scrub(problems: list[str], secrets: list[str]) -> list[str]:
    # Belt and braces: if the private key was also pasted into another field (or ${VAR} put it
    # there), no message may echo it. Shorter strings are no real key and would garble messages.
    for secret in sorted((s for s in secrets if len(s) >= 8), key=len, reverse=True):
        problems = [problem.replace(secret, REDACTED) for problem in problems]
    return problems

"""Parsers for the core config sections (api, poll, state, windows, targets) and labels."""

from __future__ import annotations

import os
import re
from dataclasses import replace
from urllib.parse import urlsplit

from exporter.config.advanced import REMOVAL, Advanced, at, old_keys
from exporter.config.reader import (
    DAY,
    Reader,
    at_least,
    at_most,
    build,
    got,
    join,
    positive,
    quote,
    whole,
)
from exporter.config.types import (
    BUILTIN_LABELS,
    ApiConfig,
    KeysConfig,
    PollConfig,
    StateConfig,
    Target,
    Window,
)
from exporter.core.grid import check_zone
from exporter.core.smallfile import SETTING_CAP, read_capped

API_KEYS = ("endpoint", "public_key", "public_key_file", "private_key", "private_key_file",
            "timeout", "max_concurrency", "rate_limit", "time_zone")
POLL_KEYS = ("interval", "settle")
STATE_KEYS = ("path", "max_backfill")
KEYS_KEYS = ("enabled", "interval")
TARGET_KEYS = ("account", "project", "key", "model", "labels")
_MAX_WINDOW = 31 * DAY
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def api_section(r: Reader, raw: object, base_dir: str, path: str = "api",
                extra: tuple[str, ...] = ()) -> ApiConfig:
    """The ``api`` section (or one entry of ``accounts`` at ``path``, which may also hold the
    ``extra`` keys its caller reads)."""
    d = r.section(path, raw, (*extra, *API_KEYS))
    return build(
        ApiConfig,
        endpoint=_endpoint(r, f"{path}.endpoint", d.get("endpoint")),
        public_key=_credential(r, d, path, "public_key", base_dir),
        private_key=_credential(r, d, path, "private_key", base_dir),
        timeout=r.duration(f"{path}.timeout", d.get("timeout"), positive),
        max_concurrency=r.integer(f"{path}.max_concurrency", d.get("max_concurrency"), 1, 256),
        rate_limit=r.rate(f"{path}.rate_limit", d.get("rate_limit")),
        time_zone=_time_zone(r, f"{path}.time_zone", d.get("time_zone")),
    )


def _time_zone(r: Reader, path: str, raw: object) -> str | None:
    """The zone whose midnights the cloud's days start at (an IANA name)."""
    name = r.string(path, raw)
    if name is not None and (why := check_zone(name)) is not None:
        r.fail(path, why)
        return None
    return name


def _endpoint(r: Reader, path: str, raw: object) -> str | None:
    url = r.string(path, raw)
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            r.fail(path, f"expected an http:// or https:// URL, got {quote(url)}")
            return None
    return url


def _credential(r: Reader, d: dict[str, object], section: str, name: str,
                base_dir: str) -> str | None:
    """``name`` given literally or as ``name_file``: exactly one of the two."""
    path, file_key, secret = f"{section}.{name}", f"{name}_file", name == "private_key"
    literal = r.string(path, d.get(name), secret=secret)
    filename = r.string(f"{section}.{file_key}", d.get(file_key))
    if name in d and file_key in d:
        r.fail(f"{section}.{file_key}", f"conflicts with {section}.{name}; set only one of them")
        return None
    if filename is not None:
        return _read_key_file(r, f"{section}.{file_key}", os.path.join(base_dir, filename))
    if name not in d:
        r.fail(path, f"required (or set {section}.{file_key})")
    elif literal == "":
        r.empty(path, d.get(name))
        return None
    return literal


def _read_key_file(r: Reader, path: str, filename: str) -> str | None:
    # The content is a credential: messages name the file, never what is in it.
    try:  # a regular file only, never blocking, capped: a FIFO or /dev/zero is refused
        key = read_capped(filename, SETTING_CAP).decode("utf-8").strip()
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


def poll_section(r: Reader, raw: object, advanced: Advanced) -> PollConfig:
    """The ``poll`` section, with the ``advanced`` keys that tune it."""
    d = r.section("poll", raw, POLL_KEYS, old=("period", *old_keys("poll")))
    read = {
        "interval": r.duration("poll.interval", d.get("interval"), at_least(1)),
        "settle": r.seconds("poll.settle", d.get("settle")),
        "window_interval": r.duration(*at(advanced, "window_interval"), positive),
        "permanent_error_retry": r.duration(*at(advanced, "permanent_error_retry"), positive),
    }
    poll = build(PollConfig, **read)
    if "period" in d:  # accepted so that configs of older versions still load
        r.warn("poll.period", "deprecated and unused: counting cuts time at the provider's "
               f"midnights (api.time_zone), whatever the API's buckets; remove it ({REMOVAL})")
    # A window read more often than the targets are polled would show nothing new.
    return replace(poll, window_interval=max(poll.window_interval, poll.interval))


def state_section(r: Reader, raw: object, base_dir: str) -> StateConfig:
    """The ``state`` section; a relative path resolves against ``base_dir``."""
    d = r.section("state", raw, STATE_KEYS)
    path = r.string("state.path", d.get("path"))
    if path == "":
        r.fail("state.path", "must not be empty (omit it to keep counters in memory only)")
    return build(
        StateConfig,
        path=os.path.join(base_dir, path) if path else None,
        max_backfill=r.seconds("state.max_backfill", d.get("max_backfill"), positive),
    )


def keys_section(r: Reader, raw: object) -> KeysConfig:
    """The ``keys`` section: key health (ListUMInferAPIKey) on or off, and how often."""
    d = r.section("keys", raw, KEYS_KEYS)
    return build(
        KeysConfig,
        enabled=r.flag("keys.enabled", d.get("enabled")),
        interval=r.duration("keys.interval", d.get("interval"), at_least(1)),
    )


def windows_section(r: Reader, raw: object) -> tuple[Window, ...] | None:
    """The ``windows`` list; None (the default) when absent."""
    if raw is None:
        return None
    if not isinstance(raw, list):
        r.fail("windows", f"expected a list of durations like [1h, 24h], got {got(raw)}")
        return None
    windows: list[Window] = []
    for i, item in enumerate(raw):
        path = f"windows[{i}]"
        name = r.string(path, item, expected="a duration like 1h")
        seconds = None if name is None else r.parse(
            path, name, whole, positive, at_most(_MAX_WINDOW))
        if name is None or seconds is None:
            continue
        # "1h" and "60m" would be two series with the same numbers under different labels.
        first = next((j for j, w in enumerate(windows) if w.seconds == seconds), None)
        if first is not None:
            r.fail(path, f"duplicate of windows[{first}] ({windows[first].name})")
        else:
            windows.append(Window(name, int(seconds)))
    return tuple(windows)


def targets_section(r: Reader, raw: object, required: bool,
                    accounts: tuple[str, ...] = ()) -> tuple[Target, ...]:
    """The static ``targets`` list; empty is a problem when ``required``. ``accounts`` are the
    names under ``accounts:`` (none for the ``api:`` form), which targets must use."""
    if raw is not None and not isinstance(raw, list):
        r.fail("targets", f"expected a list of targets, got {got(raw)}")
        return ()
    if not raw:
        if required:
            r.fail("targets", "at least one target is required")
        return ()
    seen: dict[tuple[str, str, str, str], int] = {}
    targets: list[Target] = []
    for i, item in enumerate(raw):
        target = _target(r, f"targets[{i}]", item)
        if target is None or not _account_ok(r, target, f"targets[{i}].account", accounts):
            continue
        ident = (target.account, target.project, target.key, target.model)
        if ident in seen:
            project, key, model = (quote(part) for part in ident[1:])
            what = f"(project {project}, key {key}, model {model})"
            r.fail(f"targets[{i}]", f"duplicate of targets[{seen[ident]}] {what}")
            continue
        seen[ident] = i
        targets.append(target)
    return tuple(targets)


def _account_ok(r: Reader, target: Target, path: str, names: tuple[str, ...]) -> bool:
    """Whether the target names a configured account, as it must when there are several."""
    if target.account and not names:
        r.fail(path, "no accounts are configured (set accounts:, or remove it)")
    elif target.account and target.account not in names:
        r.fail(path, f"unknown account {quote(target.account)} (accounts: {', '.join(names)})")
    elif not target.account and len(names) > 1:
        r.fail(path, f"required with several accounts (one of: {', '.join(names)})")
    else:
        return True
    return False


def _target(r: Reader, path: str, raw: object) -> Target | None:
    if not isinstance(raw, dict):
        r.fail(path, f"expected a mapping with key and model, got {got(raw)}")
        return None
    d = r.section(path, raw, TARGET_KEYS)
    key, model = (required_string(r, f"{path}.{name}", d.get(name)) for name in ("key", "model"))
    project = r.string(f"{path}.project", d.get("project"))
    account = r.string(f"{path}.account", d.get("account"))
    labels = labels_section(r, f"{path}.labels", d.get("labels"))
    if key is None or model is None:
        return None
    return build(Target, key=key, model=model, project=project, labels=labels, account=account)


def required_string(r: Reader, path: str, raw: object) -> str | None:
    """A string that must be present and non-empty."""
    if raw is None:
        r.fail(path, "required")
    text = r.string(path, raw)
    if text == "":
        r.empty(path, raw)
        return None
    return text


def labels_section(r: Reader, path: str, raw: object) -> tuple[tuple[str, str], ...]:
    """Static labels: valid, non-reserved names with non-empty values, sorted by name."""
    pairs = []
    for name, value in r.mapping(path, raw).items():
        where = join(path, name)
        if not _label_name_ok(r, where, name):
            continue
        text = r.string(where, value) if value is not None else None
        if value is None or text == "":
            r.fail(where, "must be a non-empty string (an empty label is no label)")
        elif text is not None:
            pairs.append((str(name), text))
    return tuple(sorted(pairs))


def _label_name_ok(r: Reader, path: str, name: object) -> bool:
    if not isinstance(name, str) or not _LABEL_NAME.fullmatch(name):
        r.fail(path, "invalid label name (use letters, digits and _, not starting with a digit)")
    elif name.startswith("__"):
        r.fail(path, "label names starting with __ are reserved for Prometheus")
    elif name in BUILTIN_LABELS:
        r.fail(path, f"collides with a built-in label (built-in: {', '.join(BUILTIN_LABELS)})")
    else:
        return True
    return False

"""Parsers for ``accounting`` (the shared origin) and ``ha`` (the other replicas of a pair)."""

from __future__ import annotations

import os
from datetime import datetime
from urllib.parse import urlsplit

from exporter.config.reader import Reader, build, positive, quote
from exporter.config.types import AccountingConfig, HaConfig
from exporter.core.smallfile import SETTING_CAP, read_capped

ACCOUNTING_KEYS = ("origin",)
HA_KEYS = ("peers", "username", "password", "password_file", "ca_file", "timeout",
           "insecure_http_auth")
_MAX_PEERS = 16


def accounting_section(r: Reader, raw: object, state: object = None) -> AccountingConfig:
    """The ``accounting`` section; ``state`` is the raw ``state`` section, whose
    ``max_backfill`` an origin overrides (said, so that nobody relies on it)."""
    d = r.section("accounting", raw, ACCOUNTING_KEYS)
    if "origin" in d and isinstance(state, dict) and state.get("max_backfill") is not None:
        r.warn("state.max_backfill", "has no effect with accounting.origin: a restart catches "
               "up from the origin however long it was down; remove state.max_backfill")
    return build(AccountingConfig, origin=_instant(r, "accounting.origin", d.get("origin")))


def _instant(r: Reader, path: str, raw: object) -> int | None:
    """An RFC 3339 instant with its offset, in whole Unix seconds. YAML reads an unquoted
    timestamp as a datetime already; one without an offset would be local time, so neither
    form may leave it out."""
    if raw is None:
        return None
    if isinstance(raw, datetime):
        when = raw
    else:
        text = r.string(path, raw, expected="an RFC 3339 time like 2025-01-01T00:00:00Z")
        if text is None:
            return None
        try:
            when = datetime.fromisoformat(text.strip())
        except ValueError:
            r.fail(path, f"expected an RFC 3339 time like 2025-01-01T00:00:00Z, got {quote(text)}")
            return None
    if when.tzinfo is None or when.utcoffset() is None:
        r.fail(path, "needs an offset (Z or +08:00): without one the instant depends on the "
                     "host's time zone, and replicas must agree on it")
        return None
    seconds = when.timestamp()
    if not seconds.is_integer():
        r.fail(path, "must be whole seconds")
        return None
    return int(seconds)


def ha_section(r: Reader, raw: object, base_dir: str, origin_given: bool) -> HaConfig:
    """The ``ha`` section; peers need ``accounting.origin`` (without it replicas count from
    different instants and no ledger of one is valid on another). ``origin_given``: the
    origin was set (even if wrongly: that is reported once, at the origin)."""
    d = r.section("ha", raw, HA_KEYS)
    peers = _peers(r, d.get("peers"))
    if peers and not origin_given:
        r.fail("ha.peers", "needs accounting.origin: replicas count the same usage only from "
                           "the same origin")
    username = r.string("ha.username", d.get("username"))
    password = _password(r, d, base_dir)
    if password is not None and username is None:
        r.fail("ha.username", "required with ha.password")
    insecure = r.flag("ha.insecure_http_auth", d.get("insecure_http_auth"))
    plain = [url for url in peers or () if urlsplit(url).scheme == "http"]
    if username is not None and plain and not insecure:
        # Basic auth over http:// is the password in clear, to the peer and anyone between.
        r.fail("ha.username", f"would be sent in clear to {plain[0]}: use https:// peer URLs "
                              "(with ha.ca_file), or set ha.insecure_http_auth: true on a "
                              "network you trust")
    ca_file = r.string("ha.ca_file", d.get("ca_file"))
    if ca_file is not None:
        ca_file = os.path.join(base_dir, ca_file)
        if not os.path.isfile(ca_file):
            r.fail("ha.ca_file", f"no such file: {ca_file}")
    return build(HaConfig, peers=peers, username=username, password=password, ca_file=ca_file,
                 timeout=r.duration("ha.timeout", d.get("timeout"), positive),
                 insecure_http_auth=insecure)


def _peers(r: Reader, raw: object) -> tuple[str, ...] | None:
    urls = r.strings("ha.peers", raw)
    if urls is None:
        return None
    if len(urls) > _MAX_PEERS:
        r.fail("ha.peers", f"at most {_MAX_PEERS} peers, got {len(urls)}")
    for i, url in enumerate(urls):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            r.fail(f"ha.peers[{i}]", f"expected an http:// or https:// URL, got {quote(url)}")
        elif parts.username is not None or parts.password is not None:
            # A URL is logged when a peer fails; a password in it would be logged too.
            r.fail(f"ha.peers[{i}]", "must not hold credentials; set ha.username and "
                                     "ha.password (or ha.password_file)")
    if len(set(urls)) != len(urls):
        r.fail("ha.peers", "lists a URL twice")
    return urls


def _password(r: Reader, d: dict[str, object], base_dir: str) -> str | None:
    """``password`` or ``password_file``, at most one (the content is never shown)."""
    if "password" in d and "password_file" in d:
        r.fail("ha.password_file", "conflicts with ha.password; set only one of them")
        return None
    if "password" in d:
        return r.string("ha.password", d["password"], secret=True)
    name = r.string("ha.password_file", d.get("password_file"))
    if name is None:
        return None
    path = os.path.join(base_dir, name)
    try:
        text = read_capped(path, SETTING_CAP).decode("utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not valid UTF-8 text"
        r.fail("ha.password_file", f"cannot read {path}: {why or type(exc).__name__}")
        return None
    if not text:
        r.fail("ha.password_file", f"{path} is empty")
        return None
    r.secrets.append(text)
    return text

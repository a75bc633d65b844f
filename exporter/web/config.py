"""The exporter-toolkit ``web-config.yml``: TLS, basic auth and extra response headers.

Honoured: cert/key (files or inline), client_ca(_file), client_auth_type, min/max_version,
cipher_suites (TLS 1.2 and below; TLS 1.3 suites are fixed, as in Go), prefer_server_cipher_suites,
http_server_config.headers, basic_auth_users. Checked but not honoured: curve_preferences
(OpenSSL's default groups apply), http2 (this server speaks HTTP/1.1). Refused with a reason:
RequireAnyClientCert, client_allowed_sans, rate_limit. Relative paths are taken from the file's
directory. Unlike the toolkit, certificates are read at start and on each reload (SIGHUP,
POST /-/reload), not per connection. A bcrypt cost above 14 is refused.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt
import yaml

from exporter.config import ConfigError
from exporter.config.reader import Reader, scrub
from exporter.config.yamlstrict import load_file
from exporter.core.clock import Clock, SystemClock
from exporter.web.security import MAX_BCRYPT_COST, REALM, BasicAuth, Checker
from exporter.web.tls import parse_tls

_UNVERIFIED = ("not supported: Python's ssl cannot accept a client certificate without verifying"
               " it; use RequireAndVerifyClientCert with client_ca_file")
_REFUSED = {  # keys and values the toolkit knows, refused with a reason instead of "unknown"
    "rate_limit": "not supported by uminfer-exporter; rate-limit in a reverse proxy",
    "client_allowed_sans": "not supported by uminfer-exporter; use a dedicated client CA instead",
    "RequireAnyClientCert": _UNVERIFIED,
    "RequireClientCert": _UNVERIFIED,  # the toolkit's old spelling of RequireAnyClientCert
}

# The runtime half lives in web.security; these names stay importable from here for callers.
__all__ = ["REALM", "Checker", "WebConfig", "check_web_config", "load_web_config"]

_HEADERS: dict[str, tuple[str, ...]] = {  # the toolkit's fixed set; () means any value
    "Strict-Transport-Security": (), "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"), "X-XSS-Protection": (),
    "Content-Security-Policy": ()}
WEB_CONFIG_CAP = 1 << 20  # a web config with thousands of users is ~100 KiB
_TOP = ("tls_server_config", "http_server_config", "basic_auth_users")
_BCRYPT = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
_HTPASSWD = "htpasswd -nBC 10 \"\" | tr -d ':\\n'"


@dataclass(frozen=True)
class WebConfig:
    """A validated web config; its repr never shows keys, hashes or passwords."""

    headers: tuple[tuple[str, str], ...] = ()
    users: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # (name, bcrypt hash)
    tls: ssl.SSLContext | None = field(default=None, repr=False, compare=False)
    checker: Checker = field(default=bcrypt.checkpw, repr=False, compare=False)
    clock: Clock = field(default_factory=SystemClock, repr=False, compare=False)
    _auth: BasicAuth = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        auth = BasicAuth(self.users, self.checker, self.clock.monotonic)
        object.__setattr__(self, "_auth", auth)

    @property
    def auth_required(self) -> bool:
        """Whether requests must carry valid basic-auth credentials."""
        return bool(self.users)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server-side TLS context, built once at load; None serves plain HTTP."""
        return self.tls

    def authenticate(self, authorization_header: str | None) -> bool:
        """Whether an ``Authorization`` header holds a configured user's right password.

        Slow (bcrypt) unless the same credentials passed lately: call it off the event loop.
        """
        return self._auth.check(authorization_header)

    def recently_authenticated(self, authorization_header: str | None) -> bool:
        """Whether the same credentials passed :meth:`authenticate` lately (fast)."""
        return self._auth.recent(authorization_header)


def load_web_config(path: str) -> WebConfig:
    """Read and validate the web config at ``path``; raise ConfigError listing every problem."""
    reader = Reader(refused=_REFUSED)  # the toolkit's format has no ${VAR} expansion
    raw = _read_yaml(reader, path)
    top = reader.section("", raw, _TOP)
    tls = parse_tls(reader, top.get("tls_server_config"), Path(path).parent)
    headers = _headers(reader, top.get("http_server_config"))
    users = _users(reader, top.get("basic_auth_users"))
    if reader.problems:
        raise ConfigError(scrub(reader.problems, reader.secrets))
    return WebConfig(headers=headers, users=users, tls=tls)


def check_web_config(path: str) -> list[str]:
    """Every problem with the web config at ``path`` (empty when it is valid)."""
    try:
        load_web_config(path)
    except ConfigError as exc:
        return exc.problems
    return []


def _read_yaml(reader: Reader, path: str) -> object:
    try:
        return load_file(path, WEB_CONFIG_CAP)  # a duplicate key is an error, not an override
    except OSError as exc:
        reader.fail(path, f"file not readable ({exc.strerror})")
    except UnicodeDecodeError:
        reader.fail(path, "not UTF-8 text")
    except yaml.YAMLError as exc:
        # Only the position: str(exc) quotes the offending line, which may hold a key or hash.
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else path
        reader.fail(where, f"invalid YAML: {getattr(exc, 'problem', None) or 'syntax error'}")
    return None


def _headers(reader: Reader, raw: object) -> tuple[tuple[str, str], ...]:
    d = reader.section("http_server_config", raw, ("http2", "headers"))
    reader.flag("http_server_config.http2", d.get("http2"))  # accepted; we serve HTTP/1.1
    headers = reader.section("http_server_config.headers", d.get("headers"), tuple(_HEADERS))
    pairs = []
    for name, value in headers.items():
        path = f"http_server_config.headers.{name}"
        allowed = _HEADERS[name]
        chosen = reader.choice(path, value, allowed) if allowed else reader.string(path, value)
        if chosen is not None:
            pairs.append((name, chosen))
    return tuple(pairs)


def _users(reader: Reader, raw: object) -> tuple[tuple[str, str], ...]:
    if raw is not None and not isinstance(raw, dict):
        reader.fail("basic_auth_users", f"expected a mapping, got {type(raw).__name__}")
        return ()
    users = []
    for name, stored in (raw or {}).items():
        path = f"basic_auth_users.{name}"
        if not isinstance(name, str) or not name or ":" in name:
            reader.fail(path, "a user name must be a non-empty string without ':'")
        elif not isinstance(stored, str) or not (match := _BCRYPT.fullmatch(stored)):
            # Never echo the value: it is a password hash, or worse, a plain password.
            reader.fail(path, f"not a bcrypt hash; make one with: {_HTPASSWD}")
        elif int(match.group(1)) > MAX_BCRYPT_COST:
            # Every request with a wrong password or an unknown user pays this cost too.
            reader.fail(path, f"bcrypt cost {match.group(1)} is above {MAX_BCRYPT_COST}, which "
                                f"would let wrong passwords tie up the CPU; rehash with: "
                                f"{_HTPASSWD}")
        else:
            users.append((name, stored))
    return tuple(users)

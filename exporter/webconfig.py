"""The exporter-toolkit ``web-config.yml``: TLS, basic auth and extra response headers.

Honoured: cert/key (files or inline), client_ca(_file), client_auth_type, min/max_version,
cipher_suites (TLS 1.2 and below; TLS 1.3 suites are fixed, as in Go), prefer_server_cipher_suites,
http_server_config.headers, basic_auth_users. Checked but not honoured: curve_preferences
(OpenSSL's default groups apply), http2 (this server speaks HTTP/1.1). Refused with a reason:
RequireAnyClientCert, client_allowed_sans, rate_limit. Relative paths are taken from the file's
directory. Unlike the toolkit, certificates are read once per load, not per connection.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt
import yaml

from exporter.config import ConfigError
from exporter.websecurity import (
    REALM,
    TLS_VERSIONS,
    BasicAuth,
    Checker,
    check_request,
    load_identity,
    tls_context,
    wrap_server,
)
from exporter.yamlstrict import load_strict

# The runtime half lives in websecurity; these names stay importable from here for callers.
__all__ = ["REALM", "Checker", "WebConfig", "check_request", "check_web_config",
           "load_web_config", "wrap_server"]

_MODES = {"NoClientCert": ssl.CERT_NONE,
          # Python's ssl cannot ask for a certificate without verifying it. The toolkit never
          # looks at an unverified certificate either, so not asking grants exactly the same.
          "RequestClientCert": ssl.CERT_NONE,
          "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
          "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}
_NEEDS_CA = ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert")
_TLS13_SUITES = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
_SUITES = {f"TLS_{kx}_WITH_{go}": f"{ossl_kx}{ossl}"  # Go's names -> OpenSSL's (TLS <= 1.2)
           for kx, ossl_kx in (("RSA", ""), ("ECDHE_RSA", "ECDHE-RSA-"),
                               ("ECDHE_ECDSA", "ECDHE-ECDSA-"))
           for go, ossl in (("AES_128_CBC_SHA", "AES128-SHA"), ("AES_256_CBC_SHA", "AES256-SHA"),
                            ("AES_128_GCM_SHA256", "AES128-GCM-SHA256"),
                            ("AES_256_GCM_SHA384", "AES256-GCM-SHA384"),
                            ("CHACHA20_POLY1305_SHA256", "CHACHA20-POLY1305"))
           if not (kx == "RSA" and go.startswith("CHACHA"))}
_CURVES = ("CurveP256", "CurveP384", "CurveP521", "X25519")
_HEADERS: dict[str, tuple[str, ...]] = {  # the toolkit's fixed set; () means any value
    "Strict-Transport-Security": (), "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"), "X-XSS-Protection": (),
    "Content-Security-Policy": ()}
_TOP = ("tls_server_config", "http_server_config", "basic_auth_users")
_TLS = ("cert", "key", "client_ca", "cert_file", "key_file", "client_ca_file", "client_auth_type",
        "min_version", "max_version", "cipher_suites", "prefer_server_cipher_suites",
        "curve_preferences")
_UNVERIFIED = ("not supported: Python's ssl cannot accept a client certificate without verifying"
               " it; use RequireAndVerifyClientCert with client_ca_file")
_REFUSED = {  # keys and values the toolkit knows, refused with a reason instead of "unknown"
    "rate_limit": "not supported by uminfer-exporter; rate-limit in a reverse proxy",
    "client_allowed_sans": "not supported by uminfer-exporter; use a dedicated client CA instead",
    "RequireAnyClientCert": _UNVERIFIED,
    "RequireClientCert": _UNVERIFIED,  # the toolkit's old spelling of RequireAnyClientCert
}
_BCRYPT = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
_HTPASSWD = "htpasswd -nBC 10 \"\" | tr -d ':\\n'"


@dataclass(frozen=True)
class WebConfig:
    """A validated web config; its repr never shows keys, hashes or passwords."""

    headers: tuple[tuple[str, str], ...] = ()
    users: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # (name, bcrypt hash)
    tls: ssl.SSLContext | None = field(default=None, repr=False, compare=False)
    checker: Checker = field(default=bcrypt.checkpw, repr=False, compare=False)
    _auth: BasicAuth = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_auth", BasicAuth(self.users, self.checker))

    @property
    def auth_required(self) -> bool:
        """Whether requests must carry valid basic-auth credentials."""
        return bool(self.users)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server-side TLS context, built once at load; None serves plain HTTP."""
        return self.tls

    def authenticate(self, authorization_header: str | None) -> bool:
        """Whether an ``Authorization`` header holds a configured user's right password."""
        return self._auth.check(authorization_header)


def load_web_config(path: str) -> WebConfig:
    """Read and validate the web config at ``path``; raise ConfigError listing every problem."""
    problems = _Problems()
    raw = _read_yaml(problems, path)
    top = problems.section("", raw, _TOP)
    tls = _tls(problems, top.get("tls_server_config"), Path(path).parent)
    headers = _headers(problems, top.get("http_server_config"))
    users = _users(problems, top.get("basic_auth_users"))
    if problems:
        raise ConfigError(list(problems))
    return WebConfig(headers=headers, users=users, tls=tls)


def check_web_config(path: str) -> list[str]:
    """Every problem with the web config at ``path`` (empty when it is valid)."""
    try:
        load_web_config(path)
    except ConfigError as exc:
        return exc.problems
    return []


# --- parsing: every problem collected with its dotted path ---


class _Problems(list[str]):
    """Problems found so far, and readers that add to them instead of stopping."""

    def fail(self, path: str, message: str) -> None:
        self.append(f"{path or '(top level)'}: {message}")

    def section(self, path: str, raw: object, keys: tuple[str, ...]) -> dict[str, object]:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.fail(path, f"expected a mapping, got {type(raw).__name__}")
            return {}
        for key in raw:
            where = f"{path}.{key}" if path else str(key)
            if key in _REFUSED:
                self.fail(where, _REFUSED[key])
            elif key not in keys:
                self.fail(where, f"unknown key (expected one of: {', '.join(keys)})")
        return {k: v for k, v in raw.items() if k in keys and v is not None}

    def string(self, path: str, raw: object, secret: bool = False) -> str | None:
        if raw is None or isinstance(raw, str):
            return raw
        shown = type(raw).__name__ if secret else f"{raw!r} ({type(raw).__name__})"
        self.fail(path, f"expected a string, got {shown}")
        return None

    def choice(self, path: str, raw: object, allowed: tuple[str, ...]) -> str | None:
        text = self.string(path, raw)
        if text is None or text in allowed:
            return text
        self.fail(path, _REFUSED.get(text, f"must be one of {', '.join(allowed)}; got {text!r}"))
        return None

    def strings(self, path: str, raw: object, allowed: tuple[str, ...]) -> list[str]:
        if not isinstance(raw, list):
            self.fail(path, f"expected a list, got {type(raw).__name__}")
            return []
        chosen = [self.choice(f"{path}[{i}]", item, allowed) for i, item in enumerate(raw)]
        return [item for item in chosen if item is not None]

    def flag(self, path: str, raw: object) -> bool | None:
        if raw is None or isinstance(raw, bool):
            return raw
        self.fail(path, f"expected true or false, got {raw!r}")
        return None


def _read_yaml(problems: _Problems, path: str) -> object:
    try:
        with open(path, encoding="utf-8") as f:
            return load_strict(f)  # a duplicate key is an error, not a silent override
    except OSError as exc:
        problems.fail(path, f"file not readable ({exc.strerror})")
    except UnicodeDecodeError:
        problems.fail(path, "not UTF-8 text")
    except yaml.YAMLError as exc:
        # Only the position: str(exc) quotes the offending line, which may hold a key or hash.
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else path
        problems.fail(where, f"invalid YAML: {getattr(exc, 'problem', None) or 'syntax error'}")
    return None


def _tls(problems: _Problems, raw: object, base: Path) -> ssl.SSLContext | None:
    d = problems.section("tls_server_config", raw, _TLS)
    if not d:
        return None  # absent or empty: plain HTTP, as in the toolkit
    before = len(problems)
    pem = {name: _pem(problems, d, name, base) for name in ("cert", "key", "client_ca")}
    mode = _client_auth(problems, d, has_ca=pem["client_ca"] is not None)
    versions = _versions(problems, d)
    ciphers = _ciphers(problems, d)
    if len(problems) > before or mode is None or versions is None:
        return None
    prefer = d.get("prefer_server_cipher_suites") is not False  # the toolkit's default is true
    context = tls_context(versions, ciphers, prefer)
    _load_identity(problems, context, pem, d)
    context.verify_mode = mode
    return None if len(problems) > before else context


def _versions(problems: _Problems, d: dict[str, object]) -> tuple[str, str] | None:
    low, high = (problems.choice(f"tls_server_config.{k}", d.get(k, default), tuple(TLS_VERSIONS))
                 for k, default in (("min_version", "TLS12"), ("max_version", "TLS13")))
    if low is None or high is None:
        return None
    if TLS_VERSIONS[low] > TLS_VERSIONS[high]:
        problems.fail("tls_server_config", f"min_version {low} is above max_version {high}")
        return None
    return low, high


def _ciphers(problems: _Problems, d: dict[str, object]) -> list[str]:
    """OpenSSL names of the configured TLS <= 1.2 suites; curves and the flag are only checked."""
    path = "tls_server_config"
    suites = problems.strings(f"{path}.cipher_suites", d.get("cipher_suites", []),
                              (*_SUITES, *_TLS13_SUITES))
    problems.strings(f"{path}.curve_preferences", d.get("curve_preferences", []), _CURVES)
    problems.flag(f"{path}.prefer_server_cipher_suites", d.get("prefer_server_cipher_suites"))
    return [_SUITES[suite] for suite in suites if suite in _SUITES]


def _pem(problems: _Problems, d: dict[str, object], name: str, base: Path) -> bytes | None:
    """PEM bytes from the inline ``name`` or from ``name_file``; at most one may be set."""
    section, file_key = "tls_server_config", f"{name}_file"
    if name in d and file_key in d:
        problems.fail(section, f"{name} and {file_key} are mutually exclusive")
        return None
    if name in d:
        text = problems.string(f"{section}.{name}", d[name], secret=name == "key")
        return None if text is None else text.encode()
    filename = problems.string(f"{section}.{file_key}", d.get(file_key))
    if filename is None:
        if name != "client_ca":
            problems.fail(section, f"missing one of {name} or {file_key}")
        return None
    full = base / filename
    try:
        return full.read_bytes()
    except OSError as exc:
        problems.fail(f"{section}.{file_key}", f"file not readable: {full} ({exc.strerror})")
    return None


def _client_auth(problems: _Problems, d: dict[str, object], has_ca: bool) -> ssl.VerifyMode | None:
    path = "tls_server_config.client_auth_type"
    name = problems.choice(path, d.get("client_auth_type", "NoClientCert"), tuple(_MODES))
    if name in _NEEDS_CA and not has_ca and "client_ca_file" not in d and "client_ca" not in d:
        problems.fail("tls_server_config.client_ca_file", f"required by client_auth_type {name}")
    if name == "NoClientCert" and ("client_ca_file" in d or "client_ca" in d):
        problems.fail(path, "a client CA is set but client_auth_type is NoClientCert; "
                            "set RequireAndVerifyClientCert to check client certificates")
    return None if name is None else _MODES[name]


def _load_identity(problems: _Problems, context: ssl.SSLContext,
                   pem: dict[str, bytes | None], d: dict[str, object]) -> None:
    """Load the server's cert and key, and the client CA, into ``context``."""
    pair, ca = load_identity(context, pem["cert"], pem["key"], pem["client_ca"])
    if pair is not None:
        problems.fail("tls_server_config", pair)
    if ca is not None:
        name = "client_ca_file" if "client_ca_file" in d else "client_ca"
        problems.fail(f"tls_server_config.{name}", ca)


def _headers(problems: _Problems, raw: object) -> tuple[tuple[str, str], ...]:
    d = problems.section("http_server_config", raw, ("http2", "headers"))
    problems.flag("http_server_config.http2", d.get("http2"))  # accepted; we serve HTTP/1.1
    headers = problems.section("http_server_config.headers", d.get("headers"), tuple(_HEADERS))
    pairs = []
    for name, value in headers.items():
        path = f"http_server_config.headers.{name}"
        allowed = _HEADERS[name]
        chosen = problems.choice(path, value, allowed) if allowed else problems.string(path, value)
        if chosen is not None:
            pairs.append((name, chosen))
    return tuple(pairs)


def _users(problems: _Problems, raw: object) -> tuple[tuple[str, str], ...]:
    if raw is not None and not isinstance(raw, dict):
        problems.fail("basic_auth_users", f"expected a mapping, got {type(raw).__name__}")
        return ()
    users = []
    for name, stored in (raw or {}).items():
        path = f"basic_auth_users.{name}"
        if not isinstance(name, str) or not name or ":" in name:
            problems.fail(path, "a user name must be a non-empty string without ':'")
        elif not isinstance(stored, str) or not _BCRYPT.fullmatch(stored):
            # Never echo the value: it is a password hash, or worse, a plain password.
            problems.fail(path, f"not a bcrypt hash; make one with: {_HTPASSWD}")
        else:
            users.append((name, stored))
    return tuple(users)

"""Validates the web config's ``tls_server_config`` section into a server-side SSLContext."""

from __future__ import annotations

import ssl
from pathlib import Path

from exporter.config.reader import Reader
from exporter.core.smallfile import check_regular
from exporter.web.security import TLS_VERSIONS, Pem, load_identity, tls_context

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
_TLS = ("cert", "key", "client_ca", "cert_file", "key_file", "client_ca_file", "client_auth_type",
        "min_version", "max_version", "cipher_suites", "prefer_server_cipher_suites",
        "curve_preferences")


def parse_tls(reader: Reader, raw: object, base: Path) -> ssl.SSLContext | None:
    """The TLS context ``raw`` describes (paths relative to ``base``); None for plain HTTP."""
    d = reader.section("tls_server_config", raw, _TLS)
    if not d:
        return None  # absent or empty: plain HTTP, as in the toolkit
    before = len(reader.problems)
    pem = {name: _pem(reader, d, name, base) for name in ("cert", "key", "client_ca")}
    mode = _client_auth(reader, d, has_ca=pem["client_ca"] is not None)
    versions = _versions(reader, d)
    ciphers = _ciphers(reader, d)
    if len(reader.problems) > before or mode is None or versions is None:
        return None
    prefer = d.get("prefer_server_cipher_suites") is not False  # the toolkit's default is true
    context = tls_context(versions, ciphers, prefer)
    _load_identity(reader, context, pem, d)
    context.verify_mode = mode
    return None if len(reader.problems) > before else context


def _versions(reader: Reader, d: dict[str, object]) -> tuple[str, str] | None:
    low, high = (reader.choice(f"tls_server_config.{k}", d.get(k, default), tuple(TLS_VERSIONS))
                 for k, default in (("min_version", "TLS12"), ("max_version", "TLS13")))
    if low is None or high is None:
        return None
    if TLS_VERSIONS[low] > TLS_VERSIONS[high]:
        reader.fail("tls_server_config", f"min_version {low} is above max_version {high}")
        return None
    return low, high


def _ciphers(reader: Reader, d: dict[str, object]) -> list[str]:
    """OpenSSL names of the configured TLS <= 1.2 suites; curves and the flag are only checked."""
    path = "tls_server_config"
    suites = reader.choices(f"{path}.cipher_suites", d.get("cipher_suites", []),
                              (*_SUITES, *_TLS13_SUITES))
    reader.choices(f"{path}.curve_preferences", d.get("curve_preferences", []), _CURVES)
    reader.flag(f"{path}.prefer_server_cipher_suites", d.get("prefer_server_cipher_suites"))
    return [_SUITES[suite] for suite in suites if suite in _SUITES]


def _pem(reader: Reader, d: dict[str, object], name: str, base: Path) -> Pem | None:
    """Inline PEM bytes from ``name``, or the path of ``name_file``; at most one may be set.

    A file is handed to OpenSSL by its path, never copied: the root filesystem may be read-only.
    """
    section, file_key = "tls_server_config", f"{name}_file"
    if name in d and file_key in d:
        reader.fail(section, f"{name} and {file_key} are mutually exclusive")
        return None
    if name in d:
        text = reader.string(f"{section}.{name}", d[name], secret=name == "key")
        return None if text is None else text.encode()
    filename = reader.string(f"{section}.{file_key}", d.get(file_key))
    if filename is None:
        if name != "client_ca" and d.get(file_key) is None:  # a wrong type was told already
            reader.fail(section, f"missing one of {name} or {file_key}")
        return None
    full = base / filename
    problem = _unreadable(full)
    if problem is None:
        return full
    reader.fail(f"{section}.{file_key}", f"file not readable: {full} ({problem})")
    return None


def _unreadable(path: Path) -> str | None:
    """Why OpenSSL could not read ``path`` as a file, or None; never blocks (a FIFO would)."""
    try:
        check_regular(path)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def _client_auth(reader: Reader, d: dict[str, object], has_ca: bool) -> ssl.VerifyMode | None:
    path = "tls_server_config.client_auth_type"
    name = reader.choice(path, d.get("client_auth_type", "NoClientCert"), tuple(_MODES))
    if name in _NEEDS_CA and not has_ca and "client_ca_file" not in d and "client_ca" not in d:
        reader.fail("tls_server_config.client_ca_file", f"required by client_auth_type {name}")
    if name == "NoClientCert" and ("client_ca_file" in d or "client_ca" in d):
        reader.fail(path, "a client CA is set but client_auth_type is NoClientCert; "
                            "set RequireAndVerifyClientCert to check client certificates")
    return None if name is None else _MODES[name]


def _load_identity(reader: Reader, context: ssl.SSLContext,
                   pem: dict[str, Pem | None], d: dict[str, object]) -> None:
    """Load the server's cert and key, and the client CA, into ``context``."""
    pair, ca = load_identity(context, pem["cert"], pem["key"], pem["client_ca"])
    if pair is not None:
        reader.fail("tls_server_config", pair)
    if ca is not None:
        name = "client_ca_file" if "client_ca_file" in d else "client_ca"
        reader.fail(f"tls_server_config.{name}", ca)

"""web-config.yml: real TLS clients over loopback, basic auth, bad configs with exact messages."""

from __future__ import annotations

import base64
import dataclasses
import http.client
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from pathlib import Path

import bcrypt
import pytest
from cryptography.hazmat.primitives import serialization

from exporter.config import ConfigError
from exporter.config.reader import Reader
from exporter.core.clock import FakeClock
from exporter.web.config import REALM, WebConfig, check_web_config, load_web_config
from exporter.web.httpfront import HttpFront, Limits
from exporter.web.httpwire import Request, Response
from exporter.web.security import CACHE_SECONDS, BasicAuth, load_identity, tls_context
from exporter.web.tls import parse_tls
from tests.certs import Pki, make_pki

HASH = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()  # low cost: fast tests


class _Server:
    """The exporter's own HTTP front, guarded by ``web``, answering ``ok`` on ``/``."""

    def __init__(self, web: WebConfig) -> None:
        self.front = HttpFront(socket.create_server(("127.0.0.1", 0)), self._answer,
                               web.ssl_context, Limits(header_timeout=5), "test")
        self.web = web

    @property
    def port(self) -> int:
        return self.front.port

    async def _answer(self, request: Request) -> Response:
        if not self.web.auth_required or self.web.authenticate(request.header("authorization")):
            return Response(HTTPStatus.OK, b"ok\n", headers=self.web.headers)
        return Response(HTTPStatus.UNAUTHORIZED, b"no\n", headers=(
            *self.web.headers, ("WWW-Authenticate", f'Basic realm="{REALM}"')))


@contextmanager
def serving(web: WebConfig) -> Iterator[_Server]:
    server = _Server(web)
    server.front.start()
    try:
        yield server
    finally:
        server.front.close()


def get(server: _Server, context: ssl.SSLContext | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, http.client.HTTPResponse, str]:
    """Status, response and negotiated TLS version ("" for plain HTTP) of ``GET /``."""
    port = server.port
    conn = (http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
            if context else http.client.HTTPConnection("127.0.0.1", port, timeout=5))
    try:
        conn.request("GET", "/", headers=headers or {})
        version = conn.sock.version() if isinstance(conn.sock, ssl.SSLSocket) else ""
        response = conn.getresponse()
        response.read()
        return response.status, response, version or ""
    finally:
        conn.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def client(pki: Pki, cert: Path | None = None, key: Path | None = None,
           maximum: ssl.TLSVersion | None = None,
           minimum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if cert and key:
        context.load_cert_chain(cert, key)
    if maximum:
        context.maximum_version = maximum
    if minimum:
        context.minimum_version = minimum
    return context


def web(tmp_path: Path, pki: Pki, extra: str = "", users: str = "") -> WebConfig:
    path = tmp_path / "web.yml"
    path.write_text(f"tls_server_config:\n  cert_file: {pki.server_cert}\n"
                    f"  key_file: {pki.server_key}\n{extra}{users}")
    return load_web_config(str(path))


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


# --- TLS over loopback ---


def test_tls_defaults_serve_tls13(tmp_path: Path, pki: Pki) -> None:
    with serving(web(tmp_path, pki)) as server:
        status, _, version = get(server, client(pki))
    assert (status, version) == (200, "TLSv1.3")


def test_min_version_refuses_an_older_client(tmp_path: Path, pki: Pki) -> None:
    with serving(web(tmp_path, pki, "  min_version: TLS13\n")) as server:
        with pytest.raises(ssl.SSLError):
            get(server, client(pki, maximum=ssl.TLSVersion.TLSv1_2))
        assert get(server, client(pki))[0] == 200


def test_max_version_caps_the_handshake(tmp_path: Path, pki: Pki) -> None:
    with serving(web(tmp_path, pki, "  max_version: TLS12\n")) as server:
        assert get(server, client(pki))[2] == "TLSv1.2"
        with pytest.raises(ssl.SSLError):
            get(server, client(pki, minimum=ssl.TLSVersion.TLSv1_3))


@pytest.mark.parametrize(("suite", "openssl_name"), [
    # Neither is OpenSSL's first choice, so only an honoured list makes them win.
    ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256"),
    ("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305"),
])
def test_cipher_suites_are_honoured_for_tls12(tmp_path: Path, pki: Pki, suite: str,
                                              openssl_name: str) -> None:
    extra = f"  max_version: TLS12\n  cipher_suites: [{suite}]\n"
    # A raw TLS socket, since http.client gives no access to the cipher after the request.
    with serving(web(tmp_path, pki, extra)) as server, socket.create_connection(
            ("127.0.0.1", server.port), timeout=5) as raw, client(pki).wrap_socket(
            raw, server_hostname="127.0.0.1") as tls:
        cipher = tls.cipher()
    assert cipher is not None
    assert cipher[0] == openssl_name


def test_context_follows_the_settings(tmp_path: Path, pki: Pki) -> None:
    default = web(tmp_path, pki).ssl_context()
    assert default is not None
    assert (default.minimum_version, default.maximum_version) == (ssl.TLSVersion.TLSv1_2,
                                                                  ssl.TLSVersion.TLSv1_3)
    assert default.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    custom = web(tmp_path, pki, "  min_version: TLS10\n  prefer_server_cipher_suites: false\n"
                 "  client_auth_type: RequestClientCert\n").ssl_context()
    assert custom is not None
    assert custom.minimum_version == ssl.TLSVersion.TLSv1
    assert not custom.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    assert custom.verify_mode == ssl.CERT_NONE  # see the module docstring


MTLS = "  client_auth_type: {mode}\n  client_ca_file: {ca}\n"


def test_require_and_verify_client_cert(tmp_path: Path, pki: Pki) -> None:
    extra = MTLS.format(mode="RequireAndVerifyClientCert", ca=pki.ca)
    with serving(web(tmp_path, pki, extra)) as server:
        assert get(server, client(pki, pki.client_cert, pki.client_key))[0] == 200
        with pytest.raises((ssl.SSLError, ConnectionError)):
            get(server, client(pki))
        with pytest.raises((ssl.SSLError, ConnectionError)):
            get(server, client(pki, pki.stranger_cert, pki.stranger_key))


def test_verify_client_cert_if_given(tmp_path: Path, pki: Pki) -> None:
    extra = MTLS.format(mode="VerifyClientCertIfGiven", ca=pki.ca)
    with serving(web(tmp_path, pki, extra)) as server:
        assert get(server, client(pki))[0] == 200
        assert get(server, client(pki, pki.client_cert, pki.client_key))[0] == 200
        with pytest.raises((ssl.SSLError, ConnectionError)):
            get(server, client(pki, pki.stranger_cert, pki.stranger_key))


def test_plain_http_to_tls_port_fails_fast_and_server_keeps_serving(tmp_path: Path,
                                                                      pki: Pki) -> None:
    with serving(web(tmp_path, pki)) as server:
        # A hang would surface as TimeoutError, which is neither of these.
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            get(server)
        assert get(server, client(pki))[0] == 200


def test_silent_client_does_not_block_the_accept_loop(tmp_path: Path, pki: Pki) -> None:
    with serving(web(tmp_path, pki)) as server, socket.create_connection(
            ("127.0.0.1", server.port), timeout=5):
        # Connected and sending nothing: a handshake in accept() would stall this request.
        assert get(server, client(pki))[0] == 200


def test_inline_cert_key_and_client_ca(tmp_path: Path, pki: Pki) -> None:
    def block(path: Path) -> str:
        return "|\n" + "".join(f"    {line}\n" for line in path.read_text().splitlines())

    (tmp_path / "web.yml").write_text(
        f"tls_server_config:\n  cert: {block(pki.server_cert)}  key: {block(pki.server_key)}"
        f"  client_ca: {block(pki.ca)}  client_auth_type: RequireAndVerifyClientCert\n")
    with serving(load_web_config(str(tmp_path / "web.yml"))) as server:
        assert get(server, client(pki, pki.client_cert, pki.client_key))[0] == 200
        with pytest.raises((ssl.SSLError, ConnectionError)):
            get(server, client(pki))


def test_relative_paths_are_read_from_the_config_directory(pki: Pki) -> None:
    path = pki.ca.parent / "relative.yml"
    path.write_text("tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n")
    with serving(load_web_config(str(path))) as server:
        assert get(server, client(pki))[0] == 200


# --- basic auth ---


def auth_web(tmp_path: Path, extra: str = "") -> WebConfig:
    path = tmp_path / "web.yml"
    path.write_text(f"basic_auth_users:\n  alice: '{HASH}'\n{extra}")
    return load_web_config(str(path))


@pytest.mark.parametrize(("headers", "status"), [
    (basic("alice", "s3cret"), 200),
    (basic("mallory", "s3cret"), 401),
    (basic("alice", "wrong"), 401),
    ({}, 401),
    ({"Authorization": "Basic not-base64!"}, 401),
    ({"Authorization": "Bearer s3cret"}, 401),
])
def test_basic_auth(tmp_path: Path, headers: dict[str, str], status: int) -> None:
    with serving(auth_web(tmp_path)) as server:
        got, response, _ = get(server, headers=headers)
    assert got == status
    if status == 401:
        assert response.getheader("WWW-Authenticate") == f'Basic realm="{REALM}"'


def test_basic_auth_over_tls(tmp_path: Path, pki: Pki) -> None:
    loaded = web(tmp_path, pki, users=f"basic_auth_users:\n  alice: '{HASH}'\n")
    with serving(loaded) as server:
        assert get(server, client(pki), basic("alice", "s3cret"))[0] == 200
        assert get(server, client(pki), basic("alice", "nope"))[0] == 401


def test_401_carries_the_configured_headers(tmp_path: Path) -> None:
    loaded = auth_web(tmp_path, "http_server_config:\n  headers:\n    X-Frame-Options: deny\n")
    assert loaded.headers == (("X-Frame-Options", "deny"),)
    with serving(loaded) as server:
        _, response, _ = get(server)
    assert response.getheader("X-Frame-Options") == "deny"


class CountingChecker:
    """bcrypt.checkpw that records which hashes it was asked about."""

    def __init__(self) -> None:
        self.hashes: list[bytes] = []

    def __call__(self, password: bytes, stored: bytes) -> bool:
        self.hashes.append(stored)
        return bcrypt.checkpw(password, stored)


def counted(tmp_path: Path) -> tuple[WebConfig, CountingChecker]:
    checker = CountingChecker()
    return dataclasses.replace(auth_web(tmp_path), checker=checker), checker


def test_unknown_user_still_runs_bcrypt_at_the_same_cost(tmp_path: Path) -> None:
    loaded, checker = counted(tmp_path)
    assert not loaded.authenticate(basic("mallory", "s3cret")["Authorization"])
    assert not loaded.authenticate(basic("alice", "x" * 100)["Authorization"])  # too long
    assert len(checker.hashes) == 2
    assert all(h != HASH.encode() and h[:7] == HASH.encode()[:7] for h in checker.hashes)


@pytest.mark.parametrize("scheme", ["Basic", "basic", "BASIC", "bAsIc"])
def test_the_basic_scheme_is_case_insensitive(tmp_path: Path, scheme: str) -> None:
    token = base64.b64encode(b"alice:s3cret").decode()
    assert auth_web(tmp_path).authenticate(f"{scheme} {token}")  # RFC 7235: case-insensitive


def test_a_72_byte_password_is_checked_and_a_73_byte_one_refused() -> None:
    # bcrypt reads 72 bytes; a longer password is refused outright (its tail would be ignored).
    password = "p" * 71 + "é"  # 73 bytes in UTF-8: one character too many
    at_limit = "p" * 72
    users = (("u", bcrypt.hashpw(at_limit.encode(), bcrypt.gensalt(rounds=4)).decode()),
             ("v", bcrypt.hashpw(password.encode()[:72], bcrypt.gensalt(rounds=4)).decode()))
    loaded = WebConfig(users=users)
    assert loaded.authenticate(basic("u", at_limit)["Authorization"])
    assert not loaded.authenticate(basic("v", password)["Authorization"])


def test_successes_are_cached_and_failures_are_not(tmp_path: Path) -> None:
    loaded, checker = counted(tmp_path)
    for _ in range(3):
        assert loaded.authenticate(basic("alice", "s3cret")["Authorization"])
        assert not loaded.authenticate(basic("alice", "wrong")["Authorization"])
    assert checker.hashes == [HASH.encode()] * 4  # one success, three failures


def test_cache_is_bounded() -> None:
    calls: list[bytes] = []

    def accept_all(password: bytes, _stored: bytes) -> bool:
        calls.append(password)
        return True

    loaded = WebConfig(users=(("u", HASH),), checker=accept_all)
    for i in range(101):
        assert loaded.authenticate(basic("u", f"p{i}")["Authorization"])
    assert loaded.authenticate(basic("u", "p100")["Authorization"])  # still cached
    assert len(calls) == 101
    assert loaded.authenticate(basic("u", "p0")["Authorization"])  # evicted: checked again
    assert len(calls) == 102


def test_nothing_secret_in_repr(tmp_path: Path) -> None:
    loaded = auth_web(tmp_path)
    loaded.authenticate(basic("alice", "s3cret")["Authorization"])
    assert HASH not in repr(loaded)
    assert "s3cret" not in repr(loaded)


def test_no_web_config_content_means_no_tls_and_no_auth(tmp_path: Path) -> None:
    (tmp_path / "web.yml").write_text("")
    loaded = load_web_config(str(tmp_path / "web.yml"))
    assert (loaded.ssl_context(), loaded.auth_required) == (None, False)


# --- bad configs ---

TLS_KEYS = ("cert, key, client_ca, cert_file, key_file, client_ca_file, client_auth_type, "
            "min_version, max_version, cipher_suites, prefer_server_cipher_suites, "
            "curve_preferences")
REQUIRE_ANY = ("not supported: Python's ssl cannot accept a client certificate without verifying"
               " it; use RequireAndVerifyClientCert with client_ca_file")
BAD = [
    ("unknown top-level key", "foo: 1\n",
     ["foo: unknown key (expected one of: tls_server_config, http_server_config, "
      "basic_auth_users)"]),
    ("unknown tls key", "tls_server_config:\n  {tls}  certfile: x\n",
     [f"tls_server_config.certfile: unknown key (expected one of: {TLS_KEYS})"]),
    ("missing files", "tls_server_config:\n  cert_file: no.pem\n  key_file: no.key\n",
     ["tls_server_config.cert_file: file not readable: {dir}/no.pem (No such file or directory)",
      "tls_server_config.key_file: file not readable: {dir}/no.key (No such file or directory)"]),
    ("missing key", "tls_server_config:\n  cert_file: {cert}\n",
     ["tls_server_config: missing one of key or key_file"]),
    ("cert twice", "tls_server_config:\n  {tls}  cert: x\n",
     ["tls_server_config: cert and cert_file are mutually exclusive"]),
    ("bad client_auth_type", "tls_server_config:\n  {tls}  client_auth_type: Always\n",
     ["tls_server_config.client_auth_type: must be one of NoClientCert, RequestClientCert, "
      "VerifyClientCertIfGiven, RequireAndVerifyClientCert; got 'Always'"]),
    ("RequireAnyClientCert",
     "tls_server_config:\n  {tls}  client_auth_type: RequireAnyClientCert\n",
     [f"tls_server_config.client_auth_type: {REQUIRE_ANY}"]),
    ("verify without a CA",
     "tls_server_config:\n  {tls}  client_auth_type: RequireAndVerifyClientCert\n",
     ["tls_server_config.client_ca_file: required by client_auth_type RequireAndVerifyClientCert"]),
    ("CA without client auth", "tls_server_config:\n  {tls}  client_ca_file: {ca}\n",
     ["tls_server_config.client_auth_type: a client CA is set but client_auth_type is "
      "NoClientCert; set RequireAndVerifyClientCert to check client certificates"]),
    ("bad min_version", "tls_server_config:\n  {tls}  min_version: TLS14\n",
     ["tls_server_config.min_version: must be one of TLS10, TLS11, TLS12, TLS13; got 'TLS14'"]),
    ("min above max", "tls_server_config:\n  {tls}  min_version: TLS13\n  max_version: TLS12\n",
     ["tls_server_config: min_version TLS13 is above max_version TLS12"]),
    ("unknown cipher and curve",
     "tls_server_config:\n  {tls}  cipher_suites: [RC4]\n  curve_preferences: [X448]\n",
     ["tls_server_config.cipher_suites[0]: must be one of "
      + ", ".join([f"TLS_{kx}_WITH_{c}" for kx in ("RSA", "ECDHE_RSA", "ECDHE_ECDSA")
                   for c in ("AES_128_CBC_SHA", "AES_256_CBC_SHA", "AES_128_GCM_SHA256",
                             "AES_256_GCM_SHA384", "CHACHA20_POLY1305_SHA256")
                   if not (kx == "RSA" and c.startswith("CHACHA"))]
                  + ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                     "TLS_CHACHA20_POLY1305_SHA256"]) + "; got 'RC4'",
      "tls_server_config.curve_preferences[0]: must be one of CurveP256, CurveP384, CurveP521, "
      "X25519; got 'X448'"]),
    ("non-bcrypt hash", "basic_auth_users:\n  alice: '$1$md5crypt$hunter2'\n",
     ["basic_auth_users.alice: not a bcrypt hash; make one with: htpasswd -nBC 10 \"\" | "
      "tr -d ':\\n'"]),
    ("bcrypt cost above the cap", "basic_auth_users:\n  alice: '$2b$15$" + "a" * 53 + "'\n",
     ["basic_auth_users.alice: bcrypt cost 15 is above 14, which would let wrong passwords tie "
      "up the CPU; rehash with: htpasswd -nBC 10 \"\" | tr -d ':\\n'"]),
    ("a FIFO as the cert", "tls_server_config:\n  cert_file: {dir}/fifo\n  key_file: {key}\n",
     ["tls_server_config.cert_file: file not readable: {dir}/fifo (not a regular file (a FIFO))"]),
    ("bad header", "http_server_config:\n  headers:\n    X-Frame-Options: allow\n    Server: x\n",
     ["http_server_config.headers.Server: unknown key (expected one of: "
      "Strict-Transport-Security, X-Content-Type-Options, X-Frame-Options, X-XSS-Protection, "
      "Content-Security-Policy)",
      "http_server_config.headers.X-Frame-Options: must be one of deny, sameorigin; "
      "got 'allow'"]),
    ("rate_limit", "rate_limit:\n  interval: 1s\n",
     ["rate_limit: not supported by uminfer-exporter; rate-limit in a reverse proxy"]),
    ("user name with a colon", "basic_auth_users:\n  'al:ice': '$2b$04$" + "a" * 53 + "'\n",
     ["basic_auth_users.al:ice: a user name must be a non-empty string without ':'"]),
    ("prefer flag not a boolean",
     "tls_server_config:\n  {tls}  prefer_server_cipher_suites: 'yes'\n",
     ["tls_server_config.prefer_server_cipher_suites: expected true or false, got \"yes\" (str)"]),
    ("verify with an unreadable CA file",  # told once: the CA is set, only not readable
     "tls_server_config:\n  {tls}  client_auth_type: RequireAndVerifyClientCert\n"
     "  client_ca_file: no-ca.pem\n",
     ["tls_server_config.client_ca_file: file not readable: {dir}/no-ca.pem (No such file or "
      "directory)"]),
    ("verify with an inline CA of the wrong type",
     "tls_server_config:\n  {tls}  client_auth_type: VerifyClientCertIfGiven\n  client_ca: 5\n",
     ["tls_server_config.client_ca: expected a string, got 5 (int)"]),
    ("inline CA without client auth", "tls_server_config:\n  {tls}  client_ca: x\n",
     ["tls_server_config.client_auth_type: a client CA is set but client_auth_type is "
      "NoClientCert; set RequireAndVerifyClientCert to check client certificates"]),
    ("inline cert and key of the wrong type", "tls_server_config:\n  cert: 5\n  key: 6789\n",
     ["tls_server_config.cert: expected a string, got 5 (int)",
      "tls_server_config.key: expected a string, got int"]),  # a key's value is never shown
    ("file names of the wrong type", "tls_server_config:\n  cert_file: 5\n  key_file: [a]\n",
     ["tls_server_config.cert_file: expected a string, got 5 (int)",
      "tls_server_config.key_file: expected a string, got ['a'] (list)"]),
    ("file names left empty", "tls_server_config:\n  cert_file:\n  key_file: {key}\n",
     ["tls_server_config: missing one of cert or cert_file"]),
    ("unknown http key and a bad http2 flag", "http_server_config:\n  foo: 1\n  http2: 'yes'\n",
     ["http_server_config.foo: unknown key (expected one of: http2, headers)",
      "http_server_config.http2: expected true or false, got \"yes\" (str)"]),
    ("http_server_config not a mapping", "http_server_config: 5\n",
     ["http_server_config: expected a mapping, got 5 (int)"]),
    ("free-form header not a string",
     "http_server_config:\n  headers:\n    Strict-Transport-Security: 5\n",
     ["http_server_config.headers.Strict-Transport-Security: expected a string, got 5 (int)"]),
    ("users not a mapping", "basic_auth_users: [a]\n",
     ["basic_auth_users: expected a mapping, got list"]),
    ("empty and numeric user names",
     "basic_auth_users:\n  '': '$2b$04$" + "a" * 53 + "'\n  5: '$2b$04$" + "a" * 53 + "'\n",
     ["basic_auth_users.: a user name must be a non-empty string without ':'",
      "basic_auth_users.5: a user name must be a non-empty string without ':'"]),
    ("a control character", "a: \x07\n",  # PyYAML's ReaderError: no position, no problem
     ["{path}: invalid YAML: syntax error"]),
    ("invalid YAML", "tls_server_config: [\n",
     ["{path}:2:1: invalid YAML: expected the node content, but found '<stream end>'"]),
]


@pytest.mark.parametrize(("text", "expected"), [pytest.param(t, e, id=i) for i, t, e in BAD])
def test_bad_configs(tmp_path: Path, pki: Pki, text: str, expected: list[str]) -> None:
    path = tmp_path / "web.yml"
    fields = {"tls": f"cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n",
              "cert": pki.server_cert, "key": pki.server_key, "ca": pki.ca, "dir": tmp_path,
              "path": path}
    os.mkfifo(tmp_path / "fifo")  # opened by nothing but the FIFO case, which must not hang
    path.write_text(text.format(**fields))
    with pytest.raises(ConfigError) as caught:
        load_web_config(str(path))
    assert caught.value.problems == [line.format(**fields) for line in expected]
    assert check_web_config(str(path)) == caught.value.problems


def test_every_problem_at_once_and_no_secret_echoed(tmp_path: Path, pki: Pki) -> None:
    path = tmp_path / "web.yml"
    path.write_text(f"tls_server_config:\n  cert_file: {pki.server_cert}\n"
                    f"  key_file: {pki.client_key}\n  min_version: TLS9\n"
                    "basic_auth_users:\n  bob: plaintext-password\n")
    problems = check_web_config(str(path))
    assert [p.split(":")[0] for p in problems] == [
        "tls_server_config.min_version", "basic_auth_users.bob"]
    assert not any("plaintext-password" in p for p in problems)
    # The mismatched pair is only found once the TLS section is valid enough to build a context.
    path.write_text(path.read_text().replace("TLS9", "TLS12").split("basic_auth_users")[0])
    (problem,) = check_web_config(str(path))
    assert problem.startswith("tls_server_config: cert and key are not a matching, unencrypted")
    assert "KEY_VALUES_MISMATCH" in problem


def test_missing_web_config_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yml"
    assert check_web_config(str(path)) == [f"{path}: file not readable (No such file or directory)"]


def test_wrong_passwords_are_checked_in_parallel_not_one_at_a_time() -> None:
    """No global lock: two slow checks at once take the time of one."""
    def slow(_password: bytes, _stored: bytes) -> bool:
        time.sleep(0.5)
        return False

    loaded = WebConfig(users=(("u", HASH),), checker=slow)
    threads = [threading.Thread(target=loaded.authenticate, args=(basic("u", f"w{i}")[
        "Authorization"],)) for i in range(2)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert time.monotonic() - began < 0.9


def test_a_success_is_remembered_for_a_while_only() -> None:
    clock = FakeClock()
    calls: list[bytes] = []

    def accept(password: bytes, _stored: bytes) -> bool:
        calls.append(password)
        return True

    loaded = WebConfig(users=(("u", HASH),), checker=accept, clock=clock)
    header = basic("u", "p")["Authorization"]
    assert not loaded.recently_authenticated(header)
    assert loaded.authenticate(header)
    clock.advance(CACHE_SECONDS - 1)
    assert loaded.recently_authenticated(header)
    assert loaded.authenticate(header)
    assert len(calls) == 1
    clock.advance(CACHE_SECONDS + 1)  # unused for longer than CACHE_SECONDS
    assert not loaded.recently_authenticated(header)
    assert loaded.authenticate(header)
    assert len(calls) == 2


READ_ONLY_ROOT = """
import sys, tempfile
tempfile.tempdir = "/nonexistent/read-only-root"  # any temporary file would now fail
from exporter.web.config import load_web_config
web = load_web_config(sys.argv[1])
assert web.ssl_context() is not None
print("loaded")
"""


@pytest.mark.e2e
@pytest.mark.parametrize("inline", [False, True], ids=["files", "inline"])
def test_tls_loads_without_writing_a_temporary_file(tmp_path: Path, pki: Pki,
                                                    inline: bool) -> None:
    """A read-only root filesystem (the shipped manifests) is enough to start TLS."""
    def block(path: Path) -> str:
        return "|\n" + "".join(f"    {line}\n" for line in path.read_text().splitlines())

    text = (f"tls_server_config:\n  cert: {block(pki.server_cert)}  key: {block(pki.server_key)}"
            if inline else
            f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n")
    (tmp_path / "web.yml").write_text(text)
    done = subprocess.run([sys.executable, "-c", READ_ONLY_ROOT, str(tmp_path / "web.yml")],
                          capture_output=True, text=True, timeout=30, check=False)
    assert (done.returncode, done.stdout) == (0, "loaded\n"), done.stderr


# --- BasicAuth and the TLS context, unit by unit ---


class Recording:
    """A bcrypt checker that records what it was asked and answers as told."""

    def __init__(self, answer: bool | None = True) -> None:
        self.answer = answer  # None: raise ValueError, as bcrypt does for a malformed hash
        self.asked: list[tuple[bytes, bytes]] = []

    def __call__(self, password: bytes, stored: bytes) -> bool:
        self.asked.append((password, stored))
        if self.answer is None:
            raise ValueError("Invalid salt")
        return self.answer


def header(raw: bytes, scheme: str = "Basic") -> str:
    return f"{scheme} {base64.b64encode(raw).decode()}"


def test_the_cache_holds_exactly_100_successes_until_they_expire() -> None:
    now = [0.0]
    checker = Recording()
    auth = BasicAuth((("u", HASH),), checker, lambda: now[0])
    for i in range(100):
        assert auth.check(header(b"u:p%d" % i))
    assert auth.recent(header(b"u:p0"))  # 100 held: the first is still there
    now[0] = CACHE_SECONDS - 0.001
    assert auth.recent(header(b"u:p1"))  # and refreshed by this use
    now[0] = CACHE_SECONDS
    assert not auth.recent(header(b"u:p2"))  # unused: expired at CACHE_SECONDS exactly
    now[0] = 2 * CACHE_SECONDS - 0.002
    assert auth.recent(header(b"u:p1"))  # a scraper that keeps coming never needs bcrypt
    now[0] = 3 * CACHE_SECONDS
    assert not auth.recent(header(b"u:p1"))  # expired CACHE_SECONDS after its last use
    assert not auth.recent(None) and not auth.recent("Bearer x")


def test_credentials_are_split_at_the_first_colon_and_need_one() -> None:
    checker = Recording()
    auth = BasicAuth((("u", HASH),), checker, lambda: 0.0)
    assert auth.check(header(b"u:pa:ss"))
    assert checker.asked == [(b"pa:ss", HASH.encode())]
    assert not auth.check(header(b"u"))  # no colon: no credentials, no bcrypt run
    assert auth.check("Basic  " + base64.b64encode(b"u:x").decode())  # extra blanks are fine
    token = base64.b64encode(b"u:secret").decode()
    assert not auth.check(f"Basic {token[:4]}!{token[4:]}")  # not strictly base64
    assert len(checker.asked) == 2


def test_a_malformed_stored_hash_fails_closed() -> None:
    auth = BasicAuth((("u", HASH),), Recording(answer=None), lambda: 0.0)
    assert not auth.check(header(b"u:p"))


@pytest.mark.parametrize(("users", "dummy_cost"), [
    ((), b"$2b$10$"),  # without users the dummy costs bcrypt's usual 10
    ((("a", "$2b$04$" + "a" * 53), ("b", "$2b$12$" + "b" * 53)), b"$2b$12$"),
])
def test_unknown_users_cost_the_dearest_configured_hash(users: tuple[tuple[str, str], ...],
                                                       dummy_cost: bytes) -> None:
    checker = Recording(answer=False)
    assert not BasicAuth(users, checker, lambda: 0.0).check(header(b"nobody:p"))
    [(password, dummy)] = checker.asked
    assert (password, dummy[:7], len(dummy)) == (b"p", dummy_cost, 60)


def test_the_tls_context_keeps_its_defaults_and_takes_every_cipher() -> None:
    context = tls_context(("TLS12", "TLS13"), ["ECDHE-RSA-AES128-GCM-SHA256",
                                               "ECDHE-RSA-AES256-GCM-SHA384"], True)
    assert context.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    assert context.options & ssl.OP_NO_COMPRESSION  # a default, not replaced
    tls12 = {c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert tls12 == {"ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384"}
    assert not tls_context(("TLS12", "TLS13"), [], False).options & (
        ssl.OP_CIPHER_SERVER_PREFERENCE)


def test_a_client_ca_that_is_not_pem_is_a_problem_not_a_crash(pki: Pki) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    pair, ca = load_identity(context, pki.server_cert, pki.server_key, b"\xff\xfe not a PEM")
    assert pair is None
    assert ca is not None and ca.startswith("no usable PEM certificate (")


@pytest.mark.parametrize("inline", [False, True])
def test_an_encrypted_key_is_refused_without_a_prompt(tmp_path: Path, pki: Pki,
                                                      inline: bool) -> None:
    """OpenSSL would ask on the terminal for the passphrase (a service has none): refused."""
    key = serialization.load_pem_private_key(pki.server_key.read_bytes(), None)
    encrypted = key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.BestAvailableEncryption(b"passphrase"))
    (tmp_path / "locked.key").write_bytes(encrypted)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    pair, ca = load_identity(context, pki.server_cert,
                             encrypted if inline else tmp_path / "locked.key", None)
    assert (pair, ca) == ("cert and key are not a matching, unencrypted PEM pair (the key is "
                          "encrypted)", None)


@pytest.mark.parametrize(("ca", "name"), [("client_ca_file: {key}", "client_ca_file"),
                                          ("client_ca: not a certificate", "client_ca")])
def test_a_client_ca_without_a_certificate_is_named_by_its_key(tmp_path: Path, pki: Pki,
                                                               ca: str, name: str) -> None:
    path = tmp_path / "web.yml"
    path.write_text(f"tls_server_config:\n  cert_file: {pki.server_cert}\n"
                    f"  key_file: {pki.server_key}\n"
                    "  client_auth_type: RequireAndVerifyClientCert\n"
                    f"  {ca.format(key=pki.server_key)}\n")
    (problem,) = check_web_config(str(path))
    assert problem.startswith(f"tls_server_config.{name}: no usable PEM certificate (")


def test_parse_tls_gives_no_context_when_the_pair_fails_to_load(tmp_path: Path,
                                                                 pki: Pki) -> None:
    reader = Reader()
    section = {"cert_file": str(pki.server_cert), "key_file": str(pki.client_key)}
    assert parse_tls(reader, section, tmp_path) is None
    (problem,) = reader.problems
    assert problem.startswith("tls_server_config: cert and key are not a matching, unencrypted")
    reader = Reader()
    section["key_file"] = str(pki.server_key)
    assert isinstance(parse_tls(reader, section, tmp_path), ssl.SSLContext)
    assert reader.problems == []


def test_a_web_config_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_bytes(b"basic_auth_users:\n  \xff\xfe: x\n")
    assert check_web_config(str(path)) == [f"{path}: not UTF-8 text"]


def test_http2_free_form_headers_and_the_highest_bcrypt_cost_are_accepted(
        tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text("http_server_config:\n  http2: true\n  headers:\n"
                    "    Strict-Transport-Security: max-age=31536000\n"
                    "    Content-Security-Policy: default-src 'self'\n"
                    "basic_auth_users:\n  u: '$2b$14$" + "a" * 53 + "'\n")
    loaded = load_web_config(str(path))
    assert loaded.headers == (("Strict-Transport-Security", "max-age=31536000"),
                              ("Content-Security-Policy", "default-src 'self'"))
    assert loaded.users == (("u", "$2b$14$" + "a" * 53),)

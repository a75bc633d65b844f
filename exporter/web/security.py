"""The TLS and basic-auth machinery a validated web config runs with, per server and per request.

Builds the server's SSL context without writing key material anywhere (files are handed to
OpenSSL by path; inline PEM goes through an anonymous in-memory file), and checks
``Authorization`` headers against bcrypt hashes, with a dummy hash for unknown users and a
short-lived cache of successes. Reading and validating ``web-config.yml`` is
:mod:`exporter.web.config`'s job.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import ssl
import tempfile
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

REALM = "uminfer-exporter"
Checker = Callable[[bytes, bytes], bool]  # (password, bcrypt hash) -> match, like bcrypt.checkpw
Pem = Path | bytes  # a PEM file's path, or inline PEM text

TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
MAX_BCRYPT_COST = 14  # one check takes about a second on one core; 10 to 12 is plenty
_BCRYPT_MAX_PASSWORD = 72  # bytes; bcrypt ignores the rest and the library refuses longer ones
_CACHE_SIZE = 100
CACHE_SECONDS = 300.0  # a success is remembered this long after its last use


def tls_context(versions: tuple[str, str], ciphers: list[str], prefer: bool) -> ssl.SSLContext:
    """A server context for the (min, max) TLS_VERSIONS names and OpenSSL cipher names."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        # Python deprecates TLS10/TLS11, but an operator who wrote them asked for them.
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version, context.maximum_version = (TLS_VERSIONS[v] for v in versions)
    if ciphers:
        context.set_ciphers(":".join(ciphers))
    if prefer:  # the toolkit's default is true
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    return context


def load_identity(context: ssl.SSLContext, cert: Pem | None, key: Pem | None,
                  client_ca: Pem | None) -> tuple[str | None, str | None]:
    """Load the server's PEM cert and key, and the client CA, into ``context``.

    Returns (problem with the cert/key pair, problem with the CA), None where loading worked.
    Nothing is written to disk: a read-only root filesystem is enough.
    """
    pair_problem = ca_problem = None
    with _openssl_path(cert or b"") as cert_path, _openssl_path(key or b"") as key_path:
        try:
            context.load_cert_chain(cert_path, key_path, password=_no_passphrase)
        except (ssl.SSLError, ValueError) as exc:
            pair_problem = f"cert and key are not a matching, unencrypted PEM pair ({exc})"
    if client_ca is not None:
        try:
            if isinstance(client_ca, Path):
                context.load_verify_locations(cafile=str(client_ca))
            else:
                context.load_verify_locations(cadata=client_ca.decode("ascii", "replace"))
        except (ssl.SSLError, TypeError) as exc:  # TypeError: non-ASCII inline PEM
            ca_problem = f"no usable PEM certificate ({exc})"
    return pair_problem, ca_problem


@contextmanager
def _openssl_path(pem: Pem) -> Iterator[str]:
    """A path OpenSSL can read ``pem`` from: the file itself, or an in-memory file."""
    if isinstance(pem, Path):
        yield str(pem)
        return
    memfd = getattr(os, "memfd_create", None)
    if memfd is not None and os.path.isdir("/proc/self/fd"):
        fd = memfd("uminfer-pem", getattr(os, "MFD_CLOEXEC", 0))
        try:
            with os.fdopen(os.dup(fd), "wb") as f:
                f.write(pem)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    # Elsewhere (not Linux): a private temporary directory, created 0700, removed at once.
    with tempfile.TemporaryDirectory() as private:
        path = os.path.join(private, "pem")
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
            f.write(pem)
        yield path


def _no_passphrase() -> str:
    # Without this callback OpenSSL would prompt on the terminal for an encrypted key.
    raise ValueError("the key is encrypted")


class BasicAuth:
    """Basic auth against bcrypt hashes; successes are remembered CACHE_SECONDS past last use.

    Checks are not serialised: the HTTP front runs them on its own small pool of threads
    (bcrypt releases the GIL), so a flood of wrong passwords costs at most that many cores
    and never a thread that answers scrapes. The cache holds keyed digests of
    (user, password), never the password: useless to anyone who reads the process's memory.
    """

    def __init__(self, users: tuple[tuple[str, str], ...], checker: Checker,
                 monotonic: Callable[[], float]) -> None:
        self._users = {name.encode(): stored.encode() for name, stored in users}
        self._checker = checker
        self._monotonic = monotonic
        costs = [int(stored[4:6]) for _, stored in users]
        self._dummy = b"$2b$%02d$" % max(costs, default=10) + b"." * 53
        self._key = os.urandom(32)
        self._ok: OrderedDict[bytes, float] = OrderedDict()  # digest -> when it expires
        self._lock = threading.Lock()  # guards the cache only, never a bcrypt run

    def recent(self, header: str | None) -> bool:
        """Whether ``header`` passed :meth:`check` lately (fast: no bcrypt)."""
        digest = self._digest(header)
        if digest is None:
            return False
        with self._lock:
            expires = self._ok.get(digest)
            if expires is None:
                return False
            now = self._monotonic()
            if expires <= now:
                del self._ok[digest]
                return False
            # Refreshed on use: a scraper that keeps coming never needs bcrypt again, so a
            # stream of wrong passwords (which fills the bcrypt pool) cannot delay it.
            self._ok[digest] = now + CACHE_SECONDS
            self._ok.move_to_end(digest)
            return True

    def check(self, header: str | None) -> bool:
        """Whether ``header`` holds a configured user's right password (slow: bcrypt)."""
        credentials, digest = _parse_basic(header), self._digest(header)
        if credentials is None or digest is None:
            return False
        if self.recent(header):
            return True  # a scrape that raced the first check of the same credentials
        if not self._verify(*credentials):
            return False
        with self._lock:
            self._ok[digest] = self._monotonic() + CACHE_SECONDS
            self._ok.move_to_end(digest)
            if len(self._ok) > _CACHE_SIZE:
                self._ok.popitem(last=False)
        return True

    def _digest(self, header: str | None) -> bytes | None:
        credentials = _parse_basic(header)
        if credentials is None:
            return None
        user, password = credentials
        return hmac.digest(self._key, len(user).to_bytes(4, "big") + user + password, "sha256")

    def _verify(self, user: bytes, password: bytes) -> bool:
        stored = self._users.get(user)
        if stored is None or len(password) > _BCRYPT_MAX_PASSWORD:
            # The same bcrypt work as for a real user, so timing does not tell which names exist.
            self._bcrypt(password[:_BCRYPT_MAX_PASSWORD], self._dummy)
            return False
        return self._bcrypt(password, stored)

    def _bcrypt(self, password: bytes, stored: bytes) -> bool:
        try:
            return self._checker(password, stored)
        except ValueError:
            return False


def _parse_basic(header: str | None) -> tuple[bytes, bytes] | None:
    scheme, _, token = (header or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, colon, password = decoded.partition(b":")
    return (user, password) if colon else None

"""Bootstrap from a peer replica: one authenticated GET of its settled ledgers per peer tried.

The peers' web config decides TLS and basic auth (as for /metrics); ``ha.username`` and
``ha.password`` answer it and ``ha.ca_file`` verifies its certificate. Credentials go only to
https:// peers (unless ``ha.insecure_http_auth``), never through proxies or ``.netrc`` from the
environment (as for the API). Each peer's whole answer must arrive within ``ha.timeout``: a
peer that trickles it is given up at that deadline (the call is left to end on its own, in a
daemon thread that never holds up an exit). A failure or a refusal is logged with its reason
and the URL (which never holds credentials: the config refuses that); the next peer is tried,
and without any the replica catches up from the API.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from urllib.parse import urlsplit

import requests

from exporter.accounting.handoff import MAX_BYTES, Handoff, HandoffError, Terms, check, parse
from exporter.accounting.state import GridOf
from exporter.config import HaConfig
from exporter.core.clock import Clock

log = logging.getLogger(__name__)

PATH = "/-/ledgers"
_CHUNK = 1 << 16


@dataclass(frozen=True)
class Fetched:
    """A peer's checked document, where it came from and how long the call took."""

    url: str
    handoff: Handoff
    seconds: float


def fetch(ha: HaConfig, terms: Terms, api_now: Callable[[], int], clock: Clock,
          *, replica: str, grid_of: GridOf,
          session: Callable[[], requests.Session] | None = None) -> Fetched | None:
    """The first peer's document that is valid here, or None (every reason logged).

    One config may list every replica (a StatefulSet's pods share it): a peer whose host is
    this host's name (``pod-0`` in ``pod-0.service``) is not asked, and a document sent by this
    very process (``replica``) is not taken. ``session`` makes each peer's session (default:
    :func:`plain_session`)."""
    own = socket.gethostname().split(".")[0].lower()
    for url in ha.peers:
        if (urlsplit(url).hostname or "").split(".")[0].lower() == own:
            continue
        started = clock.monotonic()
        try:
            handoff = parse(_within(ha.timeout, partial(_get, session or plain_session, ha, url)))
            if handoff.replica == replica:
                log.info("peer %s is this replica; skipped", url)
                continue
            check(handoff, terms, api_now(), grid_of)
        except HandoffError as error:
            log.error("peer %s: its ledgers are refused: %s; catching up from the API "
                      "instead", url, error)
            continue
        except (requests.RequestException, OSError) as error:
            log.warning("peer %s unreachable: %s", url, _reason(error))
            continue
        return Fetched(url, handoff, clock.monotonic() - started)
    return None


def plain_session() -> requests.Session:
    """A session that ignores the environment: no HTTP(S)_PROXY, no ``~/.netrc`` credentials
    (a proxy would see Basic credentials, and .netrc could send some nobody configured)."""
    session = requests.Session()
    session.trust_env = False
    return session


def _within(seconds: float, call: Callable[[list[requests.Response]], bytes]) -> bytes:
    """``call()``'s answer if it comes within ``seconds``, else HandoffError. ``requests``'
    timeout bounds each read, so a peer sending a byte every few seconds never trips it; here
    the caller stops waiting at the deadline and closes the answer under the call, which then
    ends at its next read (at most one read timeout later) in its daemon thread."""
    done: list[bytes | BaseException] = []
    held: list[requests.Response] = []

    def run() -> None:
        try:
            done.append(call(held))
        except BaseException as error:  # noqa: BLE001 (handed to the waiting thread)
            done.append(error)

    worker = threading.Thread(target=run, name="peer-fetch", daemon=True)
    worker.start()
    worker.join(seconds)
    if not done:
        for response in held:
            _hang_up(response)
        raise HandoffError(f"no whole answer within ha.timeout ({seconds:g}s)")
    if isinstance(done[0], BaseException):
        raise done[0]
    return done[0]


def _hang_up(response: requests.Response) -> None:
    """Shut the answer's socket, waking the thread blocked reading it (closing the response
    would wait for that read: its buffer is locked meanwhile)."""
    # The connection's socket; once http.client has handed it to the answer (a peer that
    # closes after answering), only the answer's file holds it.
    sock = getattr(getattr(response.raw, "connection", None), "sock", None)
    if sock is None:
        stream = getattr(getattr(response.raw, "_fp", None), "fp", None)
        sock = getattr(getattr(stream, "raw", None), "_sock", None)
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _get(session: Callable[[], requests.Session], ha: HaConfig, url: str,
         held: list[requests.Response]) -> bytes:
    auth = (ha.username, ha.password) if ha.username is not None else None
    if auth is not None and urlsplit(url).scheme != "https" and not ha.insecure_http_auth:
        raise HandoffError("ha.username/ha.password go only to https:// peers (or set "
                           "ha.insecure_http_auth: true)")
    with session() as http, http.get(url.rstrip("/") + PATH, auth=auth, timeout=ha.timeout,
                                     stream=True, verify=ha.ca_file or True,
                                     allow_redirects=False) as response:
        held.append(response)
        if response.status_code == 401:
            raise HandoffError("the peer refused ha.username/ha.password (HTTP 401)")
        if response.status_code == 404:
            raise HandoffError(f"the peer does not serve {PATH} (an older version?)")
        if response.status_code != 200:
            raise HandoffError(f"the peer answered HTTP {response.status_code}")
        body = bytearray()
        for chunk in response.iter_content(_CHUNK):
            body += chunk
            if len(body) > MAX_BYTES:
                raise HandoffError(f"answer larger than {MAX_BYTES} bytes")
        return bytes(body)


def _reason(error: BaseException) -> str:
    """The kind of failure and its first line, cut short (a proxy's page can be long)."""
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text[:200]}"

"""Bootstrap from a peer replica: one authenticated GET of its settled ledgers per peer tried.

The peers' web config decides TLS and basic auth (as for /metrics); ``ha.username`` and
``ha.password`` answer it and ``ha.ca_file`` verifies its certificate. A failure or a refusal
is logged with its reason and the URL (which never holds credentials: the config refuses that);
the next peer is tried, and without any the replica catches up from the API.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
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
          *, replica: str, grid_of: GridOf, session: requests.Session | None = None
          ) -> Fetched | None:
    """The first peer's document that is valid here, or None (every reason logged).

    One config may list every replica (a StatefulSet's pods share it): a peer whose host is
    this host's name (``pod-0`` in ``pod-0.service``) is not asked, and a document sent by this
    very process (``replica``) is not taken."""
    http = session or requests.Session()
    own = socket.gethostname().split(".")[0].lower()
    try:
        for url in ha.peers:
            if (urlsplit(url).hostname or "").split(".")[0].lower() == own:
                continue
            started = clock.monotonic()
            try:
                handoff = parse(_get(http, ha, url))
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
    finally:
        if session is None:
            http.close()
    return None


def _get(http: requests.Session, ha: HaConfig, url: str) -> bytes:
    auth = (ha.username, ha.password) if ha.username is not None else None
    with http.get(url.rstrip("/") + PATH, auth=auth, timeout=ha.timeout, stream=True,
                  verify=ha.ca_file or True, allow_redirects=False) as response:
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

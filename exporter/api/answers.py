"""Reading an API answer's body: capped, few large ones in memory at once, bounded JSON.

Every answer is streamed and read only up to ``API_ANSWER.max_bytes``. Answers are small in
steady state (a few hundred bytes); one that grows past ``SMALL`` bytes must first take one of
``LARGE_SLOTS`` slots, held until it is parsed, so however many calls run at once (up to 256)
and whatever a hostile API sends, at most a few large answers cost memory at the same time.
"""

from __future__ import annotations

import threading

import requests

from exporter.api.errors import ApiError
from exporter.api.response import invalid
from exporter.api.transport import failure_reason
from exporter.core.safejson import API_ANSWER, UnsafeJsonError, loads

SMALL = 64 << 10  # a day of hourly usage rows is ~5 KiB; per-minute rows ~700 KiB
LARGE_SLOTS = 2
_CHUNK = 1 << 16


class AnswerReader:
    """Reads answers for one client; thread-safe."""

    def __init__(self, host: str, slots: int = LARGE_SLOTS) -> None:
        self._host = host
        self._large = threading.BoundedSemaphore(slots)

    def read(self, response: requests.Response, timeout: float) -> object:
        """The decoded JSON of ``response``'s body; ApiError (invalid_response, timeout or
        network) when it is too large, not usable JSON, or no large slot frees in ``timeout``."""
        content, held = self._body(response, timeout)
        try:
            return loads(content, API_ANSWER)
        except UnsafeJsonError as exc:
            problem = str(exc)  # the error itself is dropped: its frames hold the body
        finally:
            if held:
                self._large.release()
        size = len(content)
        del content
        raise invalid(f"body from {self._host} is not usable JSON: {problem} "
                      f"(HTTP {response.status_code}, {size} bytes, "
                      f"Content-Type {_shown(response.headers.get('Content-Type'))})")

    def _body(self, response: requests.Response, timeout: float) -> tuple[bytearray, bool]:
        """The body, and whether a large slot is now held (the caller releases it)."""
        cap, held = API_ANSWER.max_bytes, False
        declared = response.headers.get("Content-Length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > cap:
            raise self._too_large()
        body = bytearray()  # one buffer: a list of chunks joined at the end would need two
        try:
            for chunk in response.iter_content(_CHUNK):
                if len(body) + len(chunk) > cap:
                    raise self._too_large()
                if len(body) + len(chunk) > SMALL and not held:
                    held = self._take_slot(timeout)
                body += chunk
        except requests.RequestException as exc:  # the answer broke off mid-body
            if held:
                self._large.release()
            raise ApiError("network", f"answer from {self._host} broke off: "
                           f"{failure_reason(exc)}", transient=True) from None
        except ApiError:
            if held:
                self._large.release()
            raise
        return body, held

    def _take_slot(self, timeout: float) -> bool:
        if not self._large.acquire(timeout=max(0.0, timeout)):
            raise ApiError("timeout", f"a large answer from {self._host} waited {timeout:.1f}s "
                           "for other large answers to be read", transient=True)
        return True

    def _too_large(self) -> ApiError:
        return invalid(f"body from {self._host} is larger than {API_ANSWER.max_bytes} bytes")


def _shown(header: str | None) -> str:
    """A response header for a message: server-controlled, so printable and short."""
    if header is None:
        return "none"
    return repr("".join(c if c.isprintable() else "?" for c in header[:60]))

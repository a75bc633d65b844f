"""Reading a raw socket the way the HTTP front's tests need it."""

from __future__ import annotations

import socket

OPEN = b"<open>"


def read_until_closed(sock: socket.socket, wait: float) -> bytes:
    """What ``sock`` receives until the peer closes it (a reset counts as closed), with
    :data:`OPEN` appended when ``wait`` seconds pass without a byte or a close."""
    sock.settimeout(wait)
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except TimeoutError:
        got += OPEN
    except ConnectionResetError:
        pass
    return got

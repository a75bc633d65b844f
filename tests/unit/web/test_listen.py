"""``--web.listen-address``: HOST:PORT, with the message an operator reads when it is wrong."""

from __future__ import annotations

import re

import pytest

from exporter.web.listen import parse_listen_address


@pytest.mark.parametrize(("address", "expected"), [
    ("127.0.0.1:9866", ("127.0.0.1", 9866)), (":9866", ("0.0.0.0", 9866)),
    ("[::1]:80", ("::1", 80)), ("localhost:0", ("localhost", 0)),
    ("XHOSTX:65535", ("XHOSTX", 65535)),  # the name is kept as written, only [] are dropped
])
def test_listen_address(address: str, expected: tuple[str, int]) -> None:
    assert parse_listen_address(address) == expected


@pytest.mark.parametrize("address", ["9866", "host:", "host:port", "h:70000", "h:65536", ""])
def test_bad_listen_address(address: str) -> None:
    with pytest.raises(ValueError, match=re.escape(
            f"--web.listen-address: expected HOST:PORT, got {address!r} (e.g. :9866 for every "
            "interface, 127.0.0.1:9866 for loopback)")):
        parse_listen_address(address)

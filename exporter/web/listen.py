"""The ``--web.listen-address`` value: HOST:PORT (light to import: the probe uses it too)."""

from __future__ import annotations


def parse_listen_address(address: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``:PORT`` means every interface, ``[::1]:PORT`` for IPv6)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--web.listen-address: expected HOST:PORT, got {address!r} "
                         "(e.g. :9866 for every interface, 127.0.0.1:9866 for loopback)")
    host = host.strip("[]") or "0.0.0.0"  # noqa: S104 (listening everywhere is the default)
    return host, int(port)

"""``python -m exporter.probe``: the container's health check, with or without TLS and auth.

Run beside the exporter (Docker HEALTHCHECK, Kubernetes exec probes). It asks over loopback,
where /-/healthy and /-/ready need no password, so it needs none either; it speaks plain HTTP
and, when the port turns out to speak TLS, TLS (without verifying the certificate: it talks
to its own process over loopback). With ``client_auth_type: RequireAndVerifyClientCert``
give it a client certificate. Exit 0 when the answer is 200, else 1 with one line saying why.
"""

from __future__ import annotations

import argparse
import http.client
import ssl
import sys
from collections.abc import Sequence

from exporter.config.types import DEFAULT_LISTEN_ADDRESS
from exporter.web.listen import parse_listen_address

_LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104 (names, not binds)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m exporter.probe", description=__doc__)
    p.add_argument("path", nargs="?", default="/-/healthy", help="default: %(default)s")
    p.add_argument("--web.listen-address", dest="listen", default=DEFAULT_LISTEN_ADDRESS,
                   metavar="HOST:PORT", help="the exporter's flag, copied (default: %(default)s)")
    p.add_argument("--tls.client-cert", dest="cert", metavar="PATH",
                   help="client certificate, when the exporter requires one")
    p.add_argument("--tls.client-key", dest="key", metavar="PATH")
    p.add_argument("--timeout", type=float, default=4.0, help="seconds per attempt")
    return p


def probe(host: str, port: int, path: str, timeout: float,
          client: tuple[str, str] | None = None) -> tuple[int | None, str]:
    """(HTTP status or None, what happened); plain HTTP first, then TLS."""
    try:
        return _get(http.client.HTTPConnection(host, port, timeout=timeout), path)
    except (http.client.HTTPException, ConnectionError) as plain_error:
        # A TLS port drops a plain request at once; anything else is a real failure too,
        # but TLS costs one more round trip to find out.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # our own process over loopback
        if client is not None:
            context.load_cert_chain(*client)
        try:
            return _get(http.client.HTTPSConnection(host, port, timeout=timeout,
                                                    context=context), path)
        except (OSError, http.client.HTTPException) as tls_error:
            return None, f"no answer over HTTP ({plain_error!r}) nor TLS ({tls_error!r})"
    except OSError as error:
        return None, f"no answer ({error!r})"


def _get(conn: http.client.HTTPConnection, path: str) -> tuple[int, str]:
    try:
        conn.request("GET", path, headers={"User-Agent": "uminfer-exporter-probe"})
        response = conn.getresponse()
        response.read()
        return response.status, f"HTTP {response.status}"
    finally:
        conn.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Probe once; 0 when healthy."""
    args = _parser().parse_args(argv)
    host, port = parse_listen_address(args.listen)
    host = _LOOPBACK.get(host, host)
    client = (args.cert, args.key or args.cert) if args.cert else None
    status, what = probe(host, port, args.path, args.timeout, client)
    if status == 200:
        return 0
    print(f"unhealthy: {args.path} on {host}:{port}: {what}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())

"""``python -m exporter.probe`` in-process against the exporter's own HTTP front over loopback:
plain HTTP, TLS, TLS with a required client certificate, and the one line it prints when the
answer is not 200."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from pathlib import Path

import pytest

from exporter import probe
from exporter.config.types import DEFAULT_LISTEN_ADDRESS
from exporter.web.config import load_web_config
from exporter.web.httpfront import HttpFront, Limits
from exporter.web.httpwire import Request, Response
from tests.certs import Pki, make_pki


class _Front:
    """The exporter's HTTP front answering 200 on /-/healthy, 503 on /-/ready; it keeps the
    requests it was sent."""

    def __init__(self, web: Path | None = None) -> None:
        self.requests: list[Request] = []
        tls = load_web_config(str(web)).ssl_context() if web else None
        self.front = HttpFront(socket.create_server(("127.0.0.1", 0)), self._answer,
                               lambda: tls, Limits(header_timeout=5), "test")

    @property
    def port(self) -> int:
        return self.front.port

    async def _answer(self, request: Request) -> Response:
        self.requests.append(request)
        status = HTTPStatus.OK if request.path == "/-/healthy" else HTTPStatus.SERVICE_UNAVAILABLE
        return Response(status, b"answer\n")


@contextmanager
def serving(web: Path | None = None) -> Iterator[_Front]:
    front = _Front(web)
    front.front.start()
    try:
        yield front
    finally:
        front.front.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def web_yml(tmp_path: Path, pki: Pki, client_ca: bool = False) -> Path:
    path = tmp_path / "web.yml"
    extra = (f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki.ca}\n"
             if client_ca else "")
    path.write_text(f"tls_server_config:\n  cert_file: {pki.server_cert}\n"
                    f"  key_file: {pki.server_key}\n{extra}")
    return path


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return int(sock.getsockname()[1])


def listen(port: int, host: str = "127.0.0.1") -> str:
    return f"--web.listen-address={host}:{port}"


# --- the defaults the shipped health checks rely on ---


def test_defaults_are_the_exporters() -> None:
    args = probe._parser().parse_args([])
    assert (args.path, args.listen, args.cert, args.key, args.timeout) == (
        "/-/healthy", DEFAULT_LISTEN_ADDRESS, None, None, 4.0)


def test_help_names_the_command_and_its_defaults() -> None:
    text = " ".join(probe._parser().format_help().split())
    assert "``python -m exporter.probe``: the container's health check, with or without TLS " \
           "and auth." in text
    assert text.startswith("usage: python -m exporter.probe [-h] [--web.listen-address HOST:PORT] "
                           "[--tls.client-cert PATH] [--tls.client-key PATH] "
                           "[--timeout TIMEOUT] [path]")
    for line in ("path default: /-/healthy",
                 f"--web.listen-address HOST:PORT the exporter's flag, copied (default: "
                 f"{DEFAULT_LISTEN_ADDRESS})",
                 "--tls.client-cert PATH client certificate, when the exporter requires one",
                 "--timeout TIMEOUT seconds per attempt"):
        assert line in text


# --- plain HTTP ---


def test_healthy_over_plain_http_asks_the_default_path_as_the_probe(
        capsys: pytest.CaptureFixture[str]) -> None:
    with serving() as front:
        assert probe.main([listen(front.port)]) == 0
    [request] = front.requests
    assert (request.method, request.target, request.header("user-agent")) == (
        "GET", "/-/healthy", "uminfer-exporter-probe")
    assert capsys.readouterr() == ("", "")


def test_not_200_says_the_path_the_address_and_the_status(
        capsys: pytest.CaptureFixture[str]) -> None:
    with serving() as front:
        port = front.port
        assert probe.main(["/-/ready", listen(port)]) == 1
    assert [r.target for r in front.requests] == ["/-/ready"]
    assert capsys.readouterr() == ("", f"unhealthy: /-/ready on 127.0.0.1:{port}: HTTP 503\n")


def test_probe_returns_the_status_and_what_happened() -> None:
    with serving() as front:
        assert probe.probe("127.0.0.1", front.port, "/-/ready", 5) == (503, "HTTP 503")
        assert probe.probe("127.0.0.1", front.port, "/-/healthy", 5) == (200, "HTTP 200")


def test_every_interface_is_asked_over_loopback() -> None:
    with serving() as front:
        assert probe.main([listen(front.port, "0.0.0.0")]) == 0
        assert probe.main([f"--web.listen-address=:{front.port}"]) == 0
    assert len(front.requests) == 2


def test_every_ipv6_interface_is_asked_over_ipv6_loopback(
        capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    assert probe.main([listen(port, "[::]")]) == 1
    assert capsys.readouterr().err.startswith(f"unhealthy: /-/healthy on ::1:{port}: ")


def test_nothing_listening_says_both_attempts(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    assert probe.main([listen(port)]) == 1
    refused = "ConnectionRefusedError(111, 'Connection refused')"
    assert capsys.readouterr() == (
        "", f"unhealthy: /-/healthy on 127.0.0.1:{port}: no answer over HTTP ({refused}) "
            f"nor TLS ({refused})\n")


@contextmanager
def silent(drop_first: bool = False) -> Iterator[int]:
    """A port that accepts connections and never answers (the first one dropped at once, as a
    TLS port drops a plain request, with ``drop_first``); all closed 3 s after the last."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        server.settimeout(3)
        try:
            while True:
                conn, _ = server.accept()
                if drop_first and not held:
                    conn.close()
                held.append(conn)
        except OSError:
            pass
        finally:  # so that a probe without a timeout fails the test, not hangs it
            for conn in held:
                conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        with contextlib.suppress(OSError):
            server.shutdown(socket.SHUT_RDWR)  # wakes the accept at once
        server.close()
        thread.join()


def test_a_silent_port_times_out_after_the_timeout() -> None:
    with silent() as port:
        began = time.monotonic()
        status, what = probe.probe("127.0.0.1", port, "/-/healthy", 0.3)
        assert time.monotonic() - began < 2
    assert (status, what) == (None, "no answer (TimeoutError('timed out'))")


def test_the_timeout_flag_bounds_each_attempt(capsys: pytest.CaptureFixture[str]) -> None:
    with silent() as port:
        began = time.monotonic()
        assert probe.main([listen(port), "--timeout=0.3"]) == 1
        assert time.monotonic() - began < 2
    assert capsys.readouterr().err == (
        f"unhealthy: /-/healthy on 127.0.0.1:{port}: no answer (TimeoutError('timed out'))\n")


def test_a_silent_tls_attempt_times_out_after_the_timeout() -> None:
    with silent(drop_first=True) as port:
        began = time.monotonic()
        status, what = probe.probe("127.0.0.1", port, "/-/healthy", 0.3)
        assert time.monotonic() - began < 2
    assert status is None
    assert re.fullmatch(r"no answer over HTTP \((RemoteDisconnected|ConnectionResetError)\(.*\)\) "
                        r"nor TLS \(TimeoutError\('.*timed out'\)\)", what), what


# --- TLS ---


def test_healthy_over_tls_without_checking_the_certificate(tmp_path: Path, pki: Pki) -> None:
    with serving(web_yml(tmp_path, pki)) as front:
        assert probe.main([listen(front.port)]) == 0
    assert [r.target for r in front.requests] == ["/-/healthy"]


def test_a_required_client_certificate(tmp_path: Path, pki: Pki,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    with serving(web_yml(tmp_path, pki, client_ca=True)) as front:
        number = front.port
        port = listen(number)
        assert probe.main([port, f"--tls.client-cert={pki.client_cert}",
                           f"--tls.client-key={pki.client_key}"]) == 0
        combined = tmp_path / "client-with-key.pem"
        combined.write_bytes(pki.client_cert.read_bytes() + pki.client_key.read_bytes())
        assert probe.main([port, f"--tls.client-cert={combined}"]) == 0
        assert capsys.readouterr().err == ""
        assert probe.main([port]) == 1
    assert capsys.readouterr().err.startswith(
        f"unhealthy: /-/healthy on 127.0.0.1:{number}: no answer over HTTP (")
    assert len(front.requests) == 2

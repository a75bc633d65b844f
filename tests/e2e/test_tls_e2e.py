"""The real process with --web.config.file: mTLS and basic auth, checked with real TLS clients."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest
import requests
import yaml

from tests import fleet
from tests.certs import Pki, make_pki
from tests.harness import Exporter, wait_for

pytestmark = pytest.mark.e2e

USER, PASSWORD = "prometheus", "correct horse battery staple"


@dataclass(frozen=True)
class Served:
    """The running exporter, its PKI and its https URL."""

    child: Exporter
    pki: Pki
    url: str

    def get(self, path: str, auth: tuple[str, str] | None = (USER, PASSWORD),
            cert: tuple[Path, Path] | None = None, method: str = "GET") -> requests.Response:
        """One request as a client holding the good client certificate (or ``cert``)."""
        chosen = cert or (self.pki.client_cert, self.pki.client_key)
        return requests.request(method, self.url + path, auth=auth, timeout=5,
                                verify=str(self.pki.ca),
                                cert=(str(chosen[0]), str(chosen[1])))


def _web_config(directory: Path, pki: Pki) -> Path:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    path = directory / "web.yml"
    path.write_text(yaml.safe_dump({
        "tls_server_config": {"cert_file": str(pki.server_cert), "key_file": str(pki.server_key),
                              "client_ca_file": str(pki.ca),
                              "client_auth_type": "RequireAndVerifyClientCert"},
        "http_server_config": {"headers": {"X-Content-Type-Options": "nosniff"}},
        "basic_auth_users": {USER: hashed},
    }))
    return path


def _answers(served: Served) -> bool:
    try:
        return served.get("/-/ready").status_code == 200
    except requests.ConnectionError:
        return False


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One exporter on TLS with client certificates and basic auth, for the whole module."""
    directory = tmp_path_factory.mktemp("tls")
    pki = make_pki(directory)
    with fleet.simulator() as sim:
        config = fleet.fleet_config(sim.url, ["k-tls"])
        with fleet.exporter(directory, config, f"--web.config.file={_web_config(directory, pki)}",
                            ready=False) as child:
            result = Served(child, pki, f"https://127.0.0.1:{child.port}")
            wait_for(lambda: child.process is not None and child.process.poll() is None
                     and _answers(result), 15, "the exporter to answer over TLS")
            yield result


def test_metrics_over_mtls_with_basic_auth(served: Served) -> None:
    response = served.get("/metrics")
    assert response.status_code == 200
    assert 'uminfer_up{project_id="org-fleet",key_id="k-tls"' in response.text
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("auth", [None, (USER, "wrong"), ("nobody", PASSWORD), (USER, "")],
                         ids=["none", "wrong-password", "unknown-user", "empty-password"])
@pytest.mark.parametrize("path", ["/metrics", "/", "/-/reload"])
def test_wrong_credentials_get_401(served: Served, auth: tuple[str, str] | None,
                                   path: str) -> None:
    response = served.get(path, auth=auth)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="uminfer-exporter"'
    assert "uminfer_" not in response.text  # nothing of the exposition leaks into a 401


def test_probes_from_loopback_need_no_password_but_tls_still(served: Served) -> None:
    """What lets the image's HEALTHCHECK and exec probes work with auth on (see README)."""
    for path in ("/-/healthy", "/-/ready"):
        assert served.get(path, auth=None).status_code == 200
        assert served.get(path, auth=(USER, "wrong")).status_code == 200
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{served.child.port}/-/healthy", timeout=5)


def test_reload_needs_credentials_too(served: Served) -> None:
    assert served.get("/-/reload", auth=None, method="POST").status_code == 401
    assert served.get("/-/reload", method="POST").status_code == 200


@pytest.mark.parametrize("who", ["stranger", "no-certificate"])
def test_client_without_a_trusted_certificate_is_refused(served: Served, who: str) -> None:
    pki = served.pki
    with requests.Session() as session:
        session.verify = str(pki.ca)
        if who == "stranger":
            session.cert = (str(pki.stranger_cert), str(pki.stranger_key))
        with pytest.raises(requests.ConnectionError):  # SSLError is one, as is a reset
            session.get(f"{served.url}/metrics", auth=(USER, PASSWORD), timeout=5)
    assert served.get("/-/healthy").status_code == 200  # and the server keeps serving


def test_plain_http_to_the_tls_port_fails_and_serving_goes_on(served: Served) -> None:
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{served.child.port}/metrics", timeout=5)
    assert served.get("/metrics").status_code == 200


"""The web config reloads with the config (POST /-/reload, SIGHUP): users, certificates, errors."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import requests
import yaml

from tests import fleet
from tests.certs import make_pki
from tests.harness import Exporter, wait_for

pytestmark = pytest.mark.e2e

OLD, NEW = ("old", "old-password"), ("new", "new-password")


def users(*pairs: tuple[str, str]) -> dict[str, Any]:
    return {"basic_auth_users": {name: bcrypt.hashpw(password.encode(),
                                                     bcrypt.gensalt(rounds=4)).decode()
                                 for name, password in pairs}}


def status(child: Exporter, auth: tuple[str, str], url: str | None = None,
           verify: str | bool = False) -> int:
    return requests.get(f"{url or child.url}/metrics", auth=auth, timeout=5,
                        verify=verify).status_code


@contextmanager
def with_web_config(tmp_path: Path, web: Path) -> Iterator[Exporter]:
    """The exporter against a simulator, started with ``web`` holding the OLD user."""
    web.write_text(yaml.safe_dump(users(OLD)))
    with fleet.simulator() as sim, fleet.exporter(
            tmp_path, fleet.fleet_config(sim.url, ["k-web"]), f"--web.config.file={web}"
    ) as child:
        yield child


def test_reload_revokes_and_adds_users(tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    with with_web_config(tmp_path, web) as child:
        assert (status(child, OLD), status(child, NEW)) == (200, 401)

        web.write_text(yaml.safe_dump(users(NEW)))
        answer = requests.post(f"{child.url}/-/reload", auth=OLD, timeout=10)
        assert (answer.status_code, answer.text) == (200, "config reloaded\n")
        assert (status(child, OLD), status(child, NEW)) == (401, 200)

        web.write_text(yaml.safe_dump(users(OLD)))
        child.signal(signal.SIGHUP)
        wait_for(lambda: status(child, OLD) == 200, 10, "SIGHUP to bring back the old user")
        assert status(child, NEW) == 401
        assert child.log().count("reloaded") >= 2


def test_a_bad_web_config_rejects_the_reload_and_the_old_one_stays(tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    with with_web_config(tmp_path, web) as child:
        web.write_text("basic_auth_users:\n  new: not-a-hash\n")
        answer = requests.post(f"{child.url}/-/reload", auth=OLD, timeout=10)
        assert answer.status_code == 500
        assert "basic_auth_users.new: not a bcrypt hash" in answer.text
        assert "not-a-hash" not in answer.text  # never echoed: it could be a password
        assert (status(child, OLD), status(child, NEW)) == (200, 401)
        samples = requests.get(f"{child.url}/metrics", auth=OLD, timeout=5).text
        assert "uminfer_config_last_reload_successful 0.0" in samples


def test_reload_rotates_the_certificate(tmp_path: Path) -> None:
    first, second = make_pki(_mkdir(tmp_path, "a")), make_pki(_mkdir(tmp_path, "b"))
    web = tmp_path / "web.yml"

    def serve(pki_dir: Path) -> None:
        web.write_text(yaml.safe_dump({"tls_server_config": {
            "cert_file": str(pki_dir / "server.pem"), "key_file": str(pki_dir / "server.key")},
            **users(OLD)}))

    serve(first.ca.parent)
    with fleet.simulator() as sim, fleet.exporter(
            tmp_path, fleet.fleet_config(sim.url, ["k-web"]), f"--web.config.file={web}",
            ready=False) as child:
        url = f"https://127.0.0.1:{child.port}"
        wait_for(lambda: _answers(child, url, str(first.ca)), 15, "the exporter over TLS")
        serve(second.ca.parent)
        answer = requests.post(f"{url}/-/reload", auth=OLD, timeout=10, verify=str(first.ca))
        assert answer.status_code == 200
        assert status(child, OLD, url, str(second.ca)) == 200  # new connections: new cert
        with pytest.raises(requests.exceptions.SSLError):
            status(child, OLD, url, str(first.ca))


def _mkdir(base: Path, name: str) -> Path:
    (base / name).mkdir()
    return base / name


def _answers(child: Exporter, url: str, ca: str) -> bool:
    assert child.process is not None and child.process.poll() is None, child.log()
    try:
        return status(child, OLD, url, ca) == 200
    except requests.ConnectionError:
        return False

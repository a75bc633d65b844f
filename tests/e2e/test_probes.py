"""The shipped health checks (Dockerfile HEALTHCHECK, Kubernetes probes) against the real
process: plain, with basic auth, and with TLS and basic auth."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import requests
import yaml

from tests import fleet
from tests.certs import make_pki
from tests.harness import Exporter, wait_for
from tests.paths import ROOT

pytestmark = pytest.mark.e2e

REPO = ROOT
USER = ("prometheus", "scrape-password")


def dockerfile_healthcheck() -> list[str]:
    """The HEALTHCHECK's exec-form command."""
    text = (REPO / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    match = re.search(r"^HEALTHCHECK .*?CMD (\[.*\])", text, re.MULTILINE)
    assert match, "the Dockerfile has an exec-form HEALTHCHECK"
    return list(json.loads(match.group(1)))


def kubernetes_probes() -> dict[str, list[str]]:
    """The StatefulSet's probe commands by probe name."""
    sts = yaml.safe_load((REPO / "deploy/kubernetes/statefulset.yaml").read_text("utf-8"))
    container = sts["spec"]["template"]["spec"]["containers"][0]
    return {name: list(container[name]["exec"]["command"])
            for name in ("livenessProbe", "readinessProbe")}


COMMANDS = {"HEALTHCHECK": dockerfile_healthcheck(), **kubernetes_probes()}


def run_probe(command: list[str], port: int) -> subprocess.CompletedProcess[str]:
    """``command`` as the container would run it, pointed at ``port`` instead of 9866."""
    assert command[0] == "python"
    listen = f"--web.listen-address=127.0.0.1:{port}"
    args = [listen if part.startswith("--web.listen-address=") else part for part in command[1:]]
    if listen not in args:
        args.append(listen)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=30,
                          check=False)


def web_config(directory: Path, tls: bool) -> Path:
    hashed = bcrypt.hashpw(USER[1].encode(), bcrypt.gensalt(rounds=4)).decode()
    content: dict[str, Any] = {"basic_auth_users": {USER[0]: hashed}}
    if tls:
        pki = make_pki(directory)
        content["tls_server_config"] = {"cert_file": str(pki.server_cert),
                                        "key_file": str(pki.server_key)}
    path = directory / "web.yml"
    path.write_text(yaml.safe_dump(content), encoding="utf-8")
    return path


@pytest.fixture(params=["plain", "basic-auth", "tls-and-basic-auth"])
def running(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Exporter, str]]:
    """The exporter, ready, in each security setting; and its base URL."""
    args, scheme = [], "https" if request.param.startswith("tls") else "http"
    if request.param != "plain":
        args.append(f"--web.config.file={web_config(tmp_path, scheme == 'https')}")
    with fleet.simulator() as sim, fleet.exporter(
            tmp_path, fleet.fleet_config(sim.url, ["k-probe"]), *args, ready=False) as child:
        wait_for(lambda: run_probe(COMMANDS["readinessProbe"], child.port).returncode == 0,
                 20, lambda: f"readiness: {child.log()[-2000:]}")
        yield child, f"{scheme}://127.0.0.1:{child.port}"


@pytest.mark.parametrize("probe", sorted(COMMANDS))
def test_probes_pass_whatever_the_security(running: tuple[Exporter, str], probe: str) -> None:
    child, base = running
    done = run_probe(COMMANDS[probe], child.port)
    assert done.returncode == 0, done.stderr
    if child.args:  # and auth really is on for everything else
        ca = child.workdir / "ca.pem"
        verify = str(ca) if ca.exists() else True
        url = f"{base}/metrics"
        assert requests.get(url, timeout=5, verify=verify).status_code == 401
        assert requests.get(url, timeout=5, verify=verify, auth=USER).status_code == 200


def test_probes_fail_when_nothing_answers() -> None:
    for command in COMMANDS.values():
        done = run_probe(command, 1)
        assert done.returncode == 1
        assert done.stderr.startswith("unhealthy: ")


def test_with_client_certificates_required_the_probe_presents_one(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    web = tmp_path / "web.yml"
    web.write_text(yaml.safe_dump({"tls_server_config": {
        "cert_file": str(pki.server_cert), "key_file": str(pki.server_key),
        "client_ca_file": str(pki.ca), "client_auth_type": "RequireAndVerifyClientCert"}}))
    probe = dockerfile_healthcheck()
    with fleet.simulator() as sim, fleet.exporter(
            tmp_path, fleet.fleet_config(sim.url, ["k-mtls"]), f"--web.config.file={web}",
            ready=False) as child:
        with_cert = [*probe, f"--tls.client-cert={pki.client_cert}",
                     f"--tls.client-key={pki.client_key}"]
        wait_for(lambda: run_probe(with_cert, child.port).returncode == 0, 20,
                 lambda: f"the probe with a client certificate: {child.log()[-2000:]}")
        without = run_probe(probe, child.port)
        assert without.returncode == 1
        assert without.stderr.startswith("unhealthy: ")

"""Deployment files, checked offline: hadolint, a real Compose v2, kubernetes-validate, promtool."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.config import parse_config
from mixin.rules import prometheus_rule
from tests.paths import ROOT
from tests.tools import require_tool

pytestmark = pytest.mark.e2e  # starts processes

REPO = ROOT
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "kubernetes"
CORE_MANIFESTS = ("configmap.yaml", "service.yaml", "statefulset.yaml", "secret.example.yaml")
STATE_DIR = "/var/lib/uminfer-exporter"


def tool(name: str) -> str:
    """A tool from the test extra (next to this Python) or else from PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else require_tool(name)


def run(*cmd: str, cwd: Path = REPO, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    """Run a checker; never raises, the test asserts on the outcome."""
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=60,
                          check=False)


def load(name: str) -> dict[str, Any]:
    """One Kubernetes manifest from deploy/kubernetes/."""
    return dict(yaml.safe_load((K8S / name).read_text(encoding="utf-8")))


# --- Dockerfile -------------------------------------------------------------------------------

def test_hadolint_passes_dockerfile(tmp_path: Path) -> None:
    """The Dockerfile is lint-clean; an unpinned base image would not be (the linter is live)."""
    hadolint = tool("hadolint")
    result = run(hadolint, "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install requests\n", encoding="utf-8")
    assert run(hadolint, str(bad)).returncode != 0


# --- Compose -----------------------------------------------------------------------------------

COMPOSE = DEPLOY / "docker-compose.yml"
COMPOSE_HA = DEPLOY / "docker-compose.ha.yml"
REPLICAS = ("uminfer-exporter-a", "uminfer-exporter-b")


def compose_config(env_file: Path | None = None, file: Path = COMPOSE) -> dict[str, Any]:
    """``docker compose config`` as JSON, from the real Compose v2 binary (needs no daemon)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("UMINFER_", "GRAFANA_", "COMPOSE_"))}
    extra = ["--env-file", str(env_file)] if env_file else []
    result = run(tool("docker-compose"), "-f", str(file), *extra,
                 "config", "--format", "json", env=env)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


ENV_FILES = [None, DEPLOY / "uminfer.env.example"]


def test_compose_runs_demo_by_default() -> None:
    """Without .env the exporter runs the simulator, state on a named volume."""
    services = compose_config()["services"]
    assert set(services) == {"uminfer-exporter", "prometheus", "grafana"}
    exporter = services["uminfer-exporter"]
    assert exporter["command"] == ["--demo", f"--state.path={STATE_DIR}/state.json"]
    state = [v for v in exporter["volumes"] if v["target"] == STATE_DIR]
    assert [v["type"] for v in state] == ["volume"]


def test_compose_env_example_as_copied_keeps_the_demo() -> None:
    """Copying the example before the keys and config are in place does not leave the demo."""
    exporter = compose_config(DEPLOY / "uminfer.env.example")["services"]["uminfer-exporter"]
    assert exporter["command"] == ["--demo", f"--state.path={STATE_DIR}/state.json"]


def test_compose_env_file_switches_to_real_credentials(tmp_path: Path) -> None:
    """The example's real-API lines, uncommented, select the real config and pass exactly the
    two keys."""
    text = (DEPLOY / "uminfer.env.example").read_text(encoding="utf-8")
    env_file = tmp_path / ".env"
    env_file.write_text(re.sub(r"^# (UMINFER_(?:EXPORTER_ARGS|CONFIG)=)", r"\1", text,
                               flags=re.MULTILINE), encoding="utf-8")
    exporter = compose_config(env_file)["services"]["uminfer-exporter"]
    assert "--demo" not in exporter["command"]
    assert "--config.file=/etc/uminfer-exporter/config.yaml" in exporter["command"]
    assert exporter["environment"] == {
        "UMINFER_PUBLIC_KEY": "replace-with-your-public-key",
        "UMINFER_PRIVATE_KEY": "replace-with-your-private-key",
    }


@pytest.mark.parametrize("file", [COMPOSE, COMPOSE_HA], ids=["one", "ha"])
@pytest.mark.parametrize("env_file", ENV_FILES, ids=["default", "env-example"])
def test_compose_mounted_host_paths_exist(env_file: Path | None, file: Path) -> None:
    """Every bind-mounted host path exists (Docker would silently create an empty dir)."""
    binds = [v["source"] for s in compose_config(env_file, file)["services"].values()
             for v in s.get("volumes", []) if v["type"] == "bind"]
    assert len(binds) >= 5
    missing = [source for source in binds if not Path(source).exists()]
    assert not missing, f"mounted by deploy/{file.name} but missing: {missing}"


@pytest.mark.parametrize("file", [COMPOSE, COMPOSE_HA], ids=["one", "ha"])
def test_compose_grafana_finds_the_datasource_and_dashboard(file: Path) -> None:
    """Provisioning points at the compose Prometheus and reads where the dashboards are mounted."""
    grafana = compose_config(file=file)["services"]["grafana"]
    sources = yaml.safe_load(
        (REPO / "grafana/provisioning/datasources/prometheus.yml").read_text(encoding="utf-8"))
    assert sources["datasources"][0]["url"] == "http://prometheus:9090"
    provider = yaml.safe_load(
        (REPO / "grafana/provisioning/dashboards/uminfer.yml").read_text(encoding="utf-8"))
    path = provider["providers"][0]["options"]["path"]
    mount = next(v for v in grafana["volumes"] if v["target"] == path)
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (Path(mount["source"]) / Path(home).relative_to(path)).is_file()


@pytest.mark.parametrize(("name", "targets"), [
    ("prometheus.yml", ["uminfer-exporter:9866"]),
    ("prometheus.ha.yml", [f"{replica}:9866" for replica in REPLICAS]),
], ids=["one", "ha"])
def test_compose_prometheus_config_and_rules_are_valid(
        tmp_path: Path, name: str, targets: list[str]) -> None:
    """promtool accepts the compose prometheus.yml with the project's rules file in place;
    the two-replica one scrapes both replicas in the one job the rules expect."""
    config = yaml.safe_load((DEPLOY / name).read_text(encoding="utf-8"))
    assert config["scrape_configs"][0]["job_name"] == "uminfer"  # what rules.yml expects
    assert config["scrape_configs"][0]["static_configs"][0]["targets"] == targets
    shutil.copy(REPO / "prometheus/rules.yml", tmp_path / "rules.yml")
    config["rule_files"] = [str(tmp_path / "rules.yml")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    result = run(require_tool("promtool"), "check", "config", str(tmp_path / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_ha_runs_two_replicas_that_name_each_other() -> None:
    """Two exporter services on the real API (no --demo: each would run its own simulator),
    one config for both, a state volume each, host names the peer list knows them by."""
    services = compose_config(file=COMPOSE_HA)["services"]
    assert set(services) == {*REPLICAS, "prometheus", "grafana"}
    configs, states = set(), set()
    for replica in REPLICAS:
        exporter = services[replica]
        assert exporter["hostname"] == replica
        assert exporter["command"] == ["--config.file=/etc/uminfer-exporter/config.yaml",
                                       f"--state.path={STATE_DIR}/state.json"]
        mounts = {v["target"]: v for v in exporter["volumes"]}
        configs.add(mounts["/etc/uminfer-exporter/config.yaml"]["source"])
        assert mounts[STATE_DIR]["type"] == "volume"
        states.add(mounts[STATE_DIR]["source"])
        assert set(exporter["environment"]) == {"UMINFER_PUBLIC_KEY", "UMINFER_PRIVATE_KEY"}
    assert configs == {str(DEPLOY / "config.ha.example.yaml")}
    assert len(states) == 2
    published = {p["published"] for r in REPLICAS for p in services[r]["ports"]}
    assert len(published) == 2
    assert set(services["prometheus"]["depends_on"]) == set(REPLICAS)
    prometheus = {v["target"]: v["source"] for v in services["prometheus"]["volumes"]}
    assert prometheus["/etc/prometheus/prometheus.yml"] == str(DEPLOY / "prometheus.ha.yml")


def test_compose_ha_config_has_one_origin_and_both_replicas_as_peers() -> None:
    """The shared config parses, sets accounting.origin, and lists each replica by its
    service name on the port the exporter listens on in the container."""
    text = (DEPLOY / "config.ha.example.yaml").read_text(encoding="utf-8")
    env = {"UMINFER_PUBLIC_KEY": "pub", "UMINFER_PRIVATE_KEY": "priv"}
    config = parse_config(yaml.safe_load(text), env, str(DEPLOY))
    assert config.accounting.origin is not None
    assert config.ha.peers == tuple(f"http://{replica}:9866" for replica in REPLICAS)
    assert config.state.path == f"{STATE_DIR}/state.json"


# --- Kubernetes --------------------------------------------------------------------------------

def test_core_manifests_pass_strict_validation(tmp_path: Path) -> None:
    """kubernetes-validate --strict accepts them, and rejects a field typo (it is live)."""
    validate = tool("kubernetes-validate")
    result = run(validate, "--strict", *(str(K8S / name) for name in CORE_MANIFESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    typo = load("statefulset.yaml")
    typo["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump(typo), encoding="utf-8")
    assert run(validate, "--strict", str(tmp_path / "typo.yaml")).returncode != 0


def test_kustomization_lists_manifests_but_not_the_secret_example() -> None:
    """Every resource exists; applying it never overwrites real keys with placeholders."""
    resources = load("kustomization.yaml")["resources"]
    assert all((K8S / name).is_file() for name in resources)
    assert "secret.example.yaml" not in resources
    assert {"statefulset.yaml", "service.yaml", "servicemonitor.yaml",
            "prometheusrule.yaml", "configmap.yaml"} <= set(resources)


def test_statefulset_is_locked_down_and_wired() -> None:
    """Non-root, read-only root, no capabilities; volumes and names line up."""
    sts = load("statefulset.yaml")["spec"]
    pod = sts["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert sts["selector"]["matchLabels"].items() <= sts["template"]["metadata"]["labels"].items()
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts[sts["volumeClaimTemplates"][0]["metadata"]["name"]] == STATE_DIR
    assert f"--state.path={STATE_DIR}/state.json" in container["args"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"]["configMap"]["name"] == load("configmap.yaml")["metadata"]["name"]
    secret = load("secret.example.yaml")
    assert volumes["credentials"]["secret"]["secretName"] == secret["metadata"]["name"]
    assert sts["serviceName"] == load("service.yaml")["metadata"]["name"]


def test_configmap_config_is_valid_with_the_secret_files(tmp_path: Path) -> None:
    """The ConfigMap's config.yaml passes the exporter's own validation with the keys mounted."""
    secrets = "/etc/uminfer-exporter/secrets"
    for name, value in load("secret.example.yaml")["stringData"].items():
        (tmp_path / name).write_text(value, encoding="utf-8")
    text = load("configmap.yaml")["data"]["config.yaml"].replace(secrets, str(tmp_path))
    assert text != load("configmap.yaml")["data"]["config.yaml"]
    config = parse_config(yaml.safe_load(text), {}, str(tmp_path))
    assert config.api.private_key == "replace-with-your-private-key"
    assert config.state.path == f"{STATE_DIR}/state.json"


def test_servicemonitor_selects_the_service_and_its_port() -> None:
    """What the Prometheus Operator needs: selector ⊆ Service labels, named port, job label."""
    monitor, service = load("servicemonitor.yaml"), load("service.yaml")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    labels = service["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ports = {p["name"] for p in service["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports
    container = load("statefulset.yaml")["spec"]["template"]["spec"]["containers"][0]
    assert "metrics" in {p["name"] for p in container["ports"]}
    assert labels[monitor["spec"]["jobLabel"]] == "uminfer"  # the job rules.yml expects


def test_prometheusrule_carries_the_rules_file() -> None:
    """The PrometheusRule is exactly prometheus/rules.yml's groups (python -m mixin makes both)."""
    expected = prometheus_rule((REPO / "prometheus/rules.yml").read_text(encoding="utf-8"))
    actual = (K8S / "prometheusrule.yaml").read_text(encoding="utf-8")
    assert actual == expected, "run: python -m mixin"
    rule = load("prometheusrule.yaml")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["kind"] == "PrometheusRule"
    assert any("alert" in r for g in rule["spec"]["groups"] for r in g["rules"])


# --- Two replicas (deploy/kubernetes-ha) ---------------------------------------------------------

def ha_manifests(tmp_path: Path) -> dict[str, dict[str, Any]]:
    """The HA overlay as kustomize builds it (kubectl's own), by kind."""
    result = run(require_tool("kubectl"), "kustomize", str(DEPLOY / "kubernetes-ha"))
    assert result.returncode == 0, result.stderr
    (tmp_path / "ha.yaml").write_text(result.stdout, encoding="utf-8")
    return {doc["kind"]: doc for doc in yaml.safe_load_all(result.stdout) if doc}


def test_ha_overlay_runs_two_replicas_on_different_nodes(tmp_path: Path) -> None:
    """Strictly valid after the patches; two replicas, anti-affine by node, each its volume."""
    built = ha_manifests(tmp_path)
    core = [yaml.safe_dump(built[kind]) for kind in ("ConfigMap", "Service", "StatefulSet")]
    (tmp_path / "core.yaml").write_text("---\n".join(core), encoding="utf-8")
    result = run(tool("kubernetes-validate"), "--strict", str(tmp_path / "core.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
    sts = built["StatefulSet"]["spec"]
    assert sts["replicas"] == 2
    [term] = sts["template"]["spec"]["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"].items() <= \
        sts["template"]["metadata"]["labels"].items()
    assert sts["volumeClaimTemplates"][0]["metadata"]["name"] == "state"


def test_ha_overlay_config_names_both_pods_and_one_origin(tmp_path: Path) -> None:
    """The config parses, has an origin, and lists each pod by its headless-Service name."""
    secrets = "/etc/uminfer-exporter/secrets"
    for name, value in load("secret.example.yaml")["stringData"].items():
        (tmp_path / name).write_text(value, encoding="utf-8")
    built = ha_manifests(tmp_path)
    text = built["ConfigMap"]["data"]["config.yaml"].replace(secrets, str(tmp_path))
    config = parse_config(yaml.safe_load(text), {}, str(tmp_path))
    assert config.accounting.origin is not None
    name, service = built["StatefulSet"]["metadata"]["name"], built["Service"]["metadata"]["name"]
    port = built["Service"]["spec"]["ports"][0]["port"]
    assert config.ha.peers == tuple(f"http://{name}-{i}.{service}:{port}" for i in range(2))

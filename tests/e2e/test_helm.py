"""The Helm chart, offline: helm lint, helm template for the default, HA and sharded values,
every rendered object against the Kubernetes schemas (the Prometheus Operator's kinds against
tests/crds/), the rendered config through --config.check, and the sharded pods' own args run
as real processes against the simulator."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from exporter.core.usage import Totals
from exporter.polling.sharding import shard_of
from exporter.simulator import Event
from tests import fleet
from tests.harness import Exporter, wait_for
from tests.paths import ROOT, TESTS
from tests.tools import missing

pytestmark = pytest.mark.e2e  # starts processes

REPO = ROOT
CHART = REPO / "deploy" / "helm" / "uminfer-exporter"
CRDS = TESTS / "crds" / "monitoring.coreos.com-v1.yaml"
VALUES = {"default": None, "ha": CHART / "ci" / "ha-values.yaml",
          "shards": CHART / "ci" / "shards-values.yaml"}
OPERATOR_KINDS = ("ServiceMonitor", "PrometheusRule")
SECRETS = "/etc/uminfer-exporter/secrets"
POD_INDEX_LABEL = "metadata.labels['apps.kubernetes.io/pod-index']"


def helm_binary() -> str:
    """The helm that scripts/install-helm puts in .work/tools/ (scripts/test runs it)."""
    found = sorted((REPO / ".work" / "tools").glob("kubectl-layer-*/helm"))
    if not found:
        missing("helm is not installed: run scripts/install-helm (scripts/test does)")
    return str(found[-1])


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    """Run helm; never raises, the test asserts on the outcome."""
    return subprocess.run([helm_binary(), *args], capture_output=True, text=True, timeout=60,
                          check=False, cwd=REPO)


def template(values: Path | None, *sets: str) -> list[dict[str, Any]]:
    """``helm template`` of the chart as release "uminfer": the objects it renders."""
    extra = ["-f", str(values)] if values else []
    for item in sets:
        extra += ["--set", item]
    result = helm("template", "uminfer", str(CHART), *extra)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@cache
def rendered(case: str) -> tuple[dict[str, Any], ...]:
    """The objects of one values case, rendered once per test session."""
    return tuple(template(VALUES[case]))


def of_kind(objects: tuple[dict[str, Any], ...] | list[dict[str, Any]],
            kind: str) -> list[dict[str, Any]]:
    """The objects of ``kind``, in rendering order."""
    return [o for o in objects if o["kind"] == kind]


def crd_validator(kind: str) -> jsonschema.protocols.Validator:
    """A strict validator for a Prometheus Operator kind (tests/crds/)."""
    schemas = yaml.safe_load(CRDS.read_text(encoding="utf-8"))
    schema = {**schemas[kind], "$defs": schemas["$defs"]}
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


def crd_errors(obj: dict[str, Any]) -> list[str]:
    """Why ``obj`` does not fit its kind's schema (empty when it does)."""
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in crd_validator(obj["kind"]).iter_errors(obj)]


def kubernetes_validate(objects: list[dict[str, Any]], tmp_path: Path
                        ) -> subprocess.CompletedProcess[str]:
    """kubernetes-validate --strict over ``objects`` (core kinds only)."""
    path = tmp_path / "objects.yaml"
    path.write_text(yaml.safe_dump_all(objects), encoding="utf-8")
    validate = Path(sys.executable).parent / "kubernetes-validate"
    return subprocess.run([str(validate), "--strict", str(path)], capture_output=True,
                          text=True, timeout=120, check=False)


# --- lint and schemas ---------------------------------------------------------------------------

@pytest.mark.parametrize("case", VALUES)
def test_helm_lint_is_clean(case: str) -> None:
    values = VALUES[case]
    result = helm("lint", "--strict", str(CHART), *(["-f", str(values)] if values else []))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("case", VALUES)
def test_every_rendered_object_passes_its_schema(case: str, tmp_path: Path) -> None:
    """Core kinds through kubernetes-validate --strict, the operator's through tests/crds/."""
    objects = list(rendered(case))
    core = [o for o in objects if o["kind"] not in OPERATOR_KINDS]
    result = kubernetes_validate(core, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    for obj in objects:
        if obj["kind"] in OPERATOR_KINDS:
            assert crd_errors(obj) == [], obj["kind"]
    expected = {"default": {"ConfigMap", "Service", "StatefulSet"},
                "ha": {"ConfigMap", "Service", "StatefulSet", *OPERATOR_KINDS}}
    assert {o["kind"] for o in objects} == expected.get(case, expected["ha"])


def test_the_validators_are_live(tmp_path: Path) -> None:
    """A misplaced field fails both the core and the operator schemas."""
    objects = [dict(o) for o in rendered("ha")]
    sts = of_kind(objects, "StatefulSet")[0]
    sts["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    assert kubernetes_validate([sts], tmp_path).returncode != 0
    monitor = yaml.safe_load(yaml.safe_dump(of_kind(objects, "ServiceMonitor")[0]))
    monitor["spec"]["endpoints"][0]["intervall"] = "30s"
    assert crd_errors(monitor) != []
    rule = yaml.safe_load(yaml.safe_dump(of_kind(objects, "PrometheusRule")[0]))
    rule["spec"]["groups"][0]["rules"][0]["alert"] = "Both"
    assert crd_errors(rule) != []


def test_kustomize_manifests_pass_the_same_schemas(tmp_path: Path) -> None:
    """deploy/kubernetes and deploy/kubernetes-ha, as kubectl kustomize builds them."""
    kubectl = str(Path(helm_binary()).parent / "kubectl")
    for overlay in ("kubernetes", "kubernetes-ha"):
        result = subprocess.run([kubectl, "kustomize", str(REPO / "deploy" / overlay)],
                                capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        objects = [o for o in yaml.safe_load_all(result.stdout) if o]
        assert {o["kind"] for o in objects} >= set(OPERATOR_KINDS)
        core = [o for o in objects if o["kind"] not in OPERATOR_KINDS]
        checked = kubernetes_validate(core, tmp_path)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        for obj in objects:
            if obj["kind"] in OPERATOR_KINDS:
                assert crd_errors(obj) == [], (overlay, obj["kind"])


# --- what the objects say ---------------------------------------------------------------------

def config_text(objects: tuple[dict[str, Any], ...]) -> str:
    """The config.yaml of the rendered ConfigMap."""
    [config_map] = [o for o in of_kind(objects, "ConfigMap") if "config.yaml" in o["data"]]
    text: str = config_map["data"]["config.yaml"]
    return text


def secret_files(directory: Path) -> dict[str, str]:
    """The two key files the Secret mounts, written into ``directory``."""
    keys = {"public_key": fleet.PUBLIC, "private_key": fleet.PRIVATE}
    for name, value in keys.items():
        (directory / name).write_text(value, encoding="utf-8")
    return keys


@pytest.mark.parametrize("case", VALUES)
def test_rendered_config_passes_config_check(case: str, tmp_path: Path) -> None:
    """The exporter's own --config.check accepts it, with the keys where the Secret mounts them
    and POD_INDEX as the pod's downward API sets it."""
    secret_files(tmp_path)
    text = config_text(rendered(case))
    assert SECRETS in text
    path = tmp_path / "config.yaml"
    path.write_text(text.replace(SECRETS, str(tmp_path)), encoding="utf-8")
    env = {**os.environ, "POD_INDEX": "1"}
    result = subprocess.run([sys.executable, "-m", "exporter", f"--config.file={path}",
                             "--config.check"], capture_output=True, text=True, timeout=60,
                            check=False, env=env)
    assert result.returncode == 0, result.stdout + result.stderr


def containers(sts: dict[str, Any]) -> dict[str, Any]:
    """The exporter container of a StatefulSet."""
    container: dict[str, Any] = sts["spec"]["template"]["spec"]["containers"][0]
    return container


def test_default_is_one_pod_without_shard_or_peers() -> None:
    objects = rendered("default")
    [sts] = of_kind(objects, "StatefulSet")
    assert sts["spec"]["replicas"] == 1
    assert not any(a.startswith("--shard") for a in containers(sts)["args"])
    config = yaml.safe_load(config_text(objects))
    assert "ha" not in config
    assert "accounting" not in config
    pod = sts["spec"]["template"]["spec"]
    assert "affinity" not in pod
    assert pod["securityContext"]["runAsUser"] == 65532  # the image's USER
    assert containers(sts)["securityContext"]["readOnlyRootFilesystem"] is True
    [claim] = sts["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in containers(sts)["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == "/var/lib/uminfer-exporter"


def test_each_pod_takes_its_shard_from_the_pod_index_label() -> None:
    """--shard=$(POD_INDEX)/N, POD_INDEX from the downward API; N pods in each of two sets."""
    objects = rendered("shards")
    sets = of_kind(objects, "StatefulSet")
    assert [s["metadata"]["name"] for s in sets] == ["uminfer-uminfer-exporter",
                                                    "uminfer-uminfer-exporter-b"]
    for sts in sets:
        assert sts["spec"]["replicas"] == 3
        container = containers(sts)
        assert "--shard=$(POD_INDEX)/3" in container["args"]
        [env] = [e for e in container["env"] if e["name"] == "POD_INDEX"]
        assert env["valueFrom"]["fieldRef"]["fieldPath"] == POD_INDEX_LABEL
        # Kubernetes expands $(VAR) only for variables defined before the use or in env.
        assert container["args"][-1] == "--web.max-connections=256"
        assert {"name": "TZ", "value": "UTC"} in container["env"]


def test_pairs_are_anti_affine_and_name_each_other() -> None:
    """Pod i of one set peers with pod i of the other, never on its node."""
    objects = rendered("shards")
    sets = of_kind(objects, "StatefulSet")
    replicas = []
    for sts in sets:
        labels = sts["spec"]["template"]["metadata"]["labels"]
        replicas.append(labels["uminfer-exporter/replica"])
        [term] = sts["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"]
        other = term["labelSelector"]["matchLabels"]
        assert other["uminfer-exporter/replica"] != labels["uminfer-exporter/replica"]
        assert term["topologyKey"] == "kubernetes.io/hostname"
    assert replicas == ["a", "b"]
    [service] = of_kind(objects, "Service")
    config = yaml.safe_load(config_text(objects))
    assert config["accounting"]["origin"] == "2025-01-01T00:00:00Z"
    port = service["spec"]["ports"][0]["port"]
    name = service["metadata"]["name"]
    assert all(s["spec"]["serviceName"] == name for s in sets)
    assert config["ha"]["peers"] == [f"http://{s['metadata']['name']}-${{POD_INDEX}}.{name}:{port}"
                                     for s in sets]


def test_two_replicas_without_an_origin_are_refused() -> None:
    result = helm("template", "uminfer", str(CHART), "--set", "replicas=2")
    assert result.returncode != 0
    assert "replicas: 2 needs accounting.origin" in result.stderr
    # The origin may also be in the config itself.
    objects = template(None, "replicas=2", "config.accounting.origin=2025-01-01T00:00:00Z")
    assert yaml.safe_load(config_text(tuple(objects)))["accounting"] == {
        "origin": "2025-01-01T00:00:00Z"}


@pytest.mark.parametrize("setting", ["replicas=3", "shards=0", "credentials.existingSecret="])
def test_impossible_values_are_refused(setting: str) -> None:
    assert helm("template", "uminfer", str(CHART), "--set", setting).returncode != 0


def test_existing_configmap_replaces_the_chart_config() -> None:
    objects = template(None, "existingConfigMap=mine")
    assert of_kind(objects, "ConfigMap") == []
    [sts] = of_kind(objects, "StatefulSet")
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == "mine"


def test_web_config_and_probe_certificates_reach_the_pod() -> None:
    objects = template(None, "web.configSecret=web",
                       "web.probeClientCert=/etc/uminfer-exporter/web/probe.crt",
                       "web.probeClientKey=/etc/uminfer-exporter/web/probe.key")
    [sts] = of_kind(objects, "StatefulSet")
    container = containers(sts)
    assert "--web.config.file=/etc/uminfer-exporter/web/web-config.yml" in container["args"]
    probe = container["readinessProbe"]["exec"]["command"]
    assert probe[:3] == ["python", "-m", "exporter.probe"]
    assert "--tls.client-cert=/etc/uminfer-exporter/web/probe.crt" in probe
    assert probe[-1] == "/-/ready"
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert volumes["web"]["secret"]["secretName"] == "web"


def test_servicemonitor_selects_the_service_and_names_the_job() -> None:
    objects = rendered("shards")
    [monitor] = of_kind(objects, "ServiceMonitor")
    [service] = of_kind(objects, "Service")
    labels = service["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert labels[monitor["spec"]["jobLabel"]] == "llm-usage"
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]


def test_rules_and_dashboard_are_the_generated_ones_for_the_job() -> None:
    """The PrometheusRule carries prometheus/rules.yml (job="uminfer" by default, the chart's
    job otherwise), the dashboard ConfigMap the committed dashboard, labelled for the sidecar."""
    rules = yaml.safe_load((REPO / "prometheus" / "rules.yml").read_text(encoding="utf-8"))
    [rule] = of_kind(rendered("ha"), "PrometheusRule")
    assert rule["spec"]["groups"] == rules["groups"]
    dashboard_text = (REPO / "grafana" / "dashboards" / "uminfer.json").read_text()
    [board] = [o for o in of_kind(rendered("ha"), "ConfigMap") if "uminfer.json" in o["data"]]
    assert board["data"]["uminfer.json"] == dashboard_text
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    objects = rendered("shards")
    [renamed] = of_kind(objects, "PrometheusRule")
    text = yaml.safe_dump(renamed["spec"])
    assert 'job="uminfer"' not in text
    assert text.count('job="llm-usage"') == yaml.safe_dump(rules).count('job="uminfer"') > 0
    [board] = [o for o in of_kind(objects, "ConfigMap") if "uminfer.json" in o["data"]]
    assert board["metadata"]["labels"]["grafana_dashboard_uminfer"] == "yes"
    assert 'job=\\"llm-usage\\"' in board["data"]["uminfer.json"]
    assert 'job=\\"uminfer\\"' not in board["data"]["uminfer.json"]


# --- the sharded pods, as real processes --------------------------------------------------------

KEYS = [f"uminferapikey-{i:02d}" for i in range(12)]


def pod_command(sts: dict[str, Any], index: int, state: Path) -> list[str]:
    """The container's args for pod ``index``, with $(POD_INDEX) expanded as Kubernetes does
    and the paths of the pod's volumes moved into the test's directory; the harness sets
    --config.file, --web.listen-address and --log.level itself."""
    container = containers(sts)
    assert any(e["name"] == "POD_INDEX" for e in container["env"])
    own = ("--config.file=", "--web.listen-address=", "--log.level=")
    args = [a.replace("$(POD_INDEX)", str(index)) for a in container["args"]
            if not a.startswith(own)]
    return [a.replace("/var/lib/uminfer-exporter", str(state)) for a in args]


@pytest.mark.e2e
def test_sharded_pods_count_every_target_once(tmp_path: Path) -> None:
    """One process per rendered shard index (shards: 3, one replica): each target is exported
    by exactly one of them, with counters equal to the usage the simulator holds."""
    objects = template(None, "shards=3")
    [sts] = of_kind(objects, "StatefulSet")
    chart_config = yaml.safe_load(config_text(tuple(objects)))
    with fleet.simulator() as sim, ExitStack() as stack:
        # The chart's config with the simulator's endpoint and the fleet's targets; the keys
        # are read from files where the Secret would be mounted.
        secret_files(tmp_path)
        config = fleet.fleet_config(sim.url, KEYS)
        config["api"] = {**config["api"], **{
            name: value.replace(SECRETS, str(tmp_path))
            for name, value in chart_config["api"].items() if name.endswith("_file")}}
        del config["api"]["public_key"], config["api"]["private_key"]
        pods = []
        for index in range(sts["spec"]["replicas"]):
            workdir = tmp_path / f"pod-{index}"
            (workdir / "state").mkdir(parents=True)
            pods.append(stack.enter_context(fleet.exporter(
                workdir, config, *pod_command(sts, index, workdir / "state"))))
        truth = {key: Totals(10 * i + 1, i + 2, 11 * i + 3, 1, 0) for i, key in enumerate(KEYS)}
        for key, totals in truth.items():
            fleet.add_usage(sim, key, totals)

        def exported() -> dict[str, list[Totals]]:
            found: dict[str, list[Totals]] = {key: [] for key in KEYS}
            for pod in pods:
                samples = pod.metrics()
                for key in KEYS:
                    counted = fleet.counters(samples, key)
                    if counted is not None:
                        found[key].append(counted)
            return found

        wait_for(lambda: all(v == [truth[k]] for k, v in exported().items()), 30,
                 lambda: f"per target, what the pods export: {exported()}")
        shares = [sum(1 for k in KEYS if fleet.counters(p.metrics(), k))
                  for p in pods]
        assert sum(shares) == len(KEYS)
        assert all(share > 0 for share in shares), shares




def start_pods(stack: ExitStack, objects: list[dict[str, Any]], config: dict[str, Any],
               tmp_path: Path) -> list[Exporter]:
    """One exporter per pod of the rendered StatefulSet, each with its state directory
    (pod-I/state, kept across calls as a pod's volume is), started and ready."""
    [sts] = of_kind(objects, "StatefulSet")
    pods = []
    for index in range(sts["spec"]["replicas"]):
        workdir = tmp_path / f"pod-{index}"
        (workdir / "state").mkdir(parents=True, exist_ok=True)
        pods.append(stack.enter_context(fleet.exporter(
            workdir, config, *pod_command(sts, index, workdir / "state"))))
    return pods


def owners(pods: list[Exporter], keys: list[str]) -> dict[str, list[tuple[int, Totals]]]:
    """For each key, the pods that export its counters, with them."""
    found: dict[str, list[tuple[int, Totals]]] = {key: [] for key in keys}
    for index, pod in enumerate(pods):
        samples = pod.metrics()
        for key in keys:
            counted = fleet.counters(samples, key)
            if counted is not None:
                found[key].append((index, counted))
    return found


@pytest.mark.e2e
def test_resharding_with_an_origin_keeps_every_count(tmp_path: Path) -> None:
    """docs/deployment.md's resharding: 2 shards, then the same pods' volumes as 3 shards with
    the chart's accounting.origin. Each target moved to another pod catches up from the origin
    there, so every target is again exported once, with exactly the usage since the origin."""
    keys = KEYS[:8]
    moved = [k for k in keys
             if shard_of(f"{fleet.PROJECT}/{k}/{fleet.MODEL}", 2)
             != shard_of(f"{fleet.PROJECT}/{k}/{fleet.MODEL}", 3)]
    assert moved, "the test needs targets that change shards"
    now = int(time.time())
    origin = now // 60 * 60 - 180
    stamp = datetime.fromtimestamp(origin, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    use = Totals(4, 3, 7, 1, 0)
    with fleet.simulator() as sim:
        for ts in range(origin - 600, now, 5):  # history across the origin, in 1 s buckets
            sim.store.add_many(Event(ts, ts, fleet.PROJECT, key, fleet.MODEL,
                                     fleet.sim_usage(use)) for key in keys)

        def config(objects: list[dict[str, Any]]) -> dict[str, Any]:
            chart_config = yaml.safe_load(config_text(tuple(objects)))
            assert chart_config["accounting"] == {"origin": stamp}
            return {**fleet.fleet_config(sim.url, keys, poll={
                "interval": "1s", "settle": "5s", "test_period": "10s"}),
                "accounting": chart_config["accounting"]}

        def exact(pods: list[Exporter]) -> dict[str, list[tuple[int, Totals]]]:
            end = int(time.time()) + 1
            return {k: [(i, fleet.as_totals(sim.store.truth(fleet.PROJECT, k, fleet.MODEL,
                                                            origin, end)))]
                    for k, [(i, _)] in owners(pods, keys).items()}

        def run(shards: int) -> dict[str, int]:
            """Every pod of ``shards`` run until each key is counted once, exactly; which pod
            counted each (the pods are stopped cleanly, keeping their volumes)."""
            rendered = template(None, f"shards={shards}", f"accounting.origin={stamp}")
            with ExitStack() as stack:
                pods = start_pods(stack, rendered, config(rendered), tmp_path)
                for key in keys:
                    fleet.add_usage(sim, key, use)
                wait_for(lambda: all(len(v) == 1 for v in owners(pods, keys).values())
                         and owners(pods, keys) == exact(pods), 60,
                         lambda: f"{shards} shards: {owners(pods, keys)}")
                counted = {k: v[0][0] for k, v in owners(pods, keys).items()}
                for pod in pods:
                    assert pod.stop() == 0
            return counted

        first, second = run(2), run(3)
    assert [k for k in keys if first[k] != second[k]] == moved


# Values documented as a whole (their inner keys are Kubernetes' or the exporter's own).
WHOLE = {"config", "resources", "podSecurityContext", "securityContext", "livenessProbe",
         "readinessProbe"}


def value_paths(values: dict[str, Any], prefix: str = "") -> list[str]:
    """Every value's dotted path, down to the leaves or a value documented as a whole."""
    paths = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and path not in WHOLE:
            paths += value_paths(value, f"{path}.")
        else:
            paths.append(path)
    return paths


def test_readme_documents_every_value_and_no_other() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    readme = (CHART / "README.md").read_text(encoding="utf-8")
    documented = re.findall(r"^\| `([\w.]+)` \|", readme, re.MULTILINE)
    assert documented == value_paths(values)

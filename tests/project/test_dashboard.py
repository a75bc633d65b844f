"""The Grafana dashboard: generated from Grafana 11's types, and every query answers on --demo."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from mixin.config import MixinConfig
from mixin.dashboard import render as dashboard_render
from tests.harness import Exporter
from tests.paths import ROOT
from tests.prom import Prometheus, PromQueryError
from tests.replicas import undeduplicated

DASHBOARD = ROOT / "grafana" / "dashboards" / "uminfer.json"
RULES = ROOT / "prometheus" / "rules.yml"
GRAFANA_11_SCHEMA = range(39, 42)  # 11.0 ... 11.6
# What Grafana puts in for its built-in variables, at a scale that suits a 1 s scrape.
BUILTINS = {"__rate_interval": "1m", "__range": "5m", "__interval": "15s"}
LABEL_VALUES = re.compile(r"^label_values\((?:(?P<match>.+),\s*)?(?P<label>\w+)\)$")
LABEL_NAMES = re.compile(r"^label_names\((?P<match>.*)\)$")
# Single-value variables whose value names a label: what the test picks (--demo's static label).
CHOSEN = {"group": "team"}


def dashboard() -> dict[str, Any]:
    """The committed dashboard JSON."""
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel that is not a row."""
    return [p for p in board["panels"] if p["type"] != "row"]


def variables(board: dict[str, Any]) -> list[dict[str, Any]]:
    """The dashboard's template variables."""
    found: list[dict[str, Any]] = board["templating"]["list"]
    return found


def substitute(expr: str, names: set[str]) -> str:
    """``expr`` as Grafana sends it with "All" selected; unknown variables raise KeyError."""
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name in BUILTINS:
            return BUILTINS[name]
        if name not in names:
            raise KeyError(f"the dashboard uses ${name}, which it does not define")
        return CHOSEN.get(name, ".*")  # the other variables are multi-value, "All" = .*
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def dropped_or_changed(ours: Any, decoded: Any, path: str = "") -> list[str]:
    """Where Grafana's types lost or altered what we wrote (added defaults are fine)."""
    if isinstance(ours, dict) and isinstance(decoded, dict):
        return [problem for key, value in ours.items()
                for problem in (dropped_or_changed(value, decoded[key], f"{path}/{key}")
                                if key in decoded else [f"{path}/{key} dropped"])]
    if isinstance(ours, list) and isinstance(decoded, list) and len(ours) == len(decoded):
        return [problem for i, (a, b) in enumerate(zip(ours, decoded, strict=True))
                for problem in dropped_or_changed(a, b, f"{path}[{i}]")]
    return [] if ours == decoded else [f"{path}: {ours!r} became {decoded!r}"]


@pytest.mark.e2e
def test_committed_dashboard_is_what_the_generator_makes() -> None:
    result = subprocess.run([sys.executable, "-m", "mixin", "--check"], capture_output=True,
                            text=True, timeout=60, check=False, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert DASHBOARD.read_text() == dashboard_render(MixinConfig())


def test_dashboard_decodes_into_grafana_11_types_without_loss() -> None:
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.cog.plugins import register_default_plugins
    from grafana_foundation_sdk.models.dashboard import Dashboard

    register_default_plugins()  # panel options and Prometheus queries decode to their types
    ours = dashboard()
    decoded = json.loads(json.dumps(Dashboard.from_json(ours), cls=JSONEncoder))
    assert dropped_or_changed(ours, decoded) == []


def test_dashboard_identity_and_variables() -> None:
    board = dashboard()
    assert board["uid"] == "uminfer-exporter"
    assert board["schemaVersion"] in GRAFANA_11_SCHEMA
    by_name = {v["name"]: v for v in variables(board)}
    assert by_name["datasource"]["type"] == "datasource"
    assert by_name["datasource"]["query"] == "prometheus"
    for name in ("project_id", "key_id", "model"):
        assert by_name[name]["type"] == "query"
        assert LABEL_VALUES.match(by_name[name]["query"])["label"] == name  # type: ignore[index]


def test_every_panel_and_query_uses_the_datasource_variable() -> None:
    board = dashboard()
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels(board):
        assert panel["targets"], panel["title"]
        refs = [panel["datasource"], *(t["datasource"] for t in panel["targets"])]
        assert all(ref == {"type": "prometheus", "uid": "${datasource}"} for ref in refs)
        assert 0 <= panel["gridPos"]["x"] < panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24


def test_panels_do_not_overlap() -> None:
    cells: set[tuple[int, int]] = set()
    for panel in dashboard()["panels"]:
        pos = panel["gridPos"]
        mine = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"])
                for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not cells & mine, panel["title"]
        cells |= mine


def test_substitution_rejects_unknown_variables() -> None:
    assert substitute('rate(x{a=~"$key_id"}[$__rate_interval])', {"key_id"}) == \
        'rate(x{a=~".*"}[1m])'
    with pytest.raises(KeyError):
        substitute('x{a=~"${typo}"}', {"key_id"})


@pytest.fixture(scope="module")
def demo_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """The exporter on --demo, scraped every second by a real Prometheus that loads rules.yml."""
    workdir = tmp_path_factory.mktemp("dashboard")
    with Exporter(workdir, None, "--demo") as exporter:
        exporter.wait_ready()
        with Prometheus(workdir, [f"127.0.0.1:{exporter.port}"], [RULES]) as prometheus:
            yield prometheus


def run_query(prometheus: Prometheus, kind: str, expr: str) -> list[Any]:
    """Run one dashboard query the way Grafana would; the result rows."""
    if kind == "variable":
        names = LABEL_NAMES.match(expr)
        if names:
            return list(prometheus.api("labels", **{"match[]": names["match"]}))
        found = LABEL_VALUES.match(expr)
        assert found, f"not a label_values() or label_names() query: {expr}"
        return prometheus.label_values(found["label"], found["match"])
    return prometheus.query(expr) if kind == "instant" else prometheus.query_range(expr, 60)


def dashboard_queries(board: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(where, kind, substituted PromQL) for every panel target and query variable."""
    names = {v["name"] for v in variables(board)}
    found = [(f"variable {v['name']}", "variable", substitute(v["query"], names))
             for v in variables(board) if v["type"] == "query"]
    for panel in panels(board):
        for target in panel["targets"]:
            kind = "instant" if target.get("instant") else "range"
            found.append((f"panel {panel['title']!r} {target['refId']}", kind,
                          substitute(target["expr"], names)))
    return found


@pytest.mark.e2e
def test_every_dashboard_query_returns_data_on_demo(demo_prometheus: Prometheus) -> None:
    board = dashboard()
    pending = dashboard_queries(board)
    total = len(pending)
    deadline = time.monotonic() + 45  # rate() needs two scrapes; the windows a first read
    while pending and time.monotonic() < deadline:
        try:
            pending = [q for q in pending if not run_query(demo_prometheus, q[1], q[2])]
        except PromQueryError as exc:
            pytest.fail(f"a dashboard query is invalid: {exc}")
        time.sleep(0.5 if pending else 0)
    assert [f"{where}: {expr}" for where, _, expr in pending] == [], "queries with no data"
    print(f"\ndashboard: {len(panels(board))} panels, {total} queries exercised")
    assert total > len(panels(board))


@pytest.mark.e2e
def test_rules_load_and_record_on_demo(demo_prometheus: Prometheus) -> None:
    groups = demo_prometheus.api("rules")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert {group["file"] for group in groups} == {str(RULES)}
    recorded = [r["name"] for r in rules if r["type"] == "recording"
                and "budget" not in r["name"]]  # budgets exist only once the operator sets them
    assert recorded
    for name in recorded:
        # A subquery's steps fall on whole minutes (the pace rules): its first value may need
        # the next minute after two scrapes, plus an evaluation.
        demo_prometheus.wait_query(name, 90)
    unhealthy = [(r["name"], r.get("lastError")) for r in rules if r["health"] == "err"]
    assert unhealthy == []


RECORDED = re.compile(r"(?<![\w:])(\w+:uminfer_\w+:\w+)")


def test_no_query_adds_up_replicas() -> None:
    """With two replicas scraping the same targets (ha.peers), every usage, cost, budget,
    window and key series is taken once per series (max across replicas) before any sum,
    count or topk; a recorded series it reads must be built the same way in rules.yml."""
    board = dashboard()
    rules = {rule["record"]: rule["expr"] for group in yaml.safe_load(RULES.read_text())["groups"]
             for rule in group["rules"] if "record" in rule}
    problems = [f"{where}: {problem}" for where, kind, expr in dashboard_queries(board)
                if kind != "variable"  # label values are a set: replicas cannot double them
                for problem in undeduplicated(expr)]
    problems += [f"{where}: {name} (rules.yml): {problem}"
                 for where, kind, expr in dashboard_queries(board) if kind != "variable"
                 for name in RECORDED.findall(expr) for problem in undeduplicated(rules[name])]
    assert problems == []


@pytest.mark.parametrize(("expr", "problems"), [
    ("sum(increase(uminfer_tokens_total[5m]))",
     ["uminfer_tokens_total: sum across replicas before deduplicating"]),
    ("sum(max without (instance, pod) (increase(uminfer_tokens_total[5m])))", []),
    ("topk(5, sum by (model) (max without (pod, instance) (rate(uminfer_cost_total[1m]))))", []),
    ("max by (budget) (uminfer_budget_used) / max by (budget) (uminfer_budget_limit)", []),
    ("max by (instance, budget) (uminfer_budget_used)",
     ["uminfer_budget_used: max across replicas before deduplicating"]),
    ("max without (instance) (uminfer_window_tokens)",
     ["uminfer_window_tokens: max across replicas before deduplicating"]),
    ("sum(max(uminfer_up) by (key_id))", []),
    ("count(uminfer_up)", ["uminfer_up: count across replicas before deduplicating"]),
    ("uminfer_up == 0", ["uminfer_up: shown per replica (no max/min across replicas)"]),
    ('sum(rate(uminfer_api_requests_total{retcode=~"(uminfer_up)"}[1m]))', []),
    ("sum(target:uminfer_tokens_total:max)", []),
])
def test_the_replica_check_sees_sums_across_replicas(expr: str, problems: list[str]) -> None:
    assert undeduplicated(expr) == problems


def panel(board: dict[str, Any], title: str) -> dict[str, Any]:
    """The panel called ``title``."""
    found = [p for p in panels(board) if p["title"] == title]
    assert len(found) == 1, title
    return found[0]


def units(p: dict[str, Any]) -> dict[str, str]:
    """The panel's unit ("default") and each currency override's, by matcher pattern."""
    found = {"default": p["fieldConfig"]["defaults"].get("unit", "")}
    for override in p["fieldConfig"]["overrides"]:
        for prop in override["properties"]:
            if prop["id"] == "unit":
                found[override["matcher"]["options"]] = prop["value"]
    return found


def test_cost_panels_are_in_each_series_currency() -> None:
    board = dashboard()
    # The reconciliation panel is not one: it sets the exporter's cost (all currencies) beside
    # the cloud's spend, both in the account's currency.
    cost = [p for p in panels(board)
            if any("uminfer_cost_total" in t["expr"] or "uminfer_window_cost" in t["expr"]
                   for t in p["targets"]) and p["type"] != "table"
            and not any("uminfer_key_used_amount" in t["expr"] for t in p["targets"])]
    assert len(cost) >= 4
    for p in cost:
        shown = units(p)
        assert shown["default"] != "short", p["title"]
        assert shown["/(^|\\s)USD$/"] == "currencyUSD", p["title"]
        assert shown["/(^|\\s)CNY$/"] == "currency:¥", p["title"]
        assert all(t["legendFormat"].endswith("{{currency}}") for t in p["targets"]), p["title"]
    usd = re.compile("(^|\\s)USD$")  # as Grafana reads /.../: a search, not a full match
    assert usd.search("USD") and usd.search("deepseek-ai/DeepSeek-V3 USD")
    assert not usd.search("USDT") and not usd.search("xUSD")


def test_token_and_money_budgets_are_on_separate_axes() -> None:
    board = dashboard()
    tokens = panel(board, "Token budgets: use vs limit")
    money = panel(board, "Money budgets: use vs limit")
    assert all('unit="tokens"' in t["expr"] for t in tokens["targets"])
    assert all('unit!="tokens"' in t["expr"] for t in money["targets"])
    assert units(tokens) == {"default": "short"}
    assert units(money)["/(^|\\s)USD$/"] == "currencyUSD"
    assert all(t["legendFormat"].endswith("{{unit}}") for t in money["targets"])


def test_breakdown_by_the_targets_static_labels() -> None:
    board = dashboard()
    group = {v["name"]: v for v in variables(board)}["group"]
    assert LABEL_NAMES.match(group["query"])
    assert not group.get("multi") and not group.get("includeAll")
    pattern = re.compile(group["regex"].strip("/"))
    assert [name for name in ("team", "env", "account", "project_id", "key_id", "model",
                              "instance", "job", "key_name", "__name__")
            if pattern.fullmatch(name)] == ["team", "env", "account"]
    for title in ("Spend by $group (selected range)", "Tokens by $group"):
        assert all("by ($group" in t["expr"] for t in panel(board, title)["targets"])


def test_who_is_spiking_names_key_and_model() -> None:
    expr = panel(dashboard(), "Who is spiking (15m rate / 1d rate)")["targets"][0]["expr"]
    assert expr.count("sum by (project_id, key_id, model)") == 2


def test_rate_limit_zero_reads_unlimited() -> None:
    p = panel(dashboard(), "API rate limit")
    assert p["type"] == "stat"
    assert p["fieldConfig"]["defaults"]["mappings"] == [
        {"type": "value", "options": {"0": {"text": "unlimited", "color": "green"}}}]


@pytest.mark.e2e
def test_breakdown_variable_offers_only_static_labels_on_demo(
        demo_prometheus: Prometheus) -> None:
    group = {v["name"]: v for v in variables(dashboard())}["group"]
    names = substitute(group["query"], {v["name"] for v in variables(dashboard())})
    found = run_query(demo_prometheus, "variable", names)
    pattern = re.compile(group["regex"].strip("/"))
    assert [name for name in found if pattern.fullmatch(name)] == ["team"]

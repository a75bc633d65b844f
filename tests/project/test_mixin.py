"""The mixin: every shipped rule and dashboard file is what it renders, its inputs (selector,
thresholds, runbook URL) reach every rule and query, and the promtool unit tests pass on the
rules rendered for another selector too."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mixin import dashboard
from mixin.__main__ import main, outputs
from mixin.config import MixinConfig, Thresholds, with_thresholds
from mixin.promql import UNSCOPED, scoped
from mixin.rules import SOURCE, render_rules
from tests.paths import ROOT
from tests.tools import require_tool

REPO = ROOT
RULES_TEST = REPO / "prometheus" / "rules_test.yml"
OTHER = 'job="llm-usage"'
# A raw series in PromQL: a uminfer_ name that is no recording rule's and not in a string.
SERIES = re.compile(r'(?<![\w:"])(uminfer_[A-Za-z0-9_]*)(?![\w:(])(\{[^}]*\})?')


def alerts(rules_text: str) -> list[dict[str, Any]]:
    """Every alerting rule of a rendered rule file."""
    return [rule for group in yaml.safe_load(rules_text)["groups"] for rule in group["rules"]
            if "alert" in rule]


def expressions(config: MixinConfig) -> list[str]:
    """Every PromQL expression the mixin renders: rules, panel queries, variable queries."""
    rules = yaml.safe_load(render_rules(config))
    found = [str(rule["expr"]) for group in rules["groups"] for rule in group["rules"]]
    board = dashboard.build(config)
    found += [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    found += [v["query"] for v in board["templating"]["list"] if v["type"] == "query"]
    return found


def unscoped(expr: str, selector: str) -> list[str]:
    """The series ``expr`` reads without ``selector`` among its matchers."""
    return [m.group(0) for m in SERIES.finditer(expr)
            if m.group(1) not in UNSCOPED and selector not in (m.group(2) or "")]


def test_every_committed_output_is_what_the_mixin_renders() -> None:
    stale = [str(path) for path, text in outputs(MixinConfig()).items()
             if (REPO / path).read_text(encoding="utf-8") != text]
    assert stale == [], "run: python -m mixin"


def test_check_flag_reports_a_stale_file(tmp_path: Path) -> None:
    assert main(["--out", str(tmp_path)]) == 0
    assert main(["--out", str(tmp_path), "--check"]) == 0
    stale = tmp_path / "prometheus" / "rules.yml"
    stale.write_text(stale.read_text() + "# edited by hand\n")
    assert main(["--out", str(tmp_path), "--check"]) == 1


@pytest.mark.parametrize("selector", ['job="uminfer"', OTHER, 'job=~"uminfer|llm", env="prod"'])
def test_every_series_read_carries_the_selector(selector: str) -> None:
    config = MixinConfig(selector=selector)
    missing = {expr: found for expr in expressions(config)
               if (found := unscoped(expr, selector))}
    assert missing == {}
    assert sum(expr.count(selector) for expr in expressions(config)) > 100


def test_the_selector_check_is_live() -> None:
    assert unscoped("rate(uminfer_tokens_total[5m])", OTHER) == ["uminfer_tokens_total"]
    assert unscoped(scoped("rate(uminfer_tokens_total[5m])", OTHER), OTHER) == []
    assert scoped('x:uminfer_tokens:rate5m + uminfer_up{model="m"}', OTHER) == \
        'x:uminfer_tokens:rate5m + uminfer_up{job="llm-usage", model="m"}'


def test_only_the_selector_and_runbooks_differ_between_selectors() -> None:
    """Rendering for another selector changes nothing else (the rules stay one source)."""
    default, other = render_rules(MixinConfig()), render_rules(MixinConfig(selector=OTHER))
    assert other.replace(OTHER, 'job="uminfer"') == default


def test_thresholds_reach_expressions_and_annotations() -> None:
    config = with_thresholds(MixinConfig(), ["token_spike_factor=4", "exporter_down_for=10m",
                                             "key_spend_drift_tolerance=0.35"])
    by_name = {rule["alert"]: rule for rule in alerts(render_rules(config))}
    spike = by_name["UminferTokenSpike"]
    assert "> 4 * project_id_key_id:uminfer_tokens:rate1d" in spike["expr"]
    assert spike["annotations"]["summary"].endswith("uses tokens at 4x its daily average")
    assert by_name["UminferExporterDown"]["for"] == "10m"
    assert "vector(0.35)" in by_name["UminferKeySpendDrift"]["expr"]
    defaults = {rule["alert"]: rule for rule in alerts(render_rules(MixinConfig()))}
    assert "> 3 * project_id_key_id:uminfer_tokens:rate1d" in defaults["UminferTokenSpike"]["expr"]


@pytest.mark.parametrize(("setting", "message"), [
    ("token_spike_factor=lots", "--set token_spike_factor=lots: token_spike_factor takes a float"),
    ("nonsense=1", "--set nonsense=1: expected NAME=VALUE, NAME one of budget_warn_ratio, "),
    ("token_spike_factor", "--set token_spike_factor: expected NAME=VALUE"),
])
def test_bad_settings_are_refused(setting: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        with_thresholds(MixinConfig(), [setting])


def test_every_placeholder_of_the_source_has_a_value_and_every_threshold_is_used() -> None:
    source = SOURCE.read_text(encoding="utf-8")
    body = source[source.index("\ngroups:\n"):]
    used = set(re.findall(r"\$\{(\w+)\}", body))
    assert used == set(MixinConfig().placeholders())
    assert "${" not in render_rules(MixinConfig())
    with pytest.raises(KeyError, match=r"\$\{typo\}"):
        render_rules(MixinConfig(), source.replace("up{${selector}}", "up{${typo}}", 1))
    assert set(Thresholds.__dataclass_fields__) <= used


def test_every_alert_links_its_runbook() -> None:
    config = MixinConfig(runbook_url="https://docs.example.org/uminfer/runbooks")
    for rule in alerts(render_rules(config)):
        assert rule["annotations"]["runbook_url"] == \
            f"https://docs.example.org/uminfer/runbooks#{rule['alert'].lower()}"


def test_the_dashboard_differs_only_by_the_selector() -> None:
    default = dashboard.render(MixinConfig())
    other = dashboard.render(MixinConfig(selector=OTHER))
    assert other.replace(OTHER.replace('"', '\\"'), 'job=\\"uminfer\\"') == default
    assert json.loads(other)["uid"] == "uminfer-exporter"


@pytest.mark.e2e
def test_promtool_unit_tests_pass_for_another_selector(tmp_path: Path) -> None:
    """The rules rendered for job="llm-usage" pass the unit tests with their series in that job,
    and fail them with the series left in job="uminfer" (the selector is live)."""
    (tmp_path / "rules.yml").write_text(render_rules(MixinConfig(selector=OTHER)))
    tests = RULES_TEST.read_text(encoding="utf-8")
    moved = tests.replace('job="uminfer"', OTHER).replace("job: uminfer", "job: llm-usage")
    (tmp_path / "moved_test.yml").write_text(moved)
    shutil.copy(RULES_TEST, tmp_path / "unmoved_test.yml")
    promtool = require_tool("promtool")

    def run(name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([promtool, "test", "rules", name], capture_output=True, text=True,
                              timeout=120, check=False, cwd=tmp_path)
    passed = run("moved_test.yml")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert run("unmoved_test.yml").returncode != 0


@pytest.mark.e2e
def test_cli_writes_another_selector_elsewhere(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "mixin", "--selector", OTHER,
                             "--out", str(tmp_path)], capture_output=True, text=True,
                            timeout=120, check=False, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert OTHER in (tmp_path / "prometheus" / "rules.yml").read_text()
    bad = subprocess.run([sys.executable, "-m", "mixin", "--set", "x=1", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=120, check=False, cwd=REPO)
    assert bad.returncode == 1
    assert bad.stderr.startswith("python -m mixin: --set x=1: expected NAME=VALUE")

"""The shipped Prometheus rules and example config pass promtool, and every alert is unit-tested."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.paths import ROOT
from tests.replicas import undeduplicated
from tests.tools import require_tool

PROMETHEUS_DIR = ROOT / "prometheus"
RULES = PROMETHEUS_DIR / "rules.yml"
RULES_TEST = PROMETHEUS_DIR / "rules_test.yml"
EXAMPLE = PROMETHEUS_DIR / "prometheus.example.yml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run promtool; the finished process with its output."""
    return subprocess.run([require_tool("promtool"), *args], capture_output=True, text=True,
                          timeout=60, check=False)


def load(path: Path) -> Any:
    """A YAML file's content."""
    return yaml.safe_load(path.read_text())


def rules_of_kind(kind: str) -> list[str]:
    """Names of every ``alert`` or ``record`` rule in rules.yml."""
    return [rule[kind] for group in load(RULES)["groups"] for rule in group["rules"]
            if kind in rule]


@pytest.mark.e2e
def test_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", "--lint=all", "--lint-fatal", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules_of_kind('alert')) + len(rules_of_kind('record'))} rules found" \
        in result.stdout


@pytest.mark.e2e
def test_rules_unit_tests_pass() -> None:
    result = promtool("test", "rules", str(RULES_TEST))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_tested_firing_and_silent() -> None:
    fired: set[str] = set()
    silent: set[str] = set()
    for case in load(RULES_TEST)["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check.get("exp_alerts") else silent).add(check["alertname"])
    alerts = set(rules_of_kind("alert"))
    assert alerts - fired == set(), "alerts never tested firing"
    assert alerts - silent == set(), "alerts never tested staying silent"


def test_every_recording_rule_is_used_or_tested() -> None:
    tests_text = RULES_TEST.read_text()
    alert_exprs = " ".join(rule["expr"] for group in load(RULES)["groups"]
                           for rule in group["rules"] if "alert" in rule)
    untested = [name for name in rules_of_kind("record")
                if name not in tests_text and name not in alert_exprs]
    assert untested == []


def test_no_rule_adds_up_replicas() -> None:
    """Two replicas (ha.peers) export the same target, budget and key series: every rule takes
    them once (max or min across replicas) before it sums or compares, so an alert fires once
    per target, budget or key with one replica's value. Alerts about one process read only
    its self-metrics, which the check leaves alone."""
    problems = [f"{rule.get('alert') or rule.get('record')}: {problem}"
                for group in load(RULES)["groups"] for rule in group["rules"]
                for problem in undeduplicated(rule["expr"])]
    assert problems == []


def test_recording_rule_names_follow_level_metric_operations() -> None:
    for name in rules_of_kind("record"):
        level, metric, operations = name.split(":")
        assert level, name
        assert operations, name
        assert metric.startswith("uminfer_"), name


@pytest.mark.e2e
def test_example_config_is_valid_with_the_rules(tmp_path: Path) -> None:
    config = load(EXAMPLE)
    assert config["scrape_configs"][0]["job_name"] == "uminfer"  # the job rules.yml expects
    config["rule_files"] = [str(RULES)]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    result = promtool("check", "config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr

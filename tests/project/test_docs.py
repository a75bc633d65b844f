"""Docs that cannot drift: each table of names in the docs equals what the code defines.

Metrics, alerts, recording rules, flags, config keys and dashboard rows are read from the docs'
tables and compared with the exporter, rules.yml and the dashboard; a figure worked out from the
defaults is checked wherever it is quoted, and measured figures live in BENCHMARKS.md only.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from exporter import cli
from exporter.config import ApiConfig, PollConfig, Window
from exporter.config.advanced import ADVANCED_KEYS
from exporter.config.cost import BUDGET_KEYS, PRICE_KEYS, PRICING_KEYS
from exporter.config.discovery import DISCOVERY_KEYS
from exporter.config.ha import ACCOUNTING_KEYS, HA_KEYS
from exporter.config.metricsconf import METRICS_KEYS
from exporter.config.sections import API_KEYS, KEYS_KEYS, POLL_KEYS, STATE_KEYS, TARGET_KEYS
from exporter.metrics.exposition import SERIES
from exporter.metrics.families import FAMILIES, GLOBAL_FAMILIES
from exporter.metrics.selfmetrics import SelfMetrics
from exporter.polling.supervisor import STAGES
from tests.paths import ROOT

README = ROOT / "README.md"
OBSERVABILITY = ROOT / "docs" / "observability.md"
RULES = ROOT / "prometheus" / "rules.yml"
DASHBOARD = ROOT / "grafana" / "dashboards" / "uminfer.json"
EXAMPLE = ROOT / "config.example.yaml"
BENCHMARKS = ROOT / "BENCHMARKS.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
TICKED = re.compile(r"`([^`]+)`")


def section(path: Path, heading: str) -> str:
    """The text under ``heading`` (a markdown heading line) up to the next heading of its level."""
    text = path.read_text()
    level = heading.split(" ", maxsplit=1)[0]
    start = text.index(f"\n{heading}\n")
    end = text.find(f"\n{level} ", start + len(heading) + 2)
    return text[start:end if end >= 0 else len(text)]


def table_rows(text: str) -> list[list[str]]:
    """The cells of every markdown table row in ``text`` (header and rule rows left out)."""
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in text.splitlines() if line.lstrip().startswith("|")]
    return [row for row in rows if not set(row[0]) <= set("-: ") and row[0] not in
            ("metric", "alert", "series", "flag", "name", "call", "question", "limit", "key")]


def first_cells(text: str) -> list[str]:
    """Every backticked name in the first column of the tables in ``text``."""
    return [name for row in table_rows(text) for name in TICKED.findall(row[0])]


def rules_of(kind: str) -> dict[str, dict[str, Any]]:
    """Each ``alert`` or ``record`` rule of rules.yml by name."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule[kind]: rule for group in groups for rule in group["rules"] if kind in rule}


def exposed_metric_names() -> set[str]:
    """Every metric family the exporter can expose, as named in /metrics."""
    names = {f.name for f in FAMILIES} | {f.name for f in GLOBAL_FAMILIES}
    registry = CollectorRegistry()
    SelfMetrics(registry)
    names.add(SERIES)  # written into the cached body with the families it counts
    names |= {f"{m.name}_total" if m.type == "counter" else m.name for m in registry.collect()}
    return names


def test_readme_metric_tables_name_every_metric_and_no_other() -> None:
    text = section(README, "## Metrics")
    documented = {name.split("{")[0] for name in TICKED.findall(text)
                  if name.startswith("uminfer_")}
    assert documented == exposed_metric_names()


def test_readme_names_every_stage_of_the_poll_loop() -> None:
    row = next(row for row in table_rows(section(README, "## Metrics"))
               if row[0].startswith("`uminfer_poll_errors_total"))
    stages = re.search(r"\(([^)]*)\)", row[2])
    assert stages is not None
    assert TICKED.findall(stages.group(1).split(";")[0]) == list(STAGES)


def test_observability_alert_table_matches_rules_yml() -> None:
    rows = table_rows(section(OBSERVABILITY, "## 2. Load the rules"))
    documented = {TICKED.findall(row[0])[0]: row[-1] for row in rows
                  if TICKED.findall(row[0]) and TICKED.findall(row[0])[0].startswith("Uminfer")}
    assert documented == {name: rule["labels"]["severity"]
                          for name, rule in rules_of("alert").items()}


def test_observability_recording_rule_table_matches_rules_yml() -> None:
    text = section(OBSERVABILITY, "## 2. Load the rules")
    documented = [name for name in first_cells(text) if name.count(":") == 2]
    assert sorted(documented) == sorted(rules_of("record"))


def test_readme_alert_list_names_every_alert() -> None:
    text = section(README, "## Dashboard and alerts")
    assert sorted(set(re.findall(r"`(Uminfer\w+)`", text))) == sorted(rules_of("alert"))


def test_readme_flag_table_matches_the_command_line() -> None:
    documented = {flag.split("=")[0] for cell in first_cells(section(README, "## Command line"))
                  for flag in re.findall(r"--[\w.-]+(?:=\S+)?", cell)}
    parser = cli._parser()
    defined = {option for action in parser._actions
               if not isinstance(action, argparse._HelpAction)
               and action.help != argparse.SUPPRESS  # hidden: for tests only
               for option in action.option_strings}
    assert documented == defined


@pytest.mark.parametrize(("section_name", "keys"), [
    ("api", API_KEYS), ("poll", POLL_KEYS), ("state", STATE_KEYS), ("targets[]", TARGET_KEYS),
    ("pricing", PRICING_KEYS), ("pricing.models.*", PRICE_KEYS), ("budgets[]", BUDGET_KEYS),
    ("discovery", DISCOVERY_KEYS), ("keys", KEYS_KEYS), ("accounting", ACCOUNTING_KEYS),
    ("ha", HA_KEYS), ("metrics", METRICS_KEYS), ("advanced", ADVANCED_KEYS),
])
def test_config_example_shows_every_config_key(section_name: str, keys: tuple[str, ...]) -> None:
    # Commented-out keys count: the example shows optional ones that way.
    shown = set(re.findall(r"^[\s#]*(?:- )?\{?(\w+):", EXAMPLE.read_text(), re.MULTILINE))
    shown |= set(re.findall(r"[{,]\s*(\w+):", EXAMPLE.read_text()))
    assert set(keys) - shown == set(), f"{section_name} keys missing from config.example.yaml"


@pytest.mark.parametrize("doc", DOCS, ids=[doc.name for doc in DOCS])
def test_config_snippets_in_the_docs_use_only_real_keys(doc: Path) -> None:
    known = {*API_KEYS, *POLL_KEYS, *STATE_KEYS, *TARGET_KEYS, *PRICING_KEYS, *PRICE_KEYS,
             *BUDGET_KEYS, *DISCOVERY_KEYS, *KEYS_KEYS, *ACCOUNTING_KEYS, *HA_KEYS,
             *METRICS_KEYS, *ADVANCED_KEYS, "windows", "targets", "budgets", "pricing",
             "discovery", "keys", "api", "poll", "state", "accounting", "ha", "metrics",
             "advanced"}
    text = doc.read_text()
    for block in re.findall(r"```yaml\n(.*?)```", text, re.DOTALL):
        loaded = yaml.safe_load(block)
        if not isinstance(loaded, dict) or not {"api", "pricing"} & set(loaded):
            continue  # scrape configs and web configs have their own tests
        unknown = [key for key in _keys(loaded, model_names=True) if key not in known]
        assert unknown == [], block


def _keys(value: object, model_names: bool = False) -> list[str]:
    """Every mapping key in ``value`` (the keys under pricing.models are model names)."""
    if isinstance(value, list):
        return [key for item in value for key in _keys(item)]
    if not isinstance(value, dict):
        return []
    found: list[str] = []
    for key, inner in value.items():
        if key == "labels":
            found.append(key)
        elif key == "models" and isinstance(inner, dict):
            found += [key, *(k for price in inner.values() for k in _keys(price))]
        else:
            found += [key, *_keys(inner)]
    return found


def dashboard() -> dict[str, Any]:
    """The committed dashboard."""
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def test_observability_dashboard_rows_match_the_dashboard() -> None:
    text = section(OBSERVABILITY, "## 3. Import the dashboard").split(" Rows:", 1)[1]
    documented = re.findall(r"^- \*\*(.+?):\*\*", text, re.MULTILINE)
    rows = [p["title"].split(" (")[0] for p in dashboard()["panels"] if p["type"] == "row"]
    assert documented == rows


def readme_first_screen() -> list[str]:
    """The README up to the first ``##`` heading after the quick start's."""
    lines = README.read_text().splitlines()
    quick = lines.index("## Quick start")
    end = next(i for i in range(quick + 1, len(lines)) if lines[i].startswith("## "))
    return lines[:end]


def test_readme_opens_with_the_demo_and_the_test_suite() -> None:
    text = "\n".join(readme_first_screen())
    first = text.split("```sh\n", 1)[1].split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in first.splitlines()] == [
        "./scripts/run --demo", "./scripts/test"]


def test_readme_first_screen_gets_a_newcomer_to_their_own_account() -> None:
    screen = readme_first_screen()
    text = " ".join(" ".join(screen).split())
    assert len(screen) < 80
    for step in ("pip install .", "config.minimal.yaml", "--config.check", "--state.path=",
                 "The first minutes", "When nothing shows", "http://localhost:9866/"):
        assert step in text, step
    shown = re.search(r"```yaml\n(.*?)```", "\n".join(screen), re.DOTALL)
    assert shown is not None
    minimal = (ROOT / "config.minimal.yaml").read_text().splitlines()
    assert shown.group(1).splitlines() == [line for line in minimal if not line.startswith("#")]


def test_readme_counts_the_dashboards_panels_and_rows() -> None:
    panels = dashboard()["panels"]
    rows = sum(1 for p in panels if p["type"] == "row")
    assert f"It has {len(panels) - rows} panels in {rows} rows" in \
        " ".join(README.read_text().split())


def calls_per_poll(windows: int = 2) -> float:
    """Calls per target per poll at the defaults, as the README's table works it out: the
    narrower windows are sums of the widest one's rows (the simulator's minute buckets)."""
    poll, day = PollConfig(), 86400  # periods are the provider's days
    return (1 + poll.settle / day + poll.interval / max(poll.settle, day)
            + min(windows, 1) * poll.interval / poll.window_interval)


def test_calls_per_poll_is_quoted_as_worked_out_from_the_defaults() -> None:
    calls = f"{calls_per_poll():.1f}"
    targets = math.floor(ApiConfig().rate_limit * PollConfig().interval / calls_per_poll()
                         / 50) * 50
    assert len((Window("1h", 3600), Window("24h", 86400))) == 2  # the default windows
    quoted_calls, quoted_targets = [], []
    for doc in DOCS:
        text = " ".join(doc.read_text().split())
        quoted_calls += re.findall(r"(\d+(?:\.\d+)?)\*{0,2} calls per target per", text)
        quoted_targets += re.findall(r"([\d,]+) targets at (?:the defaults|a 60 s interval)",
                                     text)
    assert quoted_calls and set(quoted_calls) == {calls}
    assert quoted_targets and {t.replace(",", "") for t in quoted_targets} == {str(targets)}


MEASURED = re.compile(r"\b\d[\d,.]*\s?(?:MiB|KiB|ms)\b")
# The same number measured elsewhere, not a copy of a benchmark figure.
NOT_FROM_BENCHMARKS = {("deployment.md", "45 MiB"),  # malloc arenas under hostile answers
                       ("deployment.md", "5 ms")}  # a peer's ledgers, tests/e2e/test_ha_e2e.py


def test_benchmark_figures_are_quoted_only_in_benchmarks_md() -> None:
    measured = {m.group() for m in MEASURED.finditer(BENCHMARKS.read_text())}
    copies = [(doc.name, m.group()) for doc in DOCS
              for m in MEASURED.finditer(" ".join(doc.read_text().split()))
              if m.group() in measured and (doc.name, m.group()) not in NOT_FROM_BENCHMARKS]
    assert copies == [], "link BENCHMARKS.md instead of copying its figures"


def test_runbooks_have_one_section_per_alert_in_order() -> None:
    """docs/runbooks.md: a section per alert, named as the alert (its anchor is the alert's
    name in lower case, what every rule's runbook_url ends in), with the three parts."""
    text = (ROOT / "docs" / "runbooks.md").read_text()
    sections = re.findall(r"^## (\S+)$", text, re.MULTILINE)
    assert sections == list(rules_of("alert"))
    for name, rule in rules_of("alert").items():
        assert rule["annotations"]["runbook_url"].endswith(f"#{name.lower()}")
        body = section(ROOT / "docs" / "runbooks.md", f"## {name}")
        assert all(part in body for part in ("**Means.**", "**Confirm.**", "**Do.**")), name

"""The ``metrics`` config on the exposition: GenAI names, family groups off, labels dropped."""

from __future__ import annotations

import dataclasses
import gzip
import re
import subprocess
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.accounting.snapshot import KeyHealth, KeysSnapshot, Snapshot, TargetSnapshot
from exporter.config import FAMILY_GROUPS, MetricsConfig, Target, Window
from exporter.core.usage import Totals
from exporter.metrics.exposition import ExpositionCache, render, render_both
from exporter.metrics.families import FAMILIES, GLOBAL_FAMILIES
from exporter.metrics.shape import GROUPS, Shape
from tests.harness import parse_metrics
from tests.paths import ROOT
from tests.tools import require_tool
from tests.unit.metrics.test_exposition import GOLDEN, sample_snapshot

COUNTERS = ("uminfer_input_tokens_total", "uminfer_output_tokens_total", "uminfer_tokens_total",
            "uminfer_requests_total", "uminfer_image_generations_total")
HEALTH = ("uminfer_up", "uminfer_last_success_timestamp_seconds")
DOCS = ROOT / "docs" / "configuration.md"


def shape(**settings: object) -> Shape:
    return Shape.of(MetricsConfig(**settings))  # type: ignore[arg-type]


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_groups_are_the_configs_and_name_families_that_exist() -> None:
    assert tuple(GROUPS) == FAMILY_GROUPS
    known = {f.name for f in FAMILIES} | {g.name for g in GLOBAL_FAMILIES}
    assert {name for names in GROUPS.values() for name in names} <= known
    grouped = {name for names in GROUPS.values() for name in names}
    assert not grouped & {*COUNTERS, *HEALTH}  # never off


def test_defaults_render_the_golden_file() -> None:
    assert render(sample_snapshot(), Shape.of(MetricsConfig())).decode() == GOLDEN.read_text()


def test_genai_names_add_sum_and_count_per_token_type_and_leave_the_rest_alone() -> None:
    text = render(sample_snapshot(), shape(semconv="otel-genai")).decode()
    genai = [line for line in lines(text) if line.startswith("gen_ai_")]
    assert "\n".join(line for line in text.splitlines()
                     if "gen_ai_client_token_usage" not in line) + "\n" == GOLDEN.read_text()
    assert "# TYPE gen_ai_client_token_usage summary" in text
    samples = parse_metrics(text)
    chat = {"gen_ai_operation_name": "chat", "gen_ai_provider_name": "ucloud",
            "gen_ai_system": "ucloud", "gen_ai_request_model": "deepseek-ai/DeepSeek-V3",
            "project_id": "org-1", "key_id": "uminferapikey-a", "team": "search"}
    expected = {("_sum", "input"): 1200, ("_count", "input"): 7,
                ("_sum", "output"): 300, ("_count", "output"): 7}
    for (suffix, kind), value in expected.items():
        key = (f"gen_ai_client_token_usage{suffix}",
               frozenset({**chat, "gen_ai_token_type": kind}.items()))
        assert samples[key] == value
    assert len(genai) == 8  # two targets x (sum, count) x (input, output); no buckets
    assert not any("model=" in line.replace("request_model=", "") for line in genai)


def test_genai_provider_and_operation_are_the_configs() -> None:
    text = render(sample_snapshot(), shape(semconv="otel-genai", genai_provider_name="acme",
                                           genai_operation_name="text_completion")).decode()
    genai = [line for line in lines(text) if line.startswith("gen_ai_")]
    assert len(genai) == 8
    assert all('gen_ai_provider_name="acme",gen_ai_system="acme"' in line for line in genai)
    assert all('gen_ai_operation_name="text_completion"' in line for line in genai)


def test_a_target_not_yet_counting_has_no_genai_series() -> None:
    base = sample_snapshot()
    behind = dataclasses.replace(base, targets=tuple(
        dataclasses.replace(t, counting=False) for t in base.targets))
    text = render(behind, shape(semconv="otel-genai")).decode()
    assert "gen_ai_client_token_usage_sum" not in text
    assert "uminfer_up" in text  # the targets are there, only not counting


def test_every_group_off_leaves_five_counters_and_health_per_target() -> None:
    done = render_both(sample_snapshot(), shape(disable=FAMILY_GROUPS))
    names = {name for name, _ in done.series}
    assert names == {*COUNTERS, *HEALTH}
    per_target = dict(done.series)
    assert all(per_target[name] == 2 for name in COUNTERS)
    assert per_target["uminfer_up"] == 2
    full = measured(shape(disable=FAMILY_GROUPS))
    assert full == 7  # 5 counters + uminfer_up + uminfer_last_success_timestamp_seconds


@pytest.mark.parametrize("group", FAMILY_GROUPS)
def test_each_group_turns_off_exactly_its_families(group: str) -> None:
    full = {name for name, _ in render_both(rich_snapshot(2)).series}
    left = {name for name, _ in render_both(rich_snapshot(2), shape(disable=(group,))).series}
    assert full - left == set(GROUPS[group]) & full
    assert GROUPS[group]  # and the rich snapshot shows every family of it:
    assert set(GROUPS[group]) <= full


def test_dropping_key_id_sums_the_merged_series_and_never_duplicates() -> None:
    a = Target("key-a", "m1", "p", (("team", "x"),))
    b = Target("key-b", "m1", "p", (("team", "x"),))
    c = Target("key-c", "m2", "p", (("team", "x"),))
    w = Window("1h", 3600)
    snap = Snapshot(targets=(
        TargetSnapshot(a, Totals(10, 1, 11, 2, 0), ((w, Totals(5, 1, 6, 1, 0)),), 100.0, True,
                       50.0, failures=(("timeout", 2),), cost=(("USD", Decimal("0.1")),)),
        TargetSnapshot(b, Totals(20, 2, 22, 3, 1), ((w, Totals(7, 0, 7, 2, 0)),), 90.0, False,
                       40.0, failures=(("timeout", 1), ("http", 4)),
                       cost=(("USD", Decimal("0.2")),)),
        TargetSnapshot(c, Totals(1, 1, 2, 1, 0), up=True, last_success=70.0),
    ))
    text = render(snap, shape(drop_labels=("key_id",), semconv="otel-genai")).decode()
    assert "key_id" not in text
    found = lines(text)
    heads = [line.rpartition(" ")[0] for line in found]
    assert len(heads) == len(set(heads))  # no two series with one label set
    samples = parse_metrics(text)
    m1 = frozenset({"project_id": "p", "model": "m1", "team": "x"}.items())
    assert samples[("uminfer_input_tokens_total", m1)] == 30
    assert samples[("uminfer_image_generations_total", m1)] == 1
    assert samples[("uminfer_up", m1)] == 0  # up only when every merged target is
    assert samples[("uminfer_last_success_timestamp_seconds", m1)] == 40.0  # the oldest
    assert samples[("uminfer_window_timestamp_seconds", m1)] == 90.0
    assert samples[("uminfer_window_tokens", m1 | {("window", "1h")})] == 13
    assert samples[("uminfer_target_failures_total", m1 | {("reason", "timeout")})] == 3
    assert samples[("uminfer_target_failures_total", m1 | {("reason", "http")})] == 4
    assert samples[("uminfer_cost_total", m1 | {("currency", "USD")})] == pytest.approx(0.3)
    genai = frozenset({"gen_ai_operation_name": "chat", "gen_ai_provider_name": "ucloud",
                       "gen_ai_system": "ucloud", "gen_ai_request_model": "m1",
                       "project_id": "p", "team": "x", "gen_ai_token_type": "output"}.items())
    assert samples[("gen_ai_client_token_usage_sum", genai)] == 3
    assert samples[("gen_ai_client_token_usage_count", genai)] == 5
    m2 = frozenset({"project_id": "p", "model": "m2", "team": "x"}.items())
    assert samples[("uminfer_tokens_total", m2)] == 2  # alone in its series: unchanged


_TARGETS = st.lists(st.tuples(st.sampled_from(["p", "q", ""]), st.sampled_from(["k1", "k2", "k3"]),
                              st.sampled_from(["m1", 'm"2']), st.sampled_from(["a", "b\\"]),
                              st.integers(0, 10**12), st.booleans()),
                    max_size=12, unique_by=lambda t: t[:4])


@given(_TARGETS, st.sets(st.sampled_from(["project_id", "key_id", "model", "team"])))
def test_dropped_labels_keep_every_total_and_make_no_duplicates(
        specs: list[tuple[str, str, str, str, int, bool]], drop: set[str]) -> None:
    snap = Snapshot(targets=tuple(
        TargetSnapshot(Target(key, model, project, (("team", team),)), Totals(n, 1, n + 1, 2, 0),
                       up=up, last_success=float(n))
        for project, key, model, team, n, up in specs))
    text = render(snap, shape(drop_labels=tuple(drop), semconv="otel-genai")).decode()
    heads = [line.rpartition(" ")[0] for line in lines(text)]
    assert len(heads) == len(set(heads))
    samples = parse_metrics(text)

    def total(name: str) -> float:
        return sum(v for (n, _), v in samples.items() if n == name)
    assert total("uminfer_input_tokens_total") == sum(s[4] for s in specs)
    assert total("gen_ai_client_token_usage_count") == 4 * len(specs)
    left = {tuple((n, v) for n, v in (("project_id", p), ("key_id", k), ("model", m),
                                       ("team", t)) if n not in drop)
            for p, k, m, t, _, _ in specs}
    assert sum(1 for n, _ in samples if n == "uminfer_up") == len(left)
    assert total("uminfer_up") == len(left) - len({
        tuple((n, v) for n, v in (("project_id", p), ("key_id", k), ("model", m), ("team", t))
              if n not in drop) for p, k, m, t, _, up in specs if not up})


def test_dropping_model_drops_it_from_the_genai_names_too() -> None:
    text = render(sample_snapshot(), shape(drop_labels=("model",), semconv="otel-genai")).decode()
    assert "model=" not in text


def test_dropping_key_id_merges_key_health_by_name() -> None:
    keys = KeysSnapshot((KeyHealth("p", "k1", "shared", 1, False, 200, Decimal(5)),
                         KeyHealth("p", "k2", "shared", 1, True, 100, Decimal(7))), 1.0)
    text = render(Snapshot(keys=keys), shape(drop_labels=("key_id",))).decode()
    samples = parse_metrics(text)
    where = frozenset({("project_id", "p")})
    assert samples[("uminfer_key_info", where | {("key_name", "shared"), ("status", "1")})] == 2
    assert samples[("uminfer_key_disabled", where)] == 1
    assert samples[("uminfer_key_expiry_timestamp_seconds", where)] == 100  # the earliest
    assert samples[("uminfer_key_limit_amount", where | {("period", "daily")})] == 12


@pytest.mark.e2e
def test_shaped_expositions_are_lint_clean() -> None:
    promtool = require_tool("promtool")
    for settings in ({"semconv": "otel-genai"}, {"drop_labels": ("key_id", "team")},
                     {"drop_labels": ("project_id", "key_id", "model"), "semconv": "otel-genai"},
                     {"disable": FAMILY_GROUPS, "semconv": "otel-genai"}):
        body = render(rich_snapshot(3), shape(**settings))
        result = subprocess.run([promtool, "check", "metrics"], input=body,
                                capture_output=True, check=False)
        assert result.returncode == 0, (settings, result.stdout + result.stderr)


def test_series_self_metric_counts_the_published_body() -> None:
    cache = ExpositionCache(shape=shape(disable=("windows",)))
    cache.publish(sample_snapshot())
    body = cache.body(compressed=False).decode()
    assert gzip.decompress(cache.body(compressed=True)).decode() == body
    samples = parse_metrics(body)
    counted = {dict(labels)["family"]: value for (name, labels), value in samples.items()
               if name == "uminfer_exporter_series"}
    shown = {name for name, _ in samples if name != "uminfer_exporter_series"}
    assert len(counted) > 10
    for family, count in counted.items():
        pattern = rf"{family}(_sum|_count)?[{{ ]"
        assert sum(1 for line in lines(body) if re.match(pattern, line)) == count, family
    assert "uminfer_window_tokens" not in counted
    assert {n.removesuffix("_sum").removesuffix("_count") for n in shown} <= set(counted)
    assert "uminfer_exporter_series" not in render(sample_snapshot()).decode()  # the golden


# --- series per target, for the table in docs/configuration.md ---

def rich_snapshot(count: int) -> Snapshot:
    """``count`` targets with every per-target family populated: two windows, one currency,
    an origin (settled and catch-up), one key each with both limits, an unpriced model."""
    w1, w24 = Window("1h", 3600), Window("24h", 86400)
    usage = Totals(100, 10, 110, 3, 1)
    targets = tuple(TargetSnapshot(
        Target(f"key-{i}", "m", "p"), usage, ((w1, usage), (w24, usage)), 10.0, True, 10.0,
        settled_until=5, revisions=1, given_up=(("http", 60),),
        cost=(("USD", Decimal(1)),), window_cost=((w1, "USD", Decimal(1)),
                                                  (w24, "USD", Decimal(1))),
        catchup_remaining=0, settled=usage) for i in range(count))
    keys = KeysSnapshot(tuple(KeyHealth("p", f"key-{i}", f"n{i}", 1, False, 99, Decimal(1),
                                        Decimal(1), Decimal(2), Decimal(1))
                              for i in range(count)), 1.0)
    return Snapshot(targets=targets, keys=keys, unpriced=(("m2", "no_price"),))


def measured(how: Shape) -> int:
    """Series per target (and its key) at 100 targets: the per-target and per-key families'
    series, divided by the targets; the process-wide ones are not per target."""
    done = render_both(rich_snapshot(100), how)
    scoped = {f.name for f in FAMILIES} | {"gen_ai_client_token_usage"} | set(GROUPS["key_health"])
    return sum(n for name, n in done.series if name in scoped) // 100


SETTINGS: dict[str, MetricsConfig] = {
    "semconv: native": MetricsConfig(),
    "semconv: otel-genai": MetricsConfig(semconv="otel-genai"),
    **{f"disable: [{g}]": MetricsConfig(disable=(g,)) for g in FAMILY_GROUPS},
    f"disable: [{', '.join(FAMILY_GROUPS)}]": MetricsConfig(disable=FAMILY_GROUPS),
}


def test_the_docs_give_the_measured_series_per_target() -> None:
    table = re.findall(r"^\| `metrics\.([^`]+)`[^|]*\| (\d+) \|", DOCS.read_text(), re.M)
    documented = {setting: int(n) for setting, n in table}
    assert documented == {name: measured(Shape.of(c)) for name, c in SETTINGS.items()}

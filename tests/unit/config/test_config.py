"""The config loader: every rule's exact message, env expansion, key files, defaults, secrecy."""

import copy
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.config import (
    BUILTIN_LABELS,
    Config,
    ConfigError,
    MetricsConfig,
    PollConfig,
    Target,
    Window,
    load_config,
    parse_config,
    redacted,
)
from exporter.core.grid import Grid
from tests.paths import ROOT

PRIVATE = "46f09bb9fab4f12dfc160dae12273d5332b5debe"
ENV = {"UMINFER_PUBLIC_KEY": "pub-key", "UMINFER_PRIVATE_KEY": PRIVATE, "TEAM": "search",
       "BLANK": ""}
EXAMPLE = ROOT / "config.example.yaml"
MINIMAL = EXAMPLE.with_name("config.minimal.yaml")
DELETE = object()
POLL_KEYS = "interval, settle"
BUILTINS = ", ".join(BUILTIN_LABELS)


def base() -> dict[str, object]:
    """A small valid config, as yaml.safe_load would return it."""
    return {
        "api": {"public_key": "${UMINFER_PUBLIC_KEY}", "private_key": "${UMINFER_PRIVATE_KEY}"},
        "targets": [
            {"project": "p", "key": "k", "model": "m", "labels": {"team": "search"}},
            {"key": "k2", "model": "m"},
        ],
    }


def with_changes(changes: dict[str, object]) -> dict[str, object]:
    """``base()`` with values set at dotted paths (``targets.0.key``); DELETE removes one."""
    data = base()
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        key = int(last) if isinstance(node, list) else last
        if value is DELETE:
            del node[key]
        else:
            node[key] = value
    return data


def problems(data: object, environ: dict[str, str] = ENV, base_dir: str = "/etc/x") -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, environ, base_dir)
    return caught.value.problems


BAD = [
    # structure and unknown keys
    ({"apii": {}},
     "apii: unknown key (expected one of: api, accounts, poll, state, windows, targets, pricing,"
     " budgets, discovery, keys, accounting, ha, metrics, advanced)"),
    # metrics
    ({"metrics.semconv": "otel"},
     "metrics.semconv: must be one of native, otel-genai; got 'otel'"),
    ({"metrics.disable": ["window"]},
     'metrics.disable[0]: unknown name "window" (metric family groups: windows, cost, key_health,'
     " failure_reasons, settlement, audit)"),
    ({"metrics.disable": ["cost", "cost"]}, 'metrics.disable[1]: "cost" is listed twice'),
    ({"metrics.disable": "cost"},
     "metrics.disable: expected a list of names (metric family groups: windows, cost, key_health,"
     ' failure_reasons, settlement, audit), got "cost" (str)'),
    ({"metrics.drop_labels": ["tem"]},
     'metrics.drop_labels[0]: unknown name "tem" (labels that can be dropped: project_id, key_id,'
     " model, key_name, account, team)"),
    ({"metrics.drop_labels": [5]}, "metrics.drop_labels[0]: expected a string, got 5 (int)"),
    ({"metrics.genai_provider_name": ""}, "metrics.genai_provider_name: must not be empty"),
    ({"metrics.semconv": "otel-genai", "targets.0.labels": {"gen_ai_system": "x"}},
     'metrics.semconv: the static label "gen_ai_system" would clash with the OpenTelemetry GenAI'
     " labels (gen_ai_...); rename it"),
    ({"metrics.colour": "red"},
     "metrics.colour: unknown key (expected one of: semconv, genai_provider_name,"
     " genai_operation_name, disable, drop_labels)"),
    # accounting.origin and ha
    ({"accounting.origin": "2025-13-01T00:00:00Z"},
     'accounting.origin: expected an RFC 3339 time like 2025-01-01T00:00:00Z, got '
     '"2025-13-01T00:00:00Z"'),
    ({"accounting.origin": "2025-01-01T00:00:00"},
     "accounting.origin: needs an offset (Z or +08:00): without one the instant depends on the"
     " host's time zone, and replicas must agree on it"),
    ({"accounting.origin": 5}, "accounting.origin: expected an RFC 3339 time like "
                               "2025-01-01T00:00:00Z, got 5 (int)"),
    ({"ha.peers": ["http://peer:9866"]},
     "ha.peers: needs accounting.origin: replicas count the same usage only from the same"
     " origin"),
    ({"accounting.origin": "2025-01-01T00:00:00Z", "ha.peers": ["https://u:hunter2@peer"]},
     "ha.peers[0]: must not hold credentials; set ha.username and ha.password (or"
     " ha.password_file)"),
    ({"accounting.origin": "2025-01-01T00:00:00Z", "ha.peers": ["peer:9866"]},
     'ha.peers[0]: expected an http:// or https:// URL, got "peer:9866"'),
    ({"accounting.origin": "2025-01-01T00:00:00Z", "ha.password": "hunter2"},
     "ha.username: required with ha.password"),
    ({"ha.timeout": "0s"}, "ha.timeout: must be greater than 0s, got 0s"),
    ({"accounting.origin": "2025-01-01T00:00:00Z", "ha.peers": ["http://peer:9866"],
      "ha.username": "u", "ha.password": "p"},
     "ha.username: would be sent in clear to http://peer:9866: use https:// peer URLs (with"
     " ha.ca_file), or set ha.insecure_http_auth: true on a network you trust"),
    ({"ha.insecure_http_auth": "yes"},
     'ha.insecure_http_auth: expected true or false, got "yes" (str)'),
    ({"poll.intreval": "60s"}, f"poll.intreval: unknown key (expected one of: {POLL_KEYS})"),
    ({"targets.0.colour": "red"},
     "targets[0].colour: unknown key (expected one of: account, project, key, model, labels)"),
    ({"state": "x"}, 'state: expected a mapping, got "x" (str)'),
    # durations: wrong type, syntax, limits
    ({"poll.interval": 12}, "poll.interval: expected a duration like 60s, got 12 (int)"),
    ({"poll.interval": "60"},
     'poll.interval: invalid duration "60": missing unit; did you mean 60s?'),
    ({"poll.interval": "5x"},
     'poll.interval: invalid duration "5x": unknown unit "x" (use ms, s, m, h, d, w or y)'),
    ({"poll.interval": "-1m"},
     'poll.interval: invalid duration "-1m": negative durations are not allowed'),
    ({"poll.interval": "500ms"}, "poll.interval: must be at least 1s, got 500ms"),
    ({"poll.settle": "1500ms"}, "poll.settle: must be whole seconds, got 1500ms"),
    ({"api.time_zone": "Mars/Olympus"}, "api.time_zone: unknown time zone 'Mars/Olympus' "
                                        "(an IANA name such as Asia/Shanghai or UTC)"),
    ({"api.time_zone": 8}, "api.time_zone: expected a string, got 8 (int)"),
    ({"poll.window_interval": ""}, "poll.window_interval: empty duration; write whole numbers"
                                   " with units (ms, s, m, h, d, w, y), like 30s, 5m or 1h30m"),
    ({"poll.permanent_error_retry": "0s"},
     "poll.permanent_error_retry: must be greater than 0s, got 0s"),
    ({"state.max_backfill": "0s"}, "state.max_backfill: must be greater than 0s, got 0s"),
    ({"state.path": ""}, "state.path: must not be empty (omit it to keep counters in memory only)"),
    # api
    ({"api.endpoint": "ftp://x/"}, 'api.endpoint: expected an http:// or https:// URL, got "ftp://x/"'),
    ({"api.endpoint": "api.sigcalcloud.com"},
     'api.endpoint: expected an http:// or https:// URL, got "api.sigcalcloud.com"'),
    ({"api.timeout": "0s"}, "api.timeout: must be greater than 0s, got 0s"),
    ({"api.max_concurrency": 0}, "api.max_concurrency: must be between 1 and 256, got 0"),
    ({"api.max_concurrency": 257}, "api.max_concurrency: must be between 1 and 256, got 257"),
    ({"api.max_concurrency": "16"}, 'api.max_concurrency: expected an integer, got "16" (str)'),
    ({"api.max_concurrency": True}, "api.max_concurrency: expected an integer, got true (bool)"),
    ({"api.rate_limit": -1}, "api.rate_limit: must be at least 0 (0 means unlimited), got -1"),
    ({"api.rate_limit": math.inf},
     "api.rate_limit: expected a number of requests per second, got inf (float)"),
    ({"api.public_key": DELETE}, "api.public_key: required (or set api.public_key_file)"),
    ({"api.private_key": ""}, "api.private_key: must not be empty"),
    ({"api.private_key": 12345}, "api.private_key: expected a string, got int"),
    ({"api.private_key_file": "sk.txt"},
     "api.private_key_file: conflicts with api.private_key; set only one of them"),
    ({"api.private_key": "${NOPE}"}, "api.private_key: environment variable NOPE is not set"),
    ({"api.private_key": "${BLANK}"},
     "api.private_key: must not be empty (environment variable BLANK is set but empty)"),
    ({"targets.1.model": "${BLANK}"},
     "targets[1].model: must not be empty (environment variable BLANK is set but empty)"),
    ({"budgets": yaml.safe_load("[{name: b, period: daily, tokens: 5e6}]")},
     'budgets[0].tokens: expected an integer, got "5e6" (str: YAML reads a number written like '
     "this as text; write 5000000)"),
    ({"api.max_concurrency": "5e6"}, 'api.max_concurrency: expected an integer, got "5e6" '
                                     "(str: YAML reads a number written like this as text; "
                                     "write 5000000)"),
    ({"api.public_key": "x${"}, "api.public_key: ${ must be followed by a variable name and },"
                                " like ${HOME} (write $${ for a literal ${)"),
    # windows
    ({"windows": "1h"}, 'windows: expected a list of durations like [1h, 24h], got "1h" (str)'),
    ({"windows": ["1h", "60m"]}, "windows[1]: duplicate of windows[0] (1h)"),
    ({"windows": ["1h", "2h", "3600s"]}, "windows[2]: duplicate of windows[0] (1h)"),
    ({"windows": ["32d"]}, "windows[0]: must be at most 31d, got 32d"),
    ({"windows": ["1500ms"]}, "windows[0]: must be whole seconds, got 1500ms"),
    ({"windows": [60]}, "windows[0]: expected a duration like 1h, got 60 (int)"),
    # targets
    ({"targets": []}, "targets: at least one target is required"),
    ({"targets": DELETE}, "targets: at least one target is required"),
    ({"targets": {"key": "k"}}, 'targets: expected a list of targets, got {\'key\': \'k\'} (dict)'),
    ({"targets.1": "k2"}, 'targets[1]: expected a mapping with key and model, got "k2" (str)'),
    ({"targets.1.key": DELETE}, "targets[1].key: required"),
    ({"targets.1.model": ""}, "targets[1].model: must not be empty"),
    ({"targets.1.project": 123}, "targets[1].project: expected a string, got 123 (int)"),
    ({"targets.0.labels": ["team"]}, "targets[0].labels: expected a mapping, got ['team'] (list)"),
    ({"targets.0.labels.model": "x"},
     f"targets[0].labels.model: collides with a built-in label (built-in: {BUILTINS})"),
    ({"targets.0.labels.__meta": "x"},
     "targets[0].labels.__meta: label names starting with __ are reserved for Prometheus"),
    ({"targets.0.labels.1x": "x"}, "targets[0].labels.1x: invalid label name"
                                   " (use letters, digits and _, not starting with a digit)"),
    ({"targets.0.labels.a-b": "x"}, "targets[0].labels.a-b: invalid label name"
                                    " (use letters, digits and _, not starting with a digit)"),
    ({"targets.0.labels.a b\n": "x"}, 'targets[0].labels["a b\\n"]: invalid label name'
                                       " (use letters, digits and _, not starting with a digit)"),
    ({"targets.0.labels.tier": 1}, "targets[0].labels.tier: expected a string, got 1 (int)"),
    ({"targets.0.labels.tier": ""},
     "targets[0].labels.tier: must be a non-empty string (an empty label is no label)"),
    ({"targets.0.labels.tier": "${MISSING}"},
     "targets[0].labels.tier: environment variable MISSING is not set"),
    ({"targets": [{"key": "a", "model": "m"}, {"project": "p", "key": "k", "model": "m"},
                  {"key": "b", "model": "m"}, {"project": "p", "key": "k", "model": "m"}]},
     'targets[3]: duplicate of targets[1] (project "p", key "k", model "m")'),
]


def plain_id(message: str) -> str:
    """A test id of the message's path in plain characters: mutmut passes ids back to pytest,
    and one with a backslash or a quote (an escaped newline) is not found again."""
    return re.sub(r"[^\w.\[\]-]", "_", message.split(":", maxsplit=1)[0])


@pytest.mark.parametrize(("changes", "message"), BAD, ids=[plain_id(m) for _, m in BAD])
def test_bad_config_is_reported_with_its_exact_message(
    changes: dict[str, object], message: str
) -> None:
    assert problems(with_changes(changes)) == [message]


def test_every_problem_is_reported_at_once() -> None:
    data = with_changes({
        "poll.intreval": "1m", "api.timeout": 60, "windows": ["1h", "1h"],
        "targets.1.key": DELETE, "api.private_key": "${NOPE}",
    })
    assert problems(data) == [
        "api.private_key: environment variable NOPE is not set",
        "api.timeout: expected a duration like 60s, got 60 (int)",
        f"poll.intreval: unknown key (expected one of: {POLL_KEYS})",
        "windows[1]: duplicate of windows[0] (1h)",
        "targets[1].key: required",
    ]


def test_a_top_level_that_is_not_a_mapping_is_one_problem() -> None:
    assert problems(["api"]) == ["(top level): expected a mapping of sections, got ['api'] (list)"]


def test_defaults_come_from_the_dataclasses() -> None:
    config = parse_config(base(), ENV, "/etc/x")
    assert (config.api, config.poll, config.state, config.windows) == (
        Config().api.__class__(public_key="pub-key", private_key=PRIVATE),
        PollConfig(), Config().state, Config().windows,
    )
    assert config.targets == (
        Target(key="k", model="m", project="p", labels=(("team", "search"),)),
        Target(key="k2", model="m"),
    )


def test_values_are_converted_and_labels_sorted() -> None:
    data = with_changes({
        "api.timeout": "1m30s", "api.max_concurrency": 4, "api.rate_limit": 0,
        "poll.interval": "1s", "poll.settle": "0s", "api.time_zone": "Europe/Berlin",
        "state.path": "state.json", "state.max_backfill": "2d", "windows": ["90m", "1w"],
        "targets.0.labels": {"zone": "b", "app": "${TEAM}"},
    })
    config = parse_config(data, ENV, "/etc/x")
    assert (config.api.timeout, config.api.max_concurrency, config.api.rate_limit) == (90, 4, 0)
    assert (config.poll.interval, config.poll.settle) == (1, 0)
    assert config.grid() == Grid("Europe/Berlin")
    assert parse_config(base(), ENV, "/").grid() == Grid("Asia/Shanghai")  # this cloud's days
    assert config.state.path == "/etc/x/state.json"  # relative to the config file
    assert config.state.max_backfill == 2 * 86400
    assert config.windows == (Window("90m", 5400), Window("1w", 604800))
    assert config.targets[0].labels == (("app", "search"), ("zone", "b"))


def test_poll_period_of_older_versions_still_loads_and_is_said_unused(
        caplog: pytest.LogCaptureFixture) -> None:
    config = parse_config(with_changes({"poll.period": "1h"}), ENV, "/")
    assert config.grid() == Grid("Asia/Shanghai")
    assert "poll.period: deprecated and unused" in caplog.text


@pytest.mark.parametrize(("interval", "window_interval", "expected"),
                         [("60s", "5m", 300), ("10m", "5m", 600), ("1s", "2s", 2)])
def test_window_interval_is_never_below_interval(
    interval: str, window_interval: str, expected: float
) -> None:
    data = with_changes({"poll.interval": interval,
                         "poll.window_interval": window_interval})
    assert parse_config(data, ENV, "/").poll.window_interval == expected


def test_env_expansion_everywhere_with_escape() -> None:
    env = {**ENV, "HOST": "cloud.example", "WIN": "6h"}
    data = with_changes({"api.endpoint": "https://${HOST}/", "windows": ["${WIN}"],
                         "targets.1.model": "$${not-a-var}-${TEAM}"})
    config = parse_config(data, env, "/")
    assert config.api.endpoint == "https://cloud.example/"
    assert config.windows == (Window("6h", 21600),)
    assert config.targets[1].model == "${not-a-var}-search"


def test_keys_from_files_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "pub").write_text("  from-file\n")
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "priv").write_text(PRIVATE + "\n")
    data = with_changes({"api.public_key": DELETE, "api.public_key_file": "pub",
                         "api.private_key": DELETE, "api.private_key_file": "keys/priv"})
    config = parse_config(data, {}, str(tmp_path))
    assert (config.api.public_key, config.api.private_key) == ("from-file", PRIVATE)


def test_unreadable_or_empty_key_files_name_the_path(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    data = with_changes({"api.public_key": DELETE, "api.public_key_file": "missing",
                         "api.private_key": DELETE, "api.private_key_file": "empty"})
    assert problems(data, {}, str(tmp_path)) == [
        f"api.public_key_file: cannot read {tmp_path}/missing: No such file or directory",
        f"api.private_key_file: {tmp_path}/empty is empty",
    ]


def test_the_example_file_loads() -> None:
    config = load_config(str(EXAMPLE), ENV)
    assert config.api.private_key == PRIVATE
    assert len(config.targets) == 3
    assert all(t.labels for t in config.targets)
    assert "team" in dict(config.targets[0].labels)
    # Prices and budgets are the operator's to set: shown, commented out, never in force.
    assert (config.pricing.models, config.budgets) == ((), ())


def test_the_example_files_commented_pricing_and_budgets_load(tmp_path: Path) -> None:
    lines = EXAMPLE.read_text().splitlines()
    for block in ("# pricing:", "# budgets:"):
        start = lines.index(block)
        end = lines.index("", start)
        lines[start:end] = [line.removeprefix("# ") for line in lines[start:end]]
    path = tmp_path / "with-prices.yaml"
    path.write_text("\n".join(lines) + "\n")
    config = load_config(str(path), ENV)
    assert {p.model for p in config.pricing.models} >= {"deepseek-ai/DeepSeek-V3"}
    assert [b.name for b in config.budgets] == ["search-daily-tokens", "org-monthly-spend"]


def test_the_minimal_config_is_five_lines_and_loads() -> None:
    text = MINIMAL.read_text()
    assert len([line for line in text.splitlines() if not line.startswith("#")]) == 5
    config = load_config(str(MINIMAL), ENV)
    assert (config.api.public_key, config.api.private_key) == ("pub-key", PRIVATE)
    assert [(t.key, t.model) for t in config.targets] == [
        ("uminferapikey-xyz", "deepseek-ai/DeepSeek-V3")]


def test_the_example_files_commented_discovery_block_loads(tmp_path: Path) -> None:
    # The discovery block ships commented out; uncommented, it must still be valid.
    text = EXAMPLE.read_text()
    start = text.index("# discovery:")
    block = "\n".join(line.removeprefix("# ") if line.startswith("# ") else line
                      for line in text[start:].splitlines())
    path = tmp_path / "with-discovery.yaml"
    path.write_text(text[:start] + block + "\n")
    config = load_config(str(path), ENV)
    assert config.discovery is not None
    assert config.discovery.projects == ("org-abc123",)
    assert config.discovery.max_targets == 1000


def test_the_example_file_documents_every_key() -> None:
    text = EXAMPLE.read_text()
    keys = ["endpoint", "public_key", "public_key_file", "private_key", "private_key_file",
            "timeout", "max_concurrency", "rate_limit", *POLL_KEYS.split(", "), "path",
            "max_backfill", "windows", "targets", "project", "key", "model", "labels"]
    missing = [k for k in keys if not re.search(rf"^\s*(#\s*)?(- )?{k}:", text, re.M)]
    assert missing == []


def test_load_config_file_errors_are_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text(f"api:\n  private_key: {PRIVATE}\n  timeout: [60s\npoll: {{}}\n")
    with pytest.raises(ConfigError) as no_file:
        load_config(str(missing), ENV)
    with pytest.raises(ConfigError) as no_yaml:
        load_config(str(bad_yaml), ENV)
    assert no_file.value.problems == [f"{missing}: cannot read: No such file or directory"]
    [message] = no_yaml.value.problems
    assert message.startswith(f"{bad_yaml}:4:")
    assert "invalid YAML" in message
    assert PRIVATE not in message


def test_load_config_problems_name_the_line_of_their_value(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("api:\n  public_key: a\n  private_key: b\npoll:\n  intreval: 1m\n"
                    "targets:\n  - {key: k, model: m}\n  - model: m\n    labels: {a-b: x}\n"
                    "budgets:\n  - name: b\n    period: daily\n    tokens: 5e6\n")
    with pytest.raises(ConfigError) as caught:
        load_config(str(path), {})
    assert [p.split(": ", 2)[:2] for p in caught.value.problems] == [
        [f"{path}:5", "poll.intreval"],  # an unknown key: its own line
        [f"{path}:8", "targets[1].key"],  # a missing key: where its mapping begins
        [f"{path}:9", "targets[1].labels.a-b"],
        [f"{path}:13", "budgets[0].tokens"],
    ]


def test_load_config_requires_targets_but_parse_config_can_allow_none(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("api: {public_key: a, private_key: b}\n")
    with pytest.raises(ConfigError, match=re.escape("targets: at least one target is required")):
        load_config(str(path), {})
    assert parse_config({"api": {"public_key": "a", "private_key": "b"}}, {}, "/",
                        require_targets=False).targets == ()


def test_metrics_section_is_read_and_shown_in_the_effective_config() -> None:
    data = with_changes({"metrics.semconv": "otel-genai", "metrics.disable": ["windows", "audit"],
                         "metrics.drop_labels": ["key_id", "team"],
                         "metrics.genai_provider_name": "${TEAM}"})
    config = parse_config(data, ENV, "/")
    assert config.metrics == MetricsConfig("otel-genai", "search", "chat", ("windows", "audit"),
                                           ("key_id", "team"))
    assert parse_config(base(), ENV, "/").metrics == MetricsConfig()
    assert redacted(config)["metrics"] == {
        "semconv": "otel-genai", "genai_provider_name": "search", "genai_operation_name": "chat",
        "disable": ["windows", "audit"], "drop_labels": ["key_id", "team"]}


def test_discoverys_static_labels_may_be_dropped() -> None:
    data = with_changes({"discovery": {"projects": ["p"], "labels": {"source": "d"}},
                         "metrics.drop_labels": ["source"]})
    assert parse_config(data, ENV, "/").metrics.drop_labels == ("source",)


def test_redacted_is_json_and_hides_the_private_key() -> None:
    summary = redacted(parse_config(base(), ENV, "/"))
    text = json.dumps(summary)
    assert PRIVATE not in text
    assert summary["api"] == {
        "endpoint": "https://api.sigcalcloud.com/", "public_key": "pub-key",
        "private_key": "<secret>", "timeout": "1m", "max_concurrency": 16, "rate_limit": 20.0,
        "time_zone": "Asia/Shanghai",
    }
    assert summary["windows"] == ["1h", "24h"]


def test_private_key_never_in_repr() -> None:
    assert PRIVATE not in repr(parse_config(base(), ENV, "/"))


def test_private_key_pasted_elsewhere_is_scrubbed_from_messages() -> None:
    data = with_changes({"api.endpoint": "${UMINFER_PRIVATE_KEY}", "targets.0.labels.x": 7,
                         "api.private_key_file": "also-set"})
    text = "\n".join(problems(data))
    assert PRIVATE not in text
    assert 'got "<secret>"' in text


# --- property tests: arbitrary input gives a Config or a ConfigError, and never leaks the key ---


def outcome(data: object, environ: dict[str, str]) -> Config | ConfigError:
    """The Config, or the ConfigError checked for shape; any other exception fails the test."""
    try:
        return parse_config(data, environ, os.sep)
    except ConfigError as exc:
        error = exc
    # Each problem is one line: "<path>: <message>".
    assert error.problems
    assert all(re.fullmatch(r"\S[^\n]*: \S[^\n]*", line) for line in error.problems)
    return error


LEAVES = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
          | st.sampled_from(["60s", "1h", "0s", "1500ms", "7h", "", "${A}", "${NOPE}", "$${",
                             "https://h/", "k", "m", "team", "__x"]))
JSON = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=12)


def section(*keys: str) -> st.SearchStrategy[dict[str, object]]:
    return st.dictionaries(st.sampled_from([*keys, "bogus"]), JSON, max_size=len(keys))


TARGET = section("project", "key", "model", "labels") | JSON
CONFIG_LIKE = st.fixed_dictionaries({}, optional={
    "api": section("endpoint", "public_key", "public_key_file", "private_key_file", "timeout",
                   "max_concurrency", "rate_limit"),
    "poll": section(*POLL_KEYS.split(", ")),
    "state": section("path", "max_backfill"),
    "windows": st.lists(JSON, max_size=4) | JSON,
    "targets": st.lists(TARGET, max_size=4) | JSON,
    "bogus": JSON,
})


#: Under mutation testing (scripts/mutation runs a copy of tests/ under .work/mutation/*/mutants)
#: these sweeps run for every surviving mutant yet never kill one the exact-message tests spare:
#: a few examples keep them honest there at a tenth of the cost.
EXAMPLES = 30 if "mutants" in Path(__file__).parts else 300


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=CONFIG_LIKE, secret=st.text("0123456789abcdef", min_size=16, max_size=40),
       via_env=st.booleans())
def test_arbitrary_data_gives_config_or_config_error(
    data: dict[str, object], secret: str, via_env: bool
) -> None:
    data = copy.deepcopy(data)
    api = data.setdefault("api", {})
    assert isinstance(api, dict)
    api["private_key"] = "${SK}" if via_env else secret
    result = outcome(data, {"A": "a", "SK": secret})
    if isinstance(result, ConfigError):
        assert secret not in str(result)
    else:
        assert result.api.private_key == secret
        assert secret not in repr(result)


@settings(max_examples=EXAMPLES // 3, deadline=None)  # no deadline: a loaded machine
@given(data=JSON)
def test_any_json_is_config_or_config_error(data: object) -> None:
    assert isinstance(outcome(data, {}), Config | ConfigError)


def test_accounting_origin_and_ha_peers_are_read_and_the_password_redacted(
        tmp_path: Path) -> None:
    (tmp_path / "peer-password").write_text("s3cret-peer\n")
    text = ("api: {public_key: a, private_key: b}\ntargets: [{key: k, model: m}]\n"
            # Unquoted, YAML reads a timestamp itself: both forms give the same instant.
            "accounting: {origin: 2025-01-01T08:00:00+08:00}\n"
            "ha: {peers: ['https://replica-1:9866'], username: peer,"
            " password_file: peer-password, timeout: 5s}\n")
    path = tmp_path / "c.yaml"
    path.write_text(text)
    config = load_config(str(path), {})
    quoted = parse_config({"accounting": {"origin": "2025-01-01T00:00:00Z"},
                           "api": {"public_key": "a", "private_key": "b"},
                           "targets": [{"key": "k", "model": "m"}]}, {}, "/")
    assert config.accounting.origin == quoted.accounting.origin == 1735689600
    assert config.ha.peers == ("https://replica-1:9866",)
    assert (config.ha.username, config.ha.password, config.ha.timeout) == \
        ("peer", "s3cret-peer", 5.0)
    summary = json.dumps(redacted(config))
    assert "s3cret-peer" not in summary and "s3cret-peer" not in repr(config)
    assert redacted(config)["accounting"] == {"origin": "2025-01-01T00:00:00Z"}


def test_a_bad_peer_password_file_names_the_path_not_the_content(tmp_path: Path) -> None:
    data = with_changes({"accounting.origin": "2025-01-01T00:00:00Z",
                         "ha.peers": ["https://peer:9866"], "ha.username": "u",
                         "ha.password_file": "missing"})
    assert problems(data, base_dir=str(tmp_path)) == [
        f"ha.password_file: cannot read {tmp_path}/missing: No such file or directory"]

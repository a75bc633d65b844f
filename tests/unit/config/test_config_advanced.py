"""Issue #32: each account's limits are its own (no invented aggregate ``Config.api``), tuning
lives under ``advanced:``, and the old spellings of its keys still load for a release, each with
one warning."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from exporter import cli
from exporter.config import ApiConfig, Config, ConfigError, load_config, parse_config, redacted

ENV = {"SECRET_A": "private-a", "SECRET_B": "private-b"}


def account(name: str, **extra: object) -> dict[str, object]:
    return {"name": name, "endpoint": f"https://{name}.example/", "public_key": f"pub-{name}",
            "private_key": f"${{SECRET_{name.upper()}}}", **extra}


def two_accounts(a: dict[str, object], b: dict[str, object]) -> dict[str, Any]:
    return {"accounts": [account("a", **a), account("b", **b)],
            "targets": [{"key": "k", "model": "m", "account": "a"},
                        {"key": "k", "model": "m", "account": "b"}]}


def test_several_accounts_make_up_no_api_of_their_own() -> None:
    config = parse_config(two_accounts({"timeout": "30s", "max_concurrency": 3},
                                       {"timeout": "2m", "rate_limit": 0}), ENV, "/")
    assert config.api == ApiConfig()  # left at its default, never read with several
    assert redacted(config)["api"] is None
    apis = config.account_apis()
    assert [(api.timeout, api.max_concurrency, api.rate_limit) for api in apis.values()] == [
        (30, 3, 20), (120, 16, 0)]
    assert (config.longest_timeout(), config.total_concurrency(), config.total_rate_limit()) == (
        120, 19, 0)  # one account without a limit: the whole process has none


def test_a_single_account_plans_with_its_own_limits_exactly() -> None:
    config = parse_config({"api": {"public_key": "p", "private_key": "q", "timeout": "45s",
                                   "max_concurrency": 5, "rate_limit": 7},
                           "targets": [{"key": "k", "model": "m"}]}, ENV, "/")
    assert (config.longest_timeout(), config.total_concurrency(), config.total_rate_limit()) == (
        config.api.timeout, config.api.max_concurrency, config.api.rate_limit) == (45, 5, 7)



def single(**sections: dict[str, object]) -> dict[str, Any]:
    """A valid one-account config with ``sections`` added."""
    return {"api": {"public_key": "p", "private_key": "q"},
            "targets": [{"key": "k", "model": "m"}], **sections}


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, ENV, "/")
    return info.value.problems


def loaded(data: dict[str, Any]) -> tuple[Config, list[str]]:
    """The config and the warnings its load gave."""
    warnings: list[str] = []
    return parse_config(data, ENV, "/", on_warning=warnings.append), warnings


def test_advanced_keys_set_what_the_code_reads_without_a_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    config = parse_config(single(
        advanced={"window_interval": "10m", "permanent_error_retry": "1h",
                  "discovery_statuses": [1, 2]},
        discovery={"projects": ["p"]}), ENV, "/")
    assert (config.poll.window_interval, config.poll.permanent_error_retry) == (600, 3600)
    assert config.discovery is not None and config.discovery.statuses == (1, 2)
    assert redacted(config)["advanced"] == {
        "window_interval": "10m", "permanent_error_retry": "1h", "discovery_statuses": [1, 2]}
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


OLD = [("poll", "window_interval", "10m", "window_interval"),
       ("poll", "permanent_error_retry", "10m", "permanent_error_retry"),
       ("discovery", "statuses", [1, 2], "discovery_statuses")]
IDS = [f"{section}.{key}" for section, key, _, _ in OLD]


@pytest.mark.parametrize(("section", "key", "value", "new"), OLD, ids=IDS)
def test_an_old_spelling_still_loads_with_exactly_one_warning(
        caplog: pytest.LogCaptureFixture, section: str, key: str, value: object,
        new: str) -> None:
    config = parse_config(single(**{section: {key: value}}), ENV, "/")
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warned == [f"{section}.{key}: deprecated; write advanced.{new} instead (removed in "
                      "the release after next)"]
    assert config == parse_config(single(**{section: {}}, advanced={new: value}), ENV, "/")


def test_poll_period_loads_with_one_warning_to_remove_it() -> None:
    config, warnings = loaded(single(poll={"period": "1h"}))
    assert config.poll == parse_config(single(), ENV, "/").poll
    assert len(warnings) == 1
    assert warnings[0].startswith("poll.period: deprecated and unused")
    assert warnings[0].endswith("remove it (removed in the release after next)")


@pytest.mark.parametrize(("section", "key", "value", "new"), OLD, ids=IDS)
def test_both_spellings_are_an_error_naming_both(section: str, key: str, value: object,
                                                 new: str) -> None:
    assert problems(single(**{section: {key: value}}, advanced={new: value})) == [
        f"advanced.{new}: also set as {section}.{key}, its deprecated spelling; keep only "
        f"advanced.{new}"]


def test_an_unknown_key_under_advanced_is_an_error_with_its_path() -> None:
    assert problems(single(advanced={"window_intreval": "5m", "period": "1h"})) == [
        "advanced.window_intreval: unknown key (expected one of: window_interval, "
        "permanent_error_retry, discovery_statuses)",
        "advanced.period: unknown key (expected one of: window_interval, "
        "permanent_error_retry, discovery_statuses)"]


def test_old_spellings_are_not_offered_as_keys() -> None:
    assert problems(single(poll={"intreval": "1m"}, discovery={"satuses": [1]})) == [
        "discovery.satuses: unknown key (expected one of: projects, include, exclude, models, "
        "refresh, max_targets, labels, accounts)",
        "poll.intreval: unknown key (expected one of: interval, settle)"]


def test_a_bad_value_is_reported_where_it_was_written() -> None:
    assert problems(single(advanced={"window_interval": "0s"})) == [
        "advanced.window_interval: must be greater than 0s, got 0s"]
    assert problems(single(discovery={"statuses": []})) == [
        "discovery.statuses: expected a non-empty list like [1], got [] (list)"]


def test_discovery_statuses_without_discovery_is_said_to_do_nothing() -> None:
    _, warnings = loaded(single(advanced={"discovery_statuses": [1]}))
    assert warnings == ["advanced.discovery_statuses: has no effect without discovery"]


def test_load_config_gives_each_warning_its_line(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("api: {public_key: p, private_key: q}\npoll:\n  interval: 1m\n"
                    "  window_interval: 10m\ntargets: [{key: k, model: m}]\n")
    warnings: list[str] = []
    config = load_config(str(path), ENV, warnings.append)
    assert config.poll.window_interval == 600
    assert warnings == [f"{path}:4: poll.window_interval: deprecated; write "
                        "advanced.window_interval instead (removed in the release after next)"]


def test_config_check_prints_the_warnings_and_passes(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("api: {public_key: p, private_key: q}\npoll: {permanent_error_retry: 1m}\n"
                    "targets: [{key: k, model: m}]\n")
    code = cli.check(cli.parse_flags([f"--config.file={path}", "--config.check"]))
    out, err = capsys.readouterr()
    assert (code, out) == (0, f"{path}: valid (1 targets)\n")
    assert err.splitlines() == [
        f"warning: {path}:2: poll.permanent_error_retry: deprecated; write "
        "advanced.permanent_error_retry instead (removed in the release after next)"]


ORIGIN: dict[str, object] = {"origin": "2025-01-01T00:00:00Z"}


def test_max_backfill_with_an_origin_is_said_to_do_nothing() -> None:
    config, warnings = loaded(single(state={"max_backfill": "2h"}, accounting=ORIGIN))
    assert config.state.max_backfill == 7200  # kept as written; the origin overrides it
    assert warnings == ["state.max_backfill: has no effect with accounting.origin: a restart "
                        "catches up from the origin however long it was down; remove "
                        "state.max_backfill"]


@pytest.mark.parametrize("sections", [
    {"state": {"max_backfill": "2h"}},  # without an origin it is what bounds a restart
    {"state": {"path": "s.json"}, "accounting": ORIGIN},  # the default is no news
])
def test_max_backfill_alone_or_an_origin_alone_is_no_warning(
        sections: dict[str, dict[str, object]]) -> None:
    assert loaded(single(**sections))[1] == []

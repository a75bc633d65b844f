"""The config's dataclasses: the defaults an operator gets (and sees in the effective config), a
target's identity, and what the whole process plans with across accounts."""

from __future__ import annotations

from decimal import Decimal

from exporter.config import ConfigError, redacted
from exporter.config.types import (
    DEFAULT_LISTEN_ADDRESS,
    AccountConfig,
    AccountingConfig,
    ApiConfig,
    BudgetConfig,
    Config,
    HaConfig,
    ModelPrice,
    PollConfig,
    Target,
)
from exporter.core.grid import Grid
from tests.configs import parsed


def test_the_effective_config_of_a_minimal_file_shows_every_default() -> None:
    assert redacted(parsed(discovery={})) == {
        "api": {"endpoint": "https://api.sigcalcloud.com/", "public_key": "p",
                "private_key": "<secret>", "timeout": "1m", "max_concurrency": 16,
                "rate_limit": 20.0, "time_zone": "Asia/Shanghai"},
        "poll": {"interval": "1m", "settle": "10m"},
        "advanced": {"window_interval": "5m", "permanent_error_retry": "5m",
                     "discovery_statuses": [1]},
        "state": {"path": None, "max_backfill": "1d"},
        "windows": ["1h", "24h"],
        "targets": [{"project": "", "key": "k", "model": "m", "labels": {}}],
        "pricing": {"currency": "USD", "from_api": False, "models": {}},
        "budgets": [],
        "discovery": {"projects": [""], "include": [], "exclude": [], "models": [],
                      "refresh": "10m", "max_targets": 1000, "labels": {}, "accounts": []},
        "keys": {"enabled": True, "interval": "5m"},
        "accounts": [],
        "accounting": {"origin": None},
        "metrics": {"semconv": "native", "genai_provider_name": "ucloud",
                    "genai_operation_name": "chat", "disable": [], "drop_labels": []},
        "ha": {"peers": [], "username": None, "password": None, "ca_file": None,
               "timeout": "10s", "insecure_http_auth": False},
    }


def test_the_defaults_no_file_shows() -> None:
    assert DEFAULT_LISTEN_ADDRESS == ":9866"
    assert PollConfig().test_period is None
    assert (HaConfig().password, HaConfig().insecure_http_auth) == ("", False)
    assert AccountingConfig().origin is None
    assert ModelPrice("m") == ModelPrice("m", Decimal(0), Decimal(0), Decimal(0), Decimal(0),
                                         "USD")
    assert BudgetConfig("b", "daily") == BudgetConfig("b", "daily", None, None, "USD", None,
                                                      None, None)
    assert (Config().discovery, Config().targets, Config().budgets) == (None, (), ())


def test_secrets_stay_out_of_repr() -> None:
    shown = repr(Config(api=ApiConfig(private_key="sk-secret"), ha=HaConfig(password="pw-secret")))
    assert "sk-secret" not in shown and "pw-secret" not in shown


def test_a_target_is_identified_by_its_account_only_when_it_has_one() -> None:
    assert Target("k", "m", "p").ident == "p/k/m"
    assert Target("k", "m").ident == "/k/m"
    assert Target("k", "m", "p", account="a").ident == "a:p/k/m"


def test_a_config_error_says_every_problem_one_a_line() -> None:
    error = ConfigError(["a: one", "b: two"])
    assert (str(error), error.problems) == ("a: one\nb: two", ["a: one", "b: two"])


def several() -> Config:
    return Config(accounts=(
        AccountConfig("a", ApiConfig(timeout=30, max_concurrency=3, rate_limit=5,
                                     time_zone="UTC")),
        AccountConfig("b", ApiConfig(timeout=120, max_concurrency=4, rate_limit=7,
                                     time_zone="Europe/Berlin"))))


def test_several_accounts_plan_with_their_own_limits_summed() -> None:
    config = several()
    assert list(config.account_apis()) == ["a", "b"]
    assert (config.longest_timeout(), config.total_concurrency(), config.total_rate_limit()) == (
        120, 7, 12)


def test_one_unlimited_account_makes_the_whole_process_unlimited() -> None:
    config = Config(accounts=(AccountConfig("a", ApiConfig(rate_limit=5)),
                              AccountConfig("b", ApiConfig(rate_limit=0))))
    assert config.total_rate_limit() == 0


def test_a_single_account_is_the_api_form() -> None:
    config = Config(api=ApiConfig(timeout=45, max_concurrency=5, rate_limit=7))
    assert config.account_apis() == {"": config.api}
    assert (config.longest_timeout(), config.total_concurrency(), config.total_rate_limit()) == (
        45, 5, 7)


def test_each_accounts_days_start_at_its_own_midnight() -> None:
    config = several()
    assert config.grid("a") == Grid("UTC")
    assert config.grid("b") == Grid("Europe/Berlin")
    assert config.grid("unknown") == Grid(config.api.time_zone)
    assert Config().grid() == Grid("Asia/Shanghai")


def test_a_test_period_replaces_the_providers_days() -> None:
    config = Config(poll=PollConfig(test_period=60))
    assert config.grid() == Grid.every(60) != Grid("Asia/Shanghai")

"""Issue #32: each account's limits are its own (no invented aggregate ``Config.api``), tuning
lives under ``advanced:``, and the old spellings of its keys still load for a release, each with
one warning."""

from __future__ import annotations

from typing import Any

from exporter.config import ApiConfig, parse_config, redacted

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


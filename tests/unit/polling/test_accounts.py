"""Several accounts in one exporter: config, an ``account`` label only with more than one, and
each account's calls through its own client, rate limit and concurrency."""

from __future__ import annotations

import decimal
import random
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
import requests
from prometheus_client import CollectorRegistry

import exporter.polling.accounts as accounts_module
from exporter.accounting.snapshot import DiscoverySnapshot, KeyHealth, KeysSnapshot
from exporter.api import transport
from exporter.api.clock import ApiClock
from exporter.api.errors import ApiError
from exporter.api.ratelimit import RateLimiter
from exporter.config import ApiConfig, Config, ConfigError, Target, parse_config
from exporter.core.clock import FakeClock
from exporter.core.grid import Grid
from exporter.core.usage import Reading
from exporter.metrics.selfmetrics import SelfMetrics
from exporter.polling.accounts import (
    AccountRouter,
    Accounts,
    ApiStack,
    account_view,
    api_stack,
    discovering,
    grid_of,
    merged_discovery,
    merged_keys,
    owned,
)
from exporter.polling.discovery import DiscoveryResult
from exporter.polling.sharding import Shard
from exporter.polling.workers import WorkerPool
from exporter.service import Service
from exporter.simulator import SimKey, SimModel, build_simulator
from exporter.simulator.build import DEMO_PROJECT
from tests.fakeapi import FakeApi, SkewClock
from tests.fleet import SECOND_BUCKETS
from tests.harness import parse_metrics

ENV = {"SECRET_A": "private-a", "SECRET_B": "private-b"}


def account(name: str, **extra: object) -> dict[str, object]:
    return {"name": name, "endpoint": f"https://{name}.example/", "public_key": f"pub-{name}",
            "private_key": f"${{SECRET_{name.upper()}}}", **extra}


def target(key: str, **extra: object) -> dict[str, object]:
    return {"key": key, "model": "m", **extra}


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, ENV, "/etc")
    return info.value.problems


def test_one_account_under_accounts_is_the_api_form() -> None:
    single = parse_config({"accounts": [account("a", rate_limit=5)],
                           "targets": [target("k", account="a"), target("j")]}, ENV, "/etc")
    plain = parse_config({"api": {k: v for k, v in account("a", rate_limit=5).items()
                                  if k != "name"}, "targets": [target("k"), target("j")]},
                         ENV, "/etc")
    assert single == plain
    assert [t.ident for t in single.targets] == ["/k/m", "/j/m"]  # state unchanged


def test_several_accounts_label_their_targets_and_keep_their_own_quotas() -> None:
    config = parse_config({"accounts": [account("a", rate_limit=5, max_concurrency=2),
                                        account("b", rate_limit=7, timeout="90s")],
                           "targets": [target("k", account="a", labels={"team": "x"}),
                                       target("k", account="b")]}, ENV, "/etc")
    assert [(t.account, t.ident, t.labels) for t in config.targets] == [
        ("a", "a:/k/m", (("account", "a"), ("team", "x"))),
        ("b", "b:/k/m", (("account", "b"),))]
    apis = config.account_apis()
    assert (apis["a"].rate_limit, apis["a"].max_concurrency, apis["a"].private_key) == (
        5, 2, "private-a")
    assert (apis["b"].endpoint, apis["b"].timeout, apis["b"].private_key) == (
        "https://b.example/", 90.0, "private-b")
    # Each account's own limits; what the process plans with is worked out from them by name.
    assert (config.longest_timeout(), config.total_concurrency(), config.total_rate_limit()) == (
        90, 18, 12)


@pytest.mark.parametrize(("data", "expected"), [
    ({"accounts": [account("a"), account("b")], "targets": [target("k")]},
     ["targets[0].account: required with several accounts (one of: a, b)"]),
    ({"accounts": [account("a"), account("b")], "targets": [target("k", account="c")]},
     ["targets[0].account: unknown account \"c\" (accounts: a, b)"]),
    ({"api": {"public_key": "p", "private_key": "q"}, "targets": [target("k", account="a")]},
     ["targets[0].account: no accounts are configured (set accounts:, or remove it)"]),
    ({"api": {"public_key": "p", "private_key": "q"}, "accounts": [account("a")],
      "targets": [target("k")]},
     ["accounts: conflicts with api; configure one account as api: or every account under "
      "accounts:, not both"]),
    ({"accounts": [account("a"), account("a")], "targets": [target("k", account="a")]},
     ['accounts[1].name: duplicate of accounts[0].name "a"']),
    ({"accounts": [{"name": "a", "public_key": "p"}, account("b")],
      "targets": [target("k", account="b")]},
     ["accounts[0].private_key: required (or set accounts[0].private_key_file)"]),
    ({"accounts": [account("a"), account("b")], "discovery": {"accounts": ["z"]}},
     ["discovery.accounts[0]: unknown account \"z\" (accounts: a, b)"]),
    ({"accounts": [], "targets": [target("k")]},
     ["accounts: expected a non-empty list of accounts, got [] (list)"]),
    ({"accounts": [account("a"), account("b")],
      "targets": [target("k", account="a", labels={"account": "x"})]},
     ["targets[0].labels.account: collides with a built-in label (built-in: project_id, "
      "key_id, model, window, currency, instance, job, key_name, budget, period, account)"]),
])
def test_bad_accounts_are_reported_with_their_path(data: dict[str, Any],
                                                   expected: list[str]) -> None:
    assert problems(data) == expected


class Slow:
    """A client that records how many reads it has in flight at once."""

    def __init__(self) -> None:
        self.now = self.most = 0
        self.lock = threading.Lock()

    def get_usage(self, target: Target, start: int, end: int, deadline: float) -> Reading:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(0.05)
        with self.lock:
            self.now -= 1
        return Reading.__new__(Reading)

    def sync_clock(self, deadline: float) -> None:
        pass

    def close(self) -> None:
        pass


def test_the_router_holds_each_account_to_its_own_concurrency() -> None:
    a, b = Slow(), Slow()
    router = AccountRouter({"a": a, "b": b}, {"a": 2, "b": 5})
    threads = [threading.Thread(target=router.get_usage, args=(Target("k", "m", account=n),
                                                                0, 1, 0.0))
               for n in "ab" * 8]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (a.most, b.most) == (2, 5)


def test_two_accounts_each_read_through_their_own_api_with_an_account_label() -> None:
    clock = FakeClock(1_767_225_600.0)
    with build_simulator(1, 1, 1, clock, backfill=0, tick=60, public_key="pa",
                         private_key="sa") as one, \
            build_simulator(2, 2, 1, clock, backfill=0, tick=60, public_key="pb",
                            private_key="sb") as two:
        two.catalog.add_key(SimKey(DEMO_PROJECT, "uminferapikey-demo02", "b-only", "s",
                                   daily_limit="5"))
        config = parse_config({
            "accounts": [{"name": "one", "endpoint": one.url, "public_key": "pa",
                          "private_key": "sa", "rate_limit": 5},
                         {"name": "two", "endpoint": two.url, "public_key": "pb",
                          "private_key": "sb", "rate_limit": 7}],
            "targets": [{"account": "one", "project": DEMO_PROJECT,
                         "key": "uminferapikey-demo01", "model": "deepseek-ai/DeepSeek-V3"},
                        {"account": "two", "project": DEMO_PROJECT,
                         "key": "uminferapikey-demo02", "model": "deepseek-ai/DeepSeek-V3"}],
            "windows": [],
        }, {}, "/etc")
        registry = CollectorRegistry()
        service = Service(config, clock, registry, lambda: config)
        try:
            for _ in range(3):
                service.run_cycle()
                clock.advance(60)
            samples = parse_metrics(service.cache.body(False).decode())
            # Each account is its own quota: the gauge is the exporter's whole allowance.
            assert registry.get_sample_value("uminfer_api_rate_limit_requests_per_second") == 12
        finally:
            service.stop()
        calls = {name: sim.stats().by_action for name, sim in (("one", one), ("two", two))}
    assert calls["one"]["ListUMInferAPIKey"] == calls["two"]["ListUMInferAPIKey"] == 1
    assert calls["one"]["GetUMInferTokenUsage"] > 0 and calls["two"]["GetUMInferTokenUsage"] > 0
    ups = {dict(labels)["account"]: dict(labels)["key_id"]
           for (name, labels) in samples if name == "uminfer_up"}
    assert ups == {"one": "uminferapikey-demo01", "two": "uminferapikey-demo02"}
    limits = {(dict(labels)["account"], dict(labels)["key_id"]): value
              for (name, labels), value in samples.items() if name == "uminfer_key_limit_amount"
              and dict(labels)["period"] == "daily"}
    # demo02 of account "one" is not polled; account "two" lists its own demo02 (limit 5).
    assert limits == {("one", "uminferapikey-demo01"): float(Decimal("10000")),
                      ("two", "uminferapikey-demo02"): 5.0}


def test_two_accounts_listing_one_model_each_price_their_own_usage() -> None:
    # r6: account cn lists the model at CNY 2/8 per million tokens, account intl at USD
    # 0.27/1.10; intl's usage was priced at cn's CNY price and its USD budget stayed at 0.
    clock, model = FakeClock(1_767_225_600.0), "deepseek-ai/DeepSeek-V3"
    with build_simulator(1, 1, 1, clock, backfill=0, tick=60, public_key="pa",
                         private_key="sa", buckets=SECOND_BUCKETS) as cn, \
            build_simulator(1, 1, 1, clock, backfill=0, tick=60, public_key="pb",
                            private_key="sb", buckets=SECOND_BUCKETS) as intl:
        intl.catalog.add_model(SimModel(model, prompt=0.27, completion=1.10, currency="USD"))
        config = parse_config({
            "accounts": [{"name": "cn", "endpoint": cn.url, "public_key": "pa",
                          "private_key": "sa"},
                         {"name": "intl", "endpoint": intl.url, "public_key": "pb",
                          "private_key": "sb"}],
            "targets": [{"account": name, "project": DEMO_PROJECT, "key": "uminferapikey-demo01",
                         "model": model} for name in ("cn", "intl")],
            "pricing": {"currency": "USD", "from_api": True},
            "budgets": [{"name": "intl-usd", "period": "daily", "cost": "1000"}],
            "windows": [], "poll": {"interval": "60s", "settle": "5s"},
        }, {}, "/etc")
        registry = CollectorRegistry()
        service = Service(config, clock, registry, lambda: config)
        # A caller's context that raises on any rounding: money arithmetic anywhere in the
        # cycle outside the exporter's own context would cost the stage and these numbers.
        rounding = decimal.Context(prec=6, traps=[decimal.Rounded, decimal.Inexact])
        try:
            with decimal.localcontext(rounding):
                for _ in range(5):
                    service.run_cycle()
                    clock.advance(60)
            samples = parse_metrics(service.cache.body(False).decode())
        finally:
            service.stop()
        assert registry.get_sample_value("uminfer_poll_errors_total", {"stage": "cost"}) in (
            None, 0)

    def of(name: str, account: str) -> dict[str, float]:
        return {dict(labels).get("currency", ""): value for (n, labels), value in samples.items()
                if n == name and dict(labels)["account"] == account}

    tokens = {a: (of("uminfer_input_tokens_total", a)[""], of("uminfer_output_tokens_total", a)[""])
              for a in ("cn", "intl")}
    assert min(tokens["intl"]) > 0
    assert of("uminfer_cost_total", "cn") == pytest.approx(
        {"CNY": (tokens["cn"][0] * 2 + tokens["cn"][1] * 8) / 1e6})
    usd = (tokens["intl"][0] * 0.27 + tokens["intl"][1] * 1.10) / 1e6
    assert of("uminfer_cost_total", "intl") == pytest.approx({"USD": usd})
    budget = [v for (n, labels), v in samples.items() if n == "uminfer_budget_used"]
    assert budget == pytest.approx([usd])


# --- each account's view, and the accounts' snapshots merged ---


def two_accounts(discovery: dict[str, Any] | None = None) -> Config:
    return parse_config({"accounts": [account("a"), account("b")],
                         "targets": [target("k", account="a"), target("j", account="b"),
                                     target("i", account="a")],
                         **({"discovery": discovery} if discovery is not None else {})},
                        ENV, "/etc")


def test_an_account_sees_its_own_targets_and_discovery_only_when_it_discovers() -> None:
    config = two_accounts({"projects": ["org"]})
    mine = account_view(config, "a", discover=True)
    assert [t.key for t in mine.targets] == ["k", "i"]
    assert mine.discovery == config.discovery and mine.accounts == config.accounts
    assert account_view(config, "b", discover=False).discovery is None
    assert [t.key for t in account_view(config, "b", discover=False).targets] == ["j"]


def test_discovery_lists_every_account_unless_it_names_some() -> None:
    assert not discovering(two_accounts(), "a")
    every = two_accounts({"projects": ["org"]})
    assert discovering(every, "a") and discovering(every, "b")
    named = two_accounts({"projects": ["org"], "accounts": ["b"]})
    assert (discovering(named, "a"), discovering(named, "b")) == (False, True)


def test_discovered_targets_are_named_and_labelled_as_static_ones() -> None:
    found = (Target("d1", "m", "org", labels=(("team", "x"),)), Target("d2", "m", "org"))
    assert owned(found, "a", True) == (
        Target("d1", "m", "org", labels=(("account", "a"), ("team", "x")), account="a"),
        Target("d2", "m", "org", labels=(("account", "a"),), account="a"))
    assert owned(found, "a", False) == found  # one account: nothing about them changes


def test_discovery_snapshots_merge_counts_and_the_oldest_success() -> None:
    one = DiscoverySnapshot(1, 2, 3, 4, 100.0, 5)
    two = DiscoverySnapshot(10, 20, 30, 40, 50.0, 60)
    assert merged_discovery([None, None]) is None
    assert merged_discovery([]) is None
    assert merged_discovery([one, None]) == one
    assert merged_discovery([one, two]) == DiscoverySnapshot(11, 22, 33, 44, 50.0, 65)
    never = DiscoverySnapshot(0, 0, 0, 0, None, 1)
    assert merged_discovery([one, never]) == DiscoverySnapshot(1, 2, 3, 4, None, 6)


def test_key_snapshots_merge_keys_failures_by_reason_and_the_oldest_success() -> None:
    ka, kb = (KeyHealth("org", k, k, 1, False) for k in ("ka", "kb"))
    one = KeysSnapshot((ka,), 100.0, (("network", 1), ("retcode", 2)))
    two = KeysSnapshot((kb,), 50.0, (("http", 4), ("network", 3)))
    assert merged_keys([None]) is None
    assert merged_keys([None, one]) == one
    assert merged_keys([one, two]) == KeysSnapshot(
        (ka, kb), 50.0, (("http", 4), ("network", 4), ("retcode", 2)))
    assert merged_keys([one, KeysSnapshot((), None, ())]).last_success is None  # type: ignore[union-attr]


class Clocked(Slow):
    """A client whose clock sync fails with ``reason`` (None: it answered)."""

    def __init__(self, reason: str | None) -> None:
        super().__init__()
        self.reason, self.synced, self.closed = reason, 0, False
        self.deadlines: list[float] = []

    def sync_clock(self, deadline: float) -> str | None:  # type: ignore[override]
        self.synced += 1
        self.deadlines.append(deadline)
        return self.reason

    def close(self) -> None:
        self.closed = True


def test_the_router_asks_every_account_for_the_clock_and_says_why_none_answered() -> None:
    clients = [Clocked(None), Clocked("refused"), Clocked("timed out")]
    closed: list[str] = []
    router = AccountRouter(dict(zip("abc", clients, strict=True)), dict.fromkeys("abc", 1),
                           [lambda: closed.append("pool")])
    assert router.sync_clock(1.0) == "refused"
    assert [c.deadlines for c in clients] == [[1.0]] * 3
    assert AccountRouter({"a": Clocked(None)}, {"a": 1}).sync_clock(1.0) is None
    router.close()
    assert [c.closed for c in clients] == [True] * 3 and closed == ["pool"]


def test_effective_adds_this_shards_discovered_targets_a_static_one_winning() -> None:
    config = two_accounts({"projects": ["org"]})
    accounts = Accounts(lambda api: pytest.fail("not connected here"), FakeClock())
    static = config.targets[0]
    accounts._discovery("a").result = DiscoveryResult(targets=(
        replace(static, labels=()), Target("d1", "m", "org"), Target("d2", "m", "org")))
    accounts._discovery("b").result = DiscoveryResult(targets=(Target("d3", "m", "org"),))
    every = accounts.effective(config, Shard(0, 1))
    assert [(t.account, t.ident, t.labels) for t in every.targets[3:]] == [
        ("a", "a:org/d1/m", (("account", "a"),)), ("a", "a:org/d2/m", (("account", "a"),)),
        ("b", "b:org/d3/m", (("account", "b"),))]
    assert every.targets[:3] == config.targets  # the static k of a kept, not doubled
    half = accounts.effective(config, Shard(0, 2))
    assert [t.ident for t in half.targets[3:]] == [
        t.ident for t in every.targets[3:] if Shard(0, 2).owns(t)]
    none = Accounts(lambda api: pytest.fail("not connected here"), FakeClock())
    assert none.effective(config, Shard(0, 1)) is config


def test_a_targets_grid_is_its_accounts_provider_days() -> None:
    config = parse_config({"accounts": [account("a", time_zone="UTC"),
                                        account("b", time_zone="America/New_York")],
                           "targets": [target("k", account="a")]}, ENV, "/etc")
    grids = grid_of(config)
    assert grids("a:/k/m") == Grid("UTC") != grids("b:/k/m") == Grid("America/New_York")
    assert grids("z:/k/m") == grids("/k/m") == config.grid("")  # no such account: the default
    assert grids("/a:k/m") == config.grid("")
    assert grids("b:/k:x/m") == Grid("America/New_York")  # the account is before the first :


class Fleet:
    """Every account connected to one fake API (its keys listed by discovery)."""

    def __init__(self) -> None:
        self.clock = SkewClock(1_700_006_400, 0)
        self.api = FakeApi(self.clock)
        self.stacks: list[ApiStack] = []
        self.closed: list[int] = []  # the stacks whose pool was closed, by index
        self.accounts = Accounts(self.connect, self.clock)

    def connect(self, api: ApiConfig) -> ApiStack:
        pool, index = WorkerPool(1), len(self.stacks)
        close = pool.close

        def closing() -> None:
            self.closed.append(index)
            close()
        pool.close = closing  # type: ignore[method-assign]
        stack = ApiStack(pool, self.api, self.api,
                         RateLimiter(api.rate_limit, 1, self.clock) if api.rate_limit else None)
        self.stacks.append(stack)
        return stack


def test_one_account_is_its_own_stack_several_share_a_pool_and_route() -> None:
    fleet = Fleet()
    assert fleet.accounts.current_rate() == 0  # nothing connected yet
    single = parse_config({"api": {"public_key": "p", "private_key": "q", "rate_limit": 3},
                           "targets": [target("k")]}, ENV, "/etc")
    assert fleet.accounts.connect(single) is fleet.stacks[0]
    assert fleet.accounts.current_rate() == 3
    config = parse_config({"accounts": [account("a", rate_limit=5), account("b", rate_limit=7)],
                           "targets": [target("k", account="a")]}, ENV, "/etc")
    stack = fleet.accounts.connect(config)
    [a, _] = fleet.stacks[1:]
    assert isinstance(stack.client, AccountRouter) and stack.keys is a.keys
    assert fleet.accounts.current_rate() == 12
    stack.client.close()
    assert fleet.closed == [1, 2]  # each account's own pool, with the router
    stack.pool.close()


def test_discovery_runs_for_the_accounts_it_names_and_is_merged() -> None:
    fleet = Fleet()
    config = two_accounts({"projects": ["org"], "accounts": ["a"], "refresh": "60s"})
    fleet.accounts.connect(config)
    assert fleet.accounts.refresh_targets(config, deadline=1e12)
    assert not fleet.accounts.refresh_targets(config, deadline=1e12)  # not due again yet
    found = fleet.accounts.effective(config, Shard(0, 1)).targets[3:]
    assert [(t.account, t.key) for t in found] == [("a", "d1"), ("a", "d2"), ("a", "d3")]
    discovery, _ = fleet.accounts.snapshots(config, found)
    assert discovery is not None and (discovery.targets, discovery.keys) == (3, 3)
    for stack in fleet.stacks:
        stack.close()


def stack_of(api: ApiConfig, clock: FakeClock) -> ApiStack:
    return api_stack(api, clock=clock, rng=random.Random(7),
                     observer=SelfMetrics(CollectorRegistry()), api_clock=ApiClock(clock))


def test_an_accounts_stack_bursts_no_more_than_its_concurrency() -> None:
    clock = FakeClock(1_700_000_000.0)
    stack = stack_of(ApiConfig(endpoint="http://127.0.0.1:9", rate_limit=0.001,
                               max_concurrency=1), clock)
    try:
        assert stack.limiter is not None and stack.limiter.current_rate == 0.001
        assert stack.limiter.acquire(clock.monotonic())
        assert not stack.limiter.acquire(clock.monotonic())  # a burst of one
    finally:
        stack.close()


def test_an_accounts_stack_uses_the_proxy_for_its_endpoint(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    made: list[requests.Session] = []
    real = transport.pooled_session

    def pooled(endpoint: str, size: int, environ: Mapping[str, str]) -> requests.Session:
        made.append(real(endpoint, size, environ))
        return made[-1]

    monkeypatch.setattr(accounts_module, "pooled_session", pooled)
    stack = stack_of(ApiConfig(endpoint="https://api.example/"), FakeClock())
    stack.close()
    assert made[0].proxies == {"https": "http://proxy.example:3128"}


def test_an_accounts_stack_retries_a_refused_call_with_backoff_until_the_deadline() -> None:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]  # closed again below: nothing listens there
    clock = FakeClock(1_700_000_000.0)
    stack = stack_of(ApiConfig(endpoint=f"http://127.0.0.1:{port}", public_key="p",
                               private_key="s", timeout=2, rate_limit=0), clock)
    try:
        with pytest.raises(ApiError) as caught:
            stack.client.get_usage(Target("k", "m"), 0, 59, clock.monotonic() + 30)
    finally:
        stack.close()
    assert caught.value.category == "network"
    assert clock.monotonic() > 1  # it waited between attempts (jittered backoff)

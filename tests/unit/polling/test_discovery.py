"""Discovery: strict parsing that drops the secret, paging against the simulator, filters, cap."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from decimal import Decimal

import pytest
import requests

from exporter.accounting.snapshot import DiscoverySnapshot
from exporter.api.client import ApiClient
from exporter.api.errors import ApiError
from exporter.api.keys import ApiKey, ApiModel, KeyClient, parse_keys, parse_models
from exporter.api.ratelimit import RateLimiter
from exporter.config import (
    ApiConfig,
    Config,
    DiscoveryConfig,
    ModelPrice,
    PricingConfig,
    Target,
)
from exporter.core.clock import FakeClock, SystemClock
from exporter.polling.discovery import (
    ABSENT_LISTINGS,
    PRICE_REFRESH,
    DiscoveryRunner,
    discover,
    key_targets,
    list_prices,
    selected,
)
from exporter.simulator import Catalog, EventStore, SimKey, SimModel, SimulatorServer
from tests.conftest import StartSimulator

PUBLIC, PRIVATE = "d-public", "d-private-0123456789"
SECRET = "sk-THIS-IS-THE-SECRET-KEY-0001"


@pytest.fixture
def sim(start_simulator: StartSimulator) -> SimulatorServer:
    catalog = Catalog()
    for i in range(250):  # three pages of 100
        catalog.add_key(SimKey("org", f"uminferapikey-{i:03d}", f"team-{i % 3}", f"{SECRET}{i}",
                               status=1 if i % 50 else 2, granted_models=("a", "b")))
    catalog.add_model(SimModel("a", prompt="0.27", completion="1.10"))
    catalog.add_model(SimModel("b", kind=2, image="0.04", currency="CNY"))
    return start_simulator({PUBLIC: PRIVATE}, catalog=catalog)


@pytest.fixture
def client(sim: SimulatorServer) -> Iterator[KeyClient]:
    api = ApiConfig(endpoint=sim.url, public_key=PUBLIC, private_key=PRIVATE, timeout=5)
    session = requests.Session()
    api_client = ApiClient(api, session, SystemClock(), random.Random(0),
                           RateLimiter(0, 1, SystemClock()), NullObserver())
    yield KeyClient(api_client)
    session.close()


class NullObserver:
    """Self-metrics are not what these tests look at."""

    def observe_call(self, outcome: str, retcode: str, seconds: float) -> None:
        """Ignore the call."""


def test_parse_keys_keeps_no_secret() -> None:
    body = {"RetCode": "0", "Data": [{"KeyId": "k", "Name": "n", "Status": 1, "Key": SECRET,
                                      "GrantedModels": ["a", {"Name": "b"}], "Extra": SECRET}]}
    keys = parse_keys(body)
    assert keys == [ApiKey("k", "n", 1, False, ("a", "b"))]
    assert SECRET not in repr(keys)
    assert not hasattr(keys[0], "__dict__")  # slots: nowhere to hide the secret


def test_parse_errors_never_quote_values() -> None:
    with pytest.raises(ApiError) as caught:
        parse_keys({"RetCode": 0, "Data": [{"KeyId": 5, "Key": SECRET}]})
    assert SECRET not in str(caught.value)
    assert "Data[0].KeyId" in str(caught.value)


def test_parse_models_accepts_both_shapes() -> None:
    row = {"ServedModelName": "a", "Pricing": {"Prompt": "0.5", "Completion": 2, "Currency": "CNY",
                                              "UnitEn": "per 1M tokens"}}
    for body in ({"RetCode": 0, "Data": [row]}, {"RetCode": 0, "Data": {"Models": [row]}}):
        (model,) = parse_models(body)
        assert model.price is not None
        assert (model.name, model.price.input, model.price.output, model.price.currency) == (
            "a", Decimal("0.5"), Decimal("2"), "CNY")


def test_client_pages_until_a_short_page(client: KeyClient, sim: SimulatorServer) -> None:
    keys = client.list_keys("org", deadline=SystemClock().monotonic() + 10)
    assert [k.key_id for k in keys] == [f"uminferapikey-{i:03d}" for i in range(250)]
    assert sim.stats().by_action["ListUMInferAPIKey"] == 3


def test_simulator_refuses_limits_over_100(sim: SimulatorServer) -> None:
    from exporter.api.signing import sign
    form = sign({"Action": "ListUMInferAPIKey", "Limit": 101}, PUBLIC, PRIVATE)
    with requests.post(sim.url, data=form, timeout=5) as response:
        assert response.json()["RetCode"] == 230


def test_discover_filters_and_caps(client: KeyClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    config = DiscoveryConfig(projects=("org",), include=("team-[01]",), exclude=(r".*-00\d",),
                             models=(), max_targets=20, labels=(("env", "prod"),))
    static = [Target(key="uminferapikey-010", model="a", project="org")]
    result = discover(client, config, static, SystemClock().monotonic() + 10)
    assert result.keys == 250
    # team-0/1 are 2 in 3 keys; status 2 (every 50th) and 000-009 are out.
    expected = [i for i in range(10, 250) if i % 3 != 2 and i % 50]
    assert result.selected == len(expected)
    wanted = [(f"uminferapikey-{i:03d}", m) for i in expected for m in ("a", "b")]
    wanted.remove(("uminferapikey-010", "a"))  # the static target wins
    assert [(t.key, t.model) for t in result.targets] == wanted[:20]
    assert result.dropped == len(wanted) - 20
    assert dict(result.targets[0].labels) == {"env": "prod", "key_name": "team-1"}
    assert SECRET not in repr(result) + caplog.text


def test_list_prices_asks_keys_only_until_every_polled_model_is_priced(
        client: KeyClient, sim: SimulatorServer) -> None:
    targets = [Target(f"uminferapikey-{i:03d}", m, "org") for i in range(1, 40) for m in "ab"]
    sim.reset_stats()
    prices = list_prices(client, targets, SystemClock().monotonic() + 10).prices
    assert {(p.model, p.input, p.image, p.currency) for p in prices} == {
        ("a", Decimal("0.27"), Decimal(0), "USD"), ("b", Decimal(0), Decimal("0.04"), "CNY")}
    assert sim.stats().by_action == {"GetUMInferAPIModel": 2}  # one key, text and image types


def test_selected_and_key_targets() -> None:
    key = ApiKey("k", "name", 1, False, ("g1", "g2"))
    assert selected(key, DiscoveryConfig())
    assert not selected(ApiKey("k", "n", 1, True, ()), DiscoveryConfig())
    assert not selected(key, DiscoveryConfig(exclude=("name",)))
    assert [t.model for t in key_targets("p", key, DiscoveryConfig())] == ["g1", "g2"]
    assert [t.model for t in key_targets("p", key, DiscoveryConfig(models=("x",)))] == ["x"]


class Keys:
    """An in-memory KeyApi: keys per project, models per key, and an outage switch."""

    def __init__(self, keys: dict[str, list[ApiKey]], models: dict[str, list[ApiModel]]) -> None:
        self.keys, self.models = keys, models
        self.asked: list[str] = []  # key ids list_models was called for
        self.deadlines: list[float] = []  # the deadline of every call
        self.projects: list[str] = []  # the project of each list_models call
        self.down = False
        self.status = 503  # the HTTP status of an outage

    def list_keys(self, project: str, deadline: float) -> list[ApiKey]:
        self.deadlines.append(deadline)
        if self.down:
            raise ApiError("http", f"HTTP {self.status}", http_status=self.status,
                           transient=True)
        return self.keys[project]

    def list_models(self, project: str, key_id: str, deadline: float) -> list[ApiModel]:
        self.asked.append(key_id)
        self.projects.append(project)
        self.deadlines.append(deadline)
        return self.models[key_id]


def price(model: str) -> ModelPrice:
    return ModelPrice(model, input=Decimal(1))


def test_a_key_granting_a_model_no_earlier_key_priced_is_asked_too() -> None:
    # k1 prices only "a"; k2 polls "a" and "b": "a" is known, but "b" is not, so k2 is asked.
    source = Keys({}, {"k1": [ApiModel("a", price("a"))],
                       "k2": [ApiModel("a", price("a")), ApiModel("b", price("b"))],
                       "k3": [ApiModel("b", price("b"))]})
    targets = [Target("k1", "a"), Target("k2", "a"), Target("k2", "b"), Target("k3", "b")]
    prices = list_prices(source, targets, 0.0).prices
    assert [p.model for p in prices] == ["a", "b"]
    assert source.asked == ["k1", "k2"]  # k3 polls only "b", which k2 already priced


def test_a_key_whose_models_are_all_priced_is_skipped_and_later_keys_still_asked() -> None:
    source = Keys({}, {"k1": [ApiModel("a", price("a"))], "k2": [ApiModel("a", price("a"))],
                       "k3": [ApiModel("b", price("b"))]})
    targets = [Target("k1", "a"), Target("k2", "a"), Target("k3", "b")]
    assert [p.model for p in list_prices(source, targets, 0.0).prices] == ["a", "b"]
    assert source.asked == ["k1", "k3"]


def test_a_keys_models_are_listed_in_its_own_project() -> None:
    source = Keys({}, {"k1": [ApiModel("a", price("a"))], "k2": [ApiModel("b", price("b"))]})
    list_prices(source, [Target("k1", "a", "org"), Target("k2", "b", "other")], 0.0)
    assert source.projects == ["org", "other"]


def test_before_a_refresh_no_list_price_is_known() -> None:
    runner = DiscoveryRunner(FakeClock())
    assert (runner.prices, runner.unpriced) == ((), {})


def test_each_unpriced_model_and_unit_is_said_once_with_what_would_price_it(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    source = Keys({}, {"k": [ApiModel("m", ModelPrice("m", input=Decimal(1), currency="")),
                             ApiModel("x", None, "unknown_unit", "per ounce")]})
    config = Config(targets=(Target("k", "m"), Target("k", "x")),
                    pricing=PricingConfig(from_api=True))
    runner = DiscoveryRunner(clock)
    for _ in range(2):
        assert runner.refresh_if_due(source, config, 10.0)
        clock.advance(PRICE_REFRESH)
    assert runner.unpriced == {"m": "missing_currency", "x": "unknown_unit"}
    assert [r.getMessage() for r in caplog.records] == [
        "list price of m not used (missing_currency: unit ''); the model is unpriced until "
        "pricing.models prices it (or pricing.currency names the currency of list prices)",
        "list price of x not used (unknown_unit: unit 'per ounce'); the model is unpriced "
        "until pricing.models prices it"]


def test_every_call_of_a_refresh_gets_its_deadline() -> None:
    source = Keys({"org": [ApiKey("k1", "one", 1, False, ("m",))]},
                  {"k1": [ApiModel("m", price("m"))]})
    config = Config(discovery=DiscoveryConfig(projects=("org",), refresh=60.0),
                    pricing=PricingConfig(from_api=True))
    assert DiscoveryRunner(FakeClock()).refresh_if_due(source, config, 42.0)
    assert source.deadlines == [42.0, 42.0]  # the listing of keys, then of the key's models


def test_an_outage_is_said_when_it_begins_not_as_it_goes_on(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    source = Keys({"org": [ApiKey("k1", "one", 1, False, ("m",))]}, {})
    config = Config(discovery=DiscoveryConfig(projects=("org",), refresh=60.0))
    runner = DiscoveryRunner(clock)
    source.down = True
    for status in (503, 502, 504):
        source.status = status
        assert not runner.refresh_if_due(source, config, 10.0)
        clock.advance(60.0)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "discovery failed, keeping the 0 targets found before: HTTP 503")]


def test_a_failed_refresh_keeps_the_last_good_targets() -> None:
    clock = FakeClock()
    source = Keys({"org": [ApiKey("k1", "one", 1, False, ("m",))]}, {})
    config = Config(discovery=DiscoveryConfig(projects=("org",), refresh=60.0))
    runner = DiscoveryRunner(clock)
    assert runner.refresh_if_due(source, config, 10.0)
    found = runner.result.targets
    assert [t.ident for t in found] == ["org/k1/m"]
    source.down = True
    for failures in range(1, ABSENT_LISTINGS + 2):  # longer than a missing key is kept for
        clock.advance(60.0)
        assert not runner.refresh_if_due(source, config, clock.monotonic() + 10)
        assert runner.result.targets == found
        snapshot = runner.snapshot(config)
        assert snapshot is not None and (snapshot.targets, snapshot.failures) == (1, failures)


def test_the_runner_refreshes_on_its_interval_caps_logs_changes_once_and_keeps_absent_keys(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    keys = [ApiKey(f"k{i}", f"n{i}", 1, False, ("m",)) for i in range(4)]
    source = Keys({"org": keys[:3], "other": keys[3:]},
                  {k.key_id: [ApiModel("m", price("m"))] for k in keys})
    config = Config(discovery=DiscoveryConfig(projects=("org", "other"), refresh=60.0,
                                              max_targets=2),
                    pricing=PricingConfig(from_api=True))
    runner = DiscoveryRunner(clock)
    caplog.set_level(logging.INFO, "exporter.polling.discovery")
    assert runner.snapshot(config) == DiscoverySnapshot(0, 0, 0, 0, None, 0)
    assert runner.refresh_if_due(source, config, 10.0)
    assert [t.key for t in runner.result.targets] == ["k0", "k1"]
    assert runner.snapshot(config) == DiscoverySnapshot(2, 4, 4, 2, clock.time(), 0)
    assert runner.prices == (price("m"),) and source.asked == ["k0"]
    clock.advance(59.0)
    assert not runner.refresh_if_due(source, config, 10.0)  # not due for another second
    clock.advance(1.0)
    source.down = True
    assert not runner.refresh_if_due(source, config, 10.0)
    clock.advance(60.0)
    assert not runner.refresh_if_due(source, config, 10.0)
    source.down = False
    source.keys["org"] = keys[1:3]  # k0 is missing from the listings from now on
    for missed in range(1, ABSENT_LISTINGS + 1):
        clock.advance(60.0)
        assert runner.refresh_if_due(source, config, 10.0)
        still = missed < ABSENT_LISTINGS
        assert [t.key for t in runner.result.targets] == ["k1", "k2"] + ["k0"] * still, missed
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "discovery.max_targets reached: 2 discovered targets not polled"),
        ("WARNING", "discovery failed, keeping the 2 targets found before: HTTP 503"),
        ("WARNING", "discovery.max_targets reached: 1 discovered targets not polled"),
        ("INFO", "discovery recovered")]


def test_list_prices_only_are_refreshed_every_price_refresh() -> None:
    clock = FakeClock()
    source = Keys({}, {"k": [ApiModel("m", price("m")), ApiModel("x", None)]})
    config = Config(targets=(Target("k", "m"),), pricing=PricingConfig(from_api=True))
    runner = DiscoveryRunner(clock)
    assert runner.refresh_if_due(source, config, 10.0)
    assert (runner.prices, runner.snapshot(config)) == ((price("m"),), None)
    clock.advance(PRICE_REFRESH - 1)
    assert not runner.refresh_if_due(source, config, 10.0)
    clock.advance(1.0)
    assert runner.refresh_if_due(source, config, 10.0)
    assert not DiscoveryRunner(clock).refresh_if_due(source, Config(), 10.0)  # nothing wanted


def test_a_list_price_naming_no_currency_is_not_booked_in_a_default_one(
        caplog: pytest.LogCaptureFixture) -> None:
    # Through the real listing: a row with an empty Currency and a unit naming none. Without
    # pricing.currency written, the model is unpriced and said so; never priced in USD.
    catalog = Catalog()
    catalog.add_key(SimKey("org", "k", "team", SECRET, granted_models=("plain",)))
    catalog.add_model(SimModel("plain", prompt="1", completion="2", currency="", unit="",
                               unit_en="per 1M tokens"))
    target = Target("k", "plain", "org")
    with SimulatorServer(EventStore(), {PUBLIC: PRIVATE}, SystemClock(), catalog=catalog) as sim:
        api = ApiConfig(endpoint=sim.url, public_key=PUBLIC, private_key=PRIVATE, timeout=5)
        source = KeyClient(ApiClient(api, requests.Session(), SystemClock(), random.Random(0),
                                     RateLimiter(0, 1, SystemClock()), NullObserver()))
        deadline = SystemClock().monotonic() + 10
        unwritten = Config(targets=(target,), pricing=PricingConfig(from_api=True))
        assert unwritten.pricing.currency == "USD"  # the default, which is no answer here
        runner = DiscoveryRunner(FakeClock())
        assert runner.refresh_if_due(source, unwritten, deadline)
        assert (runner.prices, runner.unpriced) == ((), {"plain": "missing_currency"})
        assert "pricing.currency names the currency of list prices" in caplog.text
        written = Config(targets=(target,), pricing=PricingConfig(
            currency="CNY", listed_currency="CNY", from_api=True))
        runner = DiscoveryRunner(FakeClock())
        assert runner.refresh_if_due(source, written, deadline)
    assert runner.prices == (ModelPrice("plain", Decimal(1), Decimal(2), currency="CNY"),)

"""Budgets: period bounds, selectors, exact use, reset at the period start, config errors."""

from __future__ import annotations

import datetime
import logging
import time
from decimal import Decimal

import pytest

from exporter.accounting.ledger import Ledger, Read
from exporter.accounting.snapshot import Snapshot, TargetSnapshot
from exporter.accounting.spend import Spend
from exporter.config import BudgetConfig, Config, ConfigError, Target
from exporter.core.usage import Totals
from exporter.cost.budgets import BudgetSnapshot, BudgetTracker, period_bounds
from exporter.cost.meters import budget_use
from tests.configs import parsed, targets

T = datetime.datetime(2026, 3, 31, 23, 59, 30, tzinfo=datetime.UTC).timestamp()
A = Target(key="k1", model="m", project="p")
B = Target(key="k2", model="m", project="p")


def test_period_bounds_are_utc_days_and_months() -> None:
    start, end = period_bounds("daily", T)
    assert (end - start, start % 86400) == (86400, 0)
    assert start <= T < end
    m_start, m_end = period_bounds("monthly", T)
    assert datetime.datetime.fromtimestamp(m_start, datetime.UTC).isoformat() == \
        "2026-03-01T00:00:00+00:00"
    assert datetime.datetime.fromtimestamp(m_end, datetime.UTC).isoformat() == \
        "2026-04-01T00:00:00+00:00"
    dec = period_bounds("monthly", datetime.datetime(2026, 12, 5, tzinfo=datetime.UTC).timestamp())
    assert datetime.datetime.fromtimestamp(dec[1], datetime.UTC).year == 2027


def test_use_counts_matching_targets_and_resets_each_period() -> None:
    tokens = BudgetConfig("k1-day", "daily", tokens=1000, key="k1")
    money = BudgetConfig("all-month", "monthly", cost=Decimal("5"), currency="USD")
    tracker = BudgetTracker((tokens, money))
    tracker.add(A, 300, Decimal("0.1"), "USD", T)
    tracker.add(B, 50, Decimal("0.2"), "USD", T)
    assert tracker.add(B, 50, Decimal("9"), "CNY", T) == ("all-month",)  # not its money
    assert tracker.add(B, 0, Decimal(0), "CNY", T) == ()  # a free model's zero is no news
    by_name = {b.name: b for b in tracker.snapshot(T)}
    assert (by_name["k1-day"].used, by_name["k1-day"].unit) == (Decimal(300), "tokens")
    assert (by_name["all-month"].used, by_name["all-month"].unit) == (Decimal("0.3"), "USD")
    restored = BudgetTracker((tokens, money), tracker.to_dict())
    assert [b.used for b in restored.snapshot(T)] == [Decimal(300), Decimal("0.3")]
    later = T + 60  # a new day and a new month
    assert [b.used for b in tracker.snapshot(later)] == [0, 0]
    assert [b.used for b in restored.snapshot(later)] == [0, 0]
    restored.add(A, 7, Decimal("0.01"), "USD", later)  # the new periods count from zero
    assert [b.used for b in restored.snapshot(later)] == [Decimal(7), Decimal("0.01")]


def test_use_survives_a_restart_within_the_period() -> None:
    budget = BudgetConfig("d", "daily", tokens=10)
    tracker = BudgetTracker((budget,))
    tracker.add(A, 7, None, "", T)
    assert BudgetTracker((budget,), tracker.to_dict()).snapshot(T)[0].used == 7


def _budgets(raw: object) -> tuple[BudgetConfig, ...]:
    return parsed(pricing={"currency": "EUR"}, budgets=raw).budgets


def test_budget_config_defaults_to_the_pricing_currency() -> None:
    assert _budgets([{"name": "x", "period": "monthly", "cost": "12.50"}]) == (
        BudgetConfig("x", "monthly", cost=Decimal("12.50"), currency="EUR"),)


@pytest.mark.parametrize(("raw", "message"), [
    ([{"name": "x", "period": "weekly", "tokens": 1}],
     'budgets[0].period: expected daily or monthly, got "weekly"'),
    ([{"name": "x", "period": "daily"}], "budgets[0]: set exactly one of tokens or cost"),
    ([{"name": "x", "period": "daily", "tokens": 1, "cost": 1}],
     "budgets[0]: set exactly one of tokens or cost"),
    ([{"name": "x", "period": "daily", "tokens": 1}, {"name": "x", "period": "daily", "tokens": 2}],
     'budgets[1].name: duplicate of budgets[0] ("x")'),
    ([{"name": "a b", "period": "daily", "tokens": 1}],
     "budgets[0].name: use 1-64 letters, digits, _ . : or -"),
    ({"name": "x"}, "budgets: expected a list of budgets, got {'name': 'x'} (dict)"),
])
def test_bad_budgets_are_reported(raw: object, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _budgets(raw)
    assert caught.value.problems == [message]


def _config(*budgets: dict[str, object]) -> Config:
    return parsed(targets=targets("k1", "k2"),
                  pricing={"currency": "USD", "models": {
                      "m": {"input": "1", "output": "1"}}},  # $1 per million tokens
                  budgets=list(budgets))


TEAM = {"name": "team", "period": "daily", "key": "k1", "tokens": 1000000}
USED = Totals(input_tokens=400_000, output_tokens=400_000, tokens=800_000, requests=10)


def _used(spend: Spend, config: Config, k1: Totals,
          at: float = T) -> dict[str, tuple[Decimal, str, Decimal]]:
    counters = (k1, Totals())
    snapshot = spend.apply(Snapshot(tuple(
        TargetSnapshot(t, c) for t, c in zip(config.targets, counters, strict=True))), at)
    return {b.name: (b.used, b.unit, b.limit) for b in snapshot.budgets}


@pytest.mark.parametrize(("edited", "shown"), [
    # r1: 800,000 tokens became "800000 USD" against a $50 limit and paged as exceeded.
    ({**TEAM, "tokens": None, "cost": "50"}, (Decimal(0), "USD", Decimal(50))),
    ({**TEAM, "key": "k2"}, (Decimal(0), "tokens", Decimal(1000000))),  # k2 used nothing
    ({**TEAM, "period": "monthly"}, (Decimal(0), "tokens", Decimal(1000000))),
])
@pytest.mark.parametrize("path", ["reload", "restart"])
def test_a_budget_redefined_under_its_name_never_shows_the_old_definitions_use(
        edited: dict[str, object], shown: tuple[object, ...], path: str,
        caplog: pytest.LogCaptureFixture) -> None:
    before = _config(TEAM)
    spend = Spend(before)
    spend.sync({})
    assert _used(spend, before, USED)["team"] == (Decimal(800_000), "tokens", Decimal(1000000))
    after = _config({k: v for k, v in edited.items() if v is not None})
    if path == "reload":
        spend.configure(after)
    else:
        spend = Spend(after, spend.meters(), budget_use(spend.budget_use()))
    assert _used(spend, after, USED, T + 1)["team"] == shown
    assert "budget team is redefined" in caplog.text


def test_a_money_budget_moved_to_another_currency_does_not_relabel_its_amount() -> None:
    usd = _config({"name": "team", "period": "daily", "cost": "50"})
    spend = Spend(usd)
    spend.sync({})
    assert _used(spend, usd, USED)["team"] == (Decimal("0.8"), "USD", Decimal(50))
    cny = _config({"name": "team", "period": "daily", "cost": "350", "currency": "CNY"})
    spend.configure(cny)
    assert _used(spend, cny, USED, T + 1)["team"] == (Decimal(0), "CNY", Decimal(350))


def test_a_new_limit_for_the_same_definition_keeps_the_use() -> None:
    spend = Spend(_config(TEAM))
    spend.sync({})
    _used(spend, _config(TEAM), USED)
    raised = _config({**TEAM, "tokens": 2000000})
    spend.configure(raised)
    assert _used(spend, raised, USED, T + 1)["team"] == (Decimal(800_000), "tokens",
                                                         Decimal(2000000))


def test_a_budget_removed_and_added_again_in_the_period_starts_afresh(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    spend = Spend(_config(TEAM))
    spend.sync({})
    _used(spend, _config(TEAM), USED)
    spend.configure(_config())
    assert "team" not in spend.budget_use()  # a removed budget's use is dropped
    spend.configure(_config(TEAM))
    assert _used(spend, _config(TEAM), USED, T + 1)["team"][0] == 0
    assert ("budget team added: it counts usage from now on (the targets already counting "
            "are not read back to the start of its period)") in [
                r.getMessage() for r in caplog.records]


def test_use_saved_before_definitions_were_saved_stays_with_its_name() -> None:
    saved = {"team": {"start": period_bounds("daily", T)[0], "amount": "800000"}}
    spend = Spend(_config(TEAM), budgets=budget_use(saved))
    assert _used(spend, _config(TEAM), Totals())["team"][0] == 800_000
    assert spend.budget_use()["team"]["definition"] == "daily tokens [key=k1]"


def _image_config() -> Config:
    return parsed(targets=targets("k1", model="img"),
                  pricing={"currency": "USD", "models": {"img": {"image": "0.04"}}},
                  budgets=[{"name": "usd", "period": "monthly", "cost": "10"},
                           {"name": "tok", "period": "monthly", "tokens": 100}])


def test_image_only_usage_is_charged_to_cost_budgets() -> None:
    config = _image_config()
    spend = Spend(config)
    spend.sync({})
    images = Totals(image_generations=5)  # an image model: no tokens, no requests counted
    snapshot = spend.apply(Snapshot((TargetSnapshot(config.targets[0], images),)), T)
    used = {b.name: b.used for b in snapshot.budgets}
    assert used == {"usd": Decimal("0.20"), "tok": 0}
    assert snapshot.targets[0].cost == (("USD", Decimal("0.20")),)


def test_a_meter_started_beside_a_ledger_that_already_counted_prices_only_what_follows() -> None:
    # E.g. a version 1 state without its cost file: usage counted before pricing existed is
    # never priced, nor charged to a budget, all at once on the first cycle.
    config = _config({"name": "usd", "period": "monthly", "cost": "100"})
    ledger = Ledger(int(T) // 3600 * 3600 - 7200, 3600, 60)
    start = ledger.origin
    ledger.record(Read(start, start + 3599, (start,)), USED, start + 3600 + 60)
    assert ledger.counters() == USED
    spend = Spend(config)
    spend.sync({config.targets[0].ident: ledger})
    grown = USED + Totals(input_tokens=1000, tokens=1000)
    snapshot = spend.apply(Snapshot(tuple(TargetSnapshot(t, c) for t, c in zip(
        config.targets, (grown, Totals()), strict=True))), T)
    assert snapshot.targets[0].cost == (("USD", Decimal("0.001")),)  # 1,000 tokens at $1/M
    assert {b.name: b.used for b in snapshot.budgets} == {"usd": Decimal("0.001")}


def test_window_cost_is_priced_at_todays_price_and_absent_without_one() -> None:
    config = _config()
    hour = config.windows[0]
    spend = Spend(config)
    spend.sync({})
    snapshot = spend.apply(Snapshot(tuple(
        TargetSnapshot(t, USED, windows=((hour, USED),)) for t in config.targets)), T)
    assert snapshot.targets[0].window_cost == ((hour, "USD", Decimal("0.8")),)
    unpriced = Spend(_image_config())  # model "img" has no token price: "m" none at all
    snap = unpriced.apply(Snapshot((TargetSnapshot(Target("k1", "m", "p"), USED,
                                                    windows=((hour, USED),)),)), T)
    assert snap.targets[0].window_cost == ()
    assert snap.unpriced == (("m", "no_price"),)  # nothing listed: no reason but no price


def test_a_meter_survives_a_sync_and_keeps_its_cost() -> None:
    config = _config()
    spend = Spend(config)
    spend.sync({})
    spend.apply(Snapshot((TargetSnapshot(config.targets[0], USED),)), T)
    ledger = Ledger(int(T) // 3600 * 3600, 3600, 60)
    spend.sync({config.targets[0].ident: ledger})  # the same target: its meter stays
    assert spend.meters()[config.targets[0].ident].cost == {"USD": Decimal("0.8")}


def test_a_seed_without_a_price_counts_its_tokens_and_no_money() -> None:
    config = parsed(targets=targets("k1"), pricing={"currency": "USD"},
                    budgets=[{"name": "usd", "period": "monthly", "cost": "10"},
                             {"name": "tok", "period": "monthly", "tokens": 100}])
    spend = Spend(config)
    start = period_bounds("daily", T)[0]
    spend.seed(config.targets[0], [(start, Totals(tokens=40))], T)
    used = {b.name: b.used for b in spend.apply(Snapshot(), T).budgets}
    assert used == {"usd": 0, "tok": 40}


def test_periods_are_utc_on_a_host_in_another_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Shanghai")  # UTC+8: 07:59:30 on 1 April there
    time.tzset()
    try:
        assert period_bounds("monthly", T) == (1_772_323_200, 1_775_001_600)  # March, UTC
    finally:
        monkeypatch.undo()
        time.tzset()
    assert datetime.datetime.fromtimestamp(1_772_323_200, datetime.UTC).isoformat() == \
        "2026-03-01T00:00:00+00:00"


def test_a_snapshot_shows_each_budget_with_its_own_period_unit_and_limit() -> None:
    daily = BudgetConfig("d", "daily", tokens=100, project="p", key="k1", model="m")
    free = BudgetConfig("z", "monthly", cost=Decimal(0), currency="EUR")
    tracker = BudgetTracker((daily, free))
    tracker.add(A, 30, None, "", T)
    tracker.add(A, 12, None, "", T)  # the same period: added up
    day, month = period_bounds("daily", T), period_bounds("monthly", T)
    assert tracker.snapshot(T) == (
        BudgetSnapshot("d", "daily", "tokens", Decimal(100), Decimal(42), *day),
        BudgetSnapshot("z", "monthly", "EUR", Decimal(0), Decimal(0), *month))
    assert tracker.to_dict()["d"]["definition"] == "daily tokens [project=p,key=k1,model=m]"


def test_a_seed_tells_only_money_budgets_of_another_currency_and_only_of_real_cost() -> None:
    tokens = BudgetConfig("t", "monthly", tokens=100)  # its currency field is the default USD
    eur = BudgetConfig("e", "monthly", cost=Decimal(5), currency="EUR")
    tracker = BudgetTracker((tokens, eur))
    start = period_bounds("daily", T)[0]
    assert tracker.add_before(A, [(start, 5, None)], "USD", T) == ()  # no cost: nothing to tell
    assert tracker.add_before(A, [(start, 5, Decimal(1))], "USD", T) == ("e",)
    assert tracker.add_before(A, [(start, 5, Decimal(1))], "EUR", T) == ()
    assert [b.used for b in tracker.snapshot(T)] == [Decimal(15), Decimal(1)]


def test_a_redefined_budget_says_both_definitions(caplog: pytest.LogCaptureFixture) -> None:
    before = BudgetConfig("team", "daily", tokens=10, key="k1")
    saved = BudgetTracker((before,))
    saved.add(A, 3, None, "", T)
    BudgetTracker((BudgetConfig("team", "daily", tokens=10, key="k2"),), saved.to_dict())
    assert [r.getMessage() for r in caplog.records] == [
        "budget team is redefined (daily tokens [key=k2], was daily tokens [key=k1]): it counts "
        "from now on; the use counted under its old definition is dropped"]


def test_a_seed_priced_in_another_currency_is_told_once_by_budget_and_currency(
        caplog: pytest.LogCaptureFixture) -> None:
    config = _config({"name": "eur", "period": "monthly", "cost": "5", "currency": "EUR"})
    spend = Spend(config)
    start = period_bounds("daily", T)[0]
    for _ in range(2):
        spend.seed(config.targets[0], [(start, USED)], T)
    assert [r.getMessage() for r in caplog.records] == [
        "budget eur counts only its own currency: cost in USD of targets it selects is not "
        "counted in it (price those models in its currency, or add a budget in USD)"]

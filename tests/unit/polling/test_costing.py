"""The poll loop's cost: what a restart hands back (meters, budgets' use, seeds due), list
prices put in force by discovery, and the one line that says every budget seed is counted."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest

from exporter.accounting.snapshot import Snapshot, TargetSnapshot
from exporter.accounting.state import StateDocument
from exporter.config import ModelPrice
from exporter.core.usage import Totals
from exporter.cost.meters import CostMeter
from exporter.polling.costing import Costing
from exporter.polling.seeding import DAY
from tests.configs import parsed, targets

NOV_15 = 1_793_491_200 + 14 * DAY  # 2026-11-15T00:00:00Z
DAILY = {"name": "team", "period": "daily", "tokens": 1000}
DONE = ("budget seeding done: every budget holds its period's usage from before counting "
        "began")
USED = Totals(input_tokens=300, output_tokens=100, tokens=400, requests=2)


def done_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "exporter.polling.costing" and r.levelno == logging.INFO]


def test_a_restart_hands_back_meters_budgets_and_seeds_as_saved() -> None:
    config = parsed(budgets=[DAILY])
    [target] = config.targets
    meter = CostMeter(seen=USED, cost={"USD": Decimal("0.25")})
    costing = Costing(config, StateDocument(meters={target.ident: meter},
                                            seeds=[target.ident]))
    costing.priced(Snapshot((TargetSnapshot(target, USED + USED),)), NOV_15 + 60,
                   [target.ident])
    use = costing.spend.budget_use()
    assert use["team"]["amount"] == "400"  # the saved meter priced only the new tokens
    doc = costing.state({}, {target.ident: NOV_15})
    assert doc == StateDocument({}, {target.ident: NOV_15}, {target.ident: meter}, use,
                                [target.ident])
    assert meter.seen == USED + USED  # the saved meter went on, not a new one


def test_without_budgets_no_seed_is_due() -> None:
    costing = Costing(parsed(), StateDocument())
    costing.seeding.begin("/k/m")
    assert costing.seeds_left(["/k/m"]) == set()
    with_budget = Costing(parsed(budgets=[DAILY]), StateDocument())
    with_budget.seeding.begin("/k/m")
    assert with_budget.seeds_left(["/k/m"]) == {"/k/m"}
    with_budget.configure(parsed(), {"": ()}, {"": {}})  # the budget removed by a reload
    with_budget.seeding.begin("/k/j")
    assert with_budget.seeds_left(["/k/m", "/k/j"]) == {"/k/m"}


def test_list_prices_and_why_a_model_has_none_come_from_configure() -> None:
    config = parsed(targets=[*targets("k"), *targets("k", model="m2")],
                    pricing={"from_api": True, "currency": "USD"})
    listed, other = config.targets
    costing = Costing(config, StateDocument())
    costing.configure(config, {"": (ModelPrice("m", input=Decimal(1000), currency="USD"),)},
                      {"": {"m2": "unknown_unit"}})
    costing.sync({})
    snapshot = costing.priced(Snapshot((TargetSnapshot(listed, USED),
                                        TargetSnapshot(other, USED))), NOV_15, [])
    assert [t.cost for t in snapshot.targets] == [(("USD", Decimal("0.3")),), ()]
    assert snapshot.unpriced == (("m2", "unknown_unit"),)


def test_seeding_done_is_said_once_when_the_last_seed_is_counted(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "exporter.polling.costing")
    config = parsed(budgets=[DAILY])
    [target] = config.targets
    costing = Costing(config, StateDocument())
    costing.priced(Snapshot(), NOV_15, [target.ident])
    assert done_lines(caplog) == []  # nothing was due: nothing to say
    costing.seeding.begin(target.ident)
    origin = NOV_15 + 600
    [(start, _)] = costing.seeding.plan(target, origin, settled_before=origin)
    costing.priced(Snapshot(), origin, [target.ident])
    assert done_lines(caplog) == []  # still being read
    costing.seeding.record(target, origin, start, Totals(tokens=5))
    costing.priced(Snapshot(), origin + 60, [target.ident])
    assert costing.spend.budget_use()["team"]["amount"] == "5"
    costing.priced(Snapshot(), origin + 120, [target.ident])
    assert done_lines(caplog) == [DONE]


def test_seeds_left_by_a_restart_are_said_done_even_when_none_is_read(
        caplog: pytest.LogCaptureFixture) -> None:
    # A seed saved as due can end without a read (given up, or nothing before its origin):
    # the line still comes, once.
    caplog.set_level(logging.INFO, "exporter.polling.costing")
    config = parsed(budgets=[DAILY])
    [target] = config.targets
    costing = Costing(config, StateDocument(seeds=[target.ident]))
    costing.priced(Snapshot(), NOV_15, [target.ident])
    assert done_lines(caplog) == []
    costing.seeding.drop(target.ident, "rejected")
    costing.priced(Snapshot(), NOV_15 + 60, [target.ident])
    costing.priced(Snapshot(), NOV_15 + 120, [target.ident])
    assert done_lines(caplog) == [DONE]

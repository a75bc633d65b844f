"""What a key has spent, as the cloud would bill it: the simulator's own usage at its own list
prices, for ``DailyUsedAmount`` / ``MonthlyUsedAmount`` of a metered key.

Ground truth for reconciliation: it shares no code with the exporter's pricing (each model says
how many tokens one list price buys, not a unit string to be parsed), so a unit read wrong by
the exporter shows as a drift between its cost and the cloud's.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import replace
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from exporter.simulator.catalog import SimKey, SimModel
from exporter.simulator.store import EventStore
from exporter.simulator.usage import Usage

DAY = 86400
BILLED_PLACES = Decimal("0.0001")  # the cloud shows amounts to four decimal places


def cost(model: SimModel, usage: Usage) -> Decimal:
    """``usage`` at ``model``'s list price (a price that is not a number costs nothing)."""
    try:
        prompt, completion, image = (Decimal(str(p)) for p in
                                     (model.prompt, model.completion, model.image))
    except InvalidOperation:
        return Decimal(0)
    tokens = usage.input_tokens * prompt + usage.output_tokens * completion
    return tokens / model.tokens_per_price + usage.image_generations * image


def spent(store: EventStore, models: Mapping[str, SimModel], key: SimKey, start: int,
          at: float) -> Decimal:
    """What ``key`` spent from ``start`` to ``at`` on usage visible at ``at``."""
    total = Decimal(0)
    for name in store.models(key.project, key.key_id):
        model = models.get(name)
        if model is not None:
            total += cost(model, store.query(key.project, key.key_id, name, start, int(at), at))
    return total


def month_start(now: float) -> int:
    """The first second of the UTC month containing ``now``."""
    day = datetime.datetime.fromtimestamp(int(now), datetime.UTC).date().replace(day=1)
    return int(datetime.datetime(day.year, day.month, 1, tzinfo=datetime.UTC).timestamp())


def metered(key: SimKey, store: EventStore, models: Mapping[str, SimModel], now: float
            ) -> SimKey:
    """``key`` with its used amounts grown by what it spent this UTC day and month."""
    if not key.metered:
        return key
    day = spent(store, models, key, int(now) - int(now) % DAY, now)
    month = spent(store, models, key, month_start(now), now)

    def plus(base: str, amount: Decimal) -> str:
        return str((Decimal(base or "0") + amount).quantize(BILLED_PLACES, ROUND_HALF_UP))

    return replace(key, daily_used=plus(key.daily_used, day),
                   monthly_used=plus(key.monthly_used, month))

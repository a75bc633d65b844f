"""Exact prices: which price is in force for a model, and what a usage increment costs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from decimal import Context, Decimal, localcontext

from exporter.config.types import ModelPrice, PricingConfig
from exporter.core.usage import Totals

MILLION = Decimal(1_000_000)
#: Digits kept by every cost computation: far more than any sum of 64-bit counts times a
#: price with 18 decimals needs, so no result is ever rounded.
PRECISION = 80


def money() -> AbstractContextManager[Context]:
    """The context every money sum and product runs in: 80 digits, built here rather than
    copied from the thread's (whose default 28 digits would round a large total)."""
    return localcontext(Context(prec=PRECISION))


def cost_of(delta: Totals, price: ModelPrice) -> Decimal:
    """The exact cost of ``delta``: tokens at the per-million prices, images and requests each."""
    with money():
        tokens = delta.input_tokens * price.input + delta.output_tokens * price.output
        return (tokens / MILLION + delta.image_generations * price.image
                + delta.requests * price.request)


class PriceBook:
    """Prices by account and model: the config's (for every account), else the list prices
    each account's API gives for its own usage (config wins). Two accounts, or two clouds,
    listing one model at different prices or in different currencies each price their own
    targets: a list price is never lent to another account."""

    def __init__(self, config: PricingConfig,
                 listed: Mapping[str, Iterable[ModelPrice]] | None = None) -> None:
        self.config = config
        self._listed = {(account, p.model): p for account, prices in (listed or {}).items()
                        for p in prices} if config.from_api else {}
        self._configured = {p.model: p for p in config.models}

    def price(self, account: str, model: str) -> ModelPrice | None:
        """The price in force for ``model``'s usage through ``account`` ("" with a single
        account); None when it has none (its cost is not counted)."""
        return self._configured.get(model) or self._listed.get((account, model))

    def with_listed(self, listed: Mapping[str, Iterable[ModelPrice]]) -> PriceBook:
        """A book that also knows ``listed`` (API list prices by account), still overridden by
        the config."""
        return PriceBook(self.config, listed)

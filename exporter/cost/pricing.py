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
    """Prices by model: the config's, else list prices read from the API (config wins)."""

    def __init__(self, config: PricingConfig,
                 listed: Mapping[str, ModelPrice] | None = None) -> None:
        self.config = config
        self._prices = dict(listed or {}) if config.from_api else {}
        self._prices.update({p.model: p for p in config.models})

    def price(self, model: str) -> ModelPrice | None:
        """The price in force for ``model``; None when it has none (its cost is not counted)."""
        return self._prices.get(model)

    def with_listed(self, listed: Iterable[ModelPrice]) -> PriceBook:
        """A book that also knows ``listed`` (API list prices), still overridden by the config."""
        return PriceBook(self.config, {p.model: p for p in listed})

"""Discovery: API keys listed with ListUMInferAPIKey become targets, filtered and capped."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from exporter.accounting.snapshot import DiscoverySnapshot
from exporter.api.errors import ApiError
from exporter.api.keys import ApiKey, with_currency
from exporter.api.sources import KeyApi
from exporter.config.types import Config, DiscoveryConfig, ModelPrice, Target
from exporter.core.clock import Clock
from exporter.core.once import Once

log = logging.getLogger(__name__)
#: How often list prices are re-read when only ``pricing.from_api`` asks for them.
PRICE_REFRESH = 600.0
#: Consecutive successful listings a discovered target must be missing from before it stops
#: being polled: one listing can miss a key (Offset/Limit paging while another key is deleted
#: between pages), and a target that flaps must not lose its series.
ABSENT_LISTINGS = 3

KEY_NAME_LABEL = "key_name"


@dataclass(frozen=True)
class DiscoveryResult:
    """One refresh: the targets to poll, and what was seen and left out."""

    targets: tuple[Target, ...] = ()
    keys: int = 0  # keys listed, before filtering
    selected: int = 0  # keys that passed the filters
    dropped: int = 0  # targets left out by max_targets
    prices: tuple[ModelPrice, ...] = ()


def selected(key: ApiKey, config: DiscoveryConfig) -> bool:
    """Whether ``key`` passes the status and include/exclude filters."""
    if key.status not in config.statuses or key.disabled:
        return False
    names = (key.key_id, key.name)

    def hit(patterns: Iterable[str]) -> bool:
        return any(re.fullmatch(p, n) for p in patterns for n in names)

    if config.include and not hit(config.include):
        return False
    return not hit(config.exclude)


def key_targets(project: str, key: ApiKey, config: DiscoveryConfig) -> list[Target]:
    """One target per model: the configured models, else the models the key is granted."""
    labels = tuple(sorted({**dict(config.labels), KEY_NAME_LABEL: key.name}.items()))
    models = config.models or key.granted_models
    return [Target(key=key.key_id, model=m, project=project, labels=labels)
            for m in dict.fromkeys(models)]


def discover(source: KeyApi, config: DiscoveryConfig, static: Iterable[Target],
             deadline: float) -> DiscoveryResult:
    """List every configured project's keys and turn them into targets.

    A static target wins over a discovered one with the same (project, key, model). The cap
    keeps the first ``max_targets`` in (project, key, model) order, so it is stable across
    refreshes: a new key cannot push an old one out unless it sorts before it.
    """
    taken = {t.ident for t in static}
    found: dict[str, Target] = {}
    listed = chosen = 0
    for project in config.projects:
        keys = source.list_keys(project, deadline)
        listed += len(keys)
        for key in filter(lambda k: selected(k, config), keys):
            chosen += 1
            found.update((t.ident, t) for t in key_targets(project, key, config)
                         if t.ident not in taken)
    ordered = sorted(found.values(), key=lambda t: (t.project, t.key, t.model))
    kept = tuple(ordered[:config.max_targets])
    return DiscoveryResult(kept, listed, chosen, len(ordered) - len(kept))


@dataclass(frozen=True)
class PriceListing:
    """List prices of the polled models, and why a listed model's price was not taken."""

    prices: tuple[ModelPrice, ...] = ()
    unpriced: tuple[tuple[str, str, str], ...] = ()  # (model, reason, unit as written)


def list_prices(source: KeyApi, targets: Iterable[Target], deadline: float,
                currency: str | None = None) -> PriceListing:
    """List prices of the polled models (first price seen per model wins); a price whose row
    and unit name no currency is in ``currency`` (``pricing.currency`` when set), else unpriced.

    A list price belongs to the model, not the key, so keys are asked one after another only
    until every polled model has a price or a reason it has none: a few calls, not two per key
    of the fleet.
    """
    wanted: dict[tuple[str, str], set[str]] = {}
    for target in targets:
        wanted.setdefault((target.project, target.key), set()).add(target.model)
    prices: dict[str, ModelPrice] = {}
    unpriced: dict[str, tuple[str, str]] = {}
    for (project, key), models in wanted.items():
        if models <= prices.keys() | unpriced.keys():
            continue
        for listed in source.list_models(project, key, deadline):
            model = with_currency(listed, currency)
            if model.price is not None:
                prices.setdefault(model.name, model.price)
            elif model.unpriced is not None:
                unpriced.setdefault(model.name, (model.unpriced, model.unit))
    return PriceListing(tuple(prices.values()), tuple(
        (name, why, unit) for name, (why, unit) in unpriced.items() if name not in prices))


class DiscoveryRunner:
    """Refreshes discovered targets and list prices on their interval; keeps the last good ones.

    A failed refresh changes nothing: the targets found before keep being polled, so an API
    hiccup never makes every discovered series vanish and reappear.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._next = 0.0  # monotonic
        self.result = DiscoveryResult()
        self.prices: tuple[ModelPrice, ...] = ()
        self.unpriced: dict[str, str] = {}  # model -> why its list price was not taken
        self._logged = Once()  # unpriced models already logged
        self._last_success: float | None = None
        self._failures = 0
        self._failing = False
        self._absent: dict[str, tuple[Target, int]] = {}  # still polled, missing N listings

    def refresh_if_due(self, source: KeyApi, config: Config, deadline: float) -> bool:
        """Refresh when due; True when targets or prices may have changed."""
        wanted = config.discovery is not None or config.pricing.from_api
        if not wanted or self._clock.monotonic() < self._next:
            return False
        interval = config.discovery.refresh if config.discovery else PRICE_REFRESH
        self._next = self._clock.monotonic() + interval
        try:
            result = DiscoveryResult()
            if config.discovery is not None:
                result = discover(source, config.discovery, config.targets, deadline)
            polled = (*config.targets, *result.targets)
            listing = (list_prices(source, polled, deadline, config.pricing.listed_currency)
                       if config.pricing.from_api else PriceListing())
        except ApiError as error:
            self._failures += 1
            if not self._failing:  # log a change of state once, not every refresh
                log.warning("discovery failed, keeping the %d targets found before: %s",
                            len(self.result.targets), error.message)
            self._failing = True
            return False
        self._succeeded(result, listing)
        return True

    def _succeeded(self, result: DiscoveryResult, listing: PriceListing) -> None:
        result = self._keep_absent(result)
        if result.dropped and result.dropped != self.result.dropped:
            log.warning("discovery.max_targets reached: %d discovered targets not polled",
                        result.dropped)
        if self._failing:
            log.info("discovery recovered")
        self.result, self.prices, self._failing = result, listing.prices, False
        self.unpriced = {model: why for model, why, _ in listing.unpriced}
        for model, why, unit in listing.unpriced:
            if self._logged.first((model, why, unit)):  # one line per model and unit, ever
                log.warning("list price of %s not used (%s: unit %r); the model is unpriced "
                            "until pricing.models prices it%s", model, why, unit,
                            " (or pricing.currency names the currency of list prices)"
                            if why == "missing_currency" else "")
        self._last_success = self._clock.time()

    def _keep_absent(self, result: DiscoveryResult) -> DiscoveryResult:
        """``result`` plus targets polled before and missing from fewer than ABSENT_LISTINGS
        consecutive listings (in the order they had)."""
        listed = {t.ident for t in result.targets}
        previous = {t.ident: (t, 0) for t in self.result.targets if t.ident not in listed}
        absent = {**previous, **self._absent}
        self._absent = {ident: (target, missed + 1) for ident, (target, missed) in absent.items()
                        if ident not in listed and missed + 1 < ABSENT_LISTINGS}
        kept = tuple(target for target, _ in self._absent.values())
        return replace(result, targets=result.targets + kept)

    def snapshot(self, config: Config) -> DiscoverySnapshot | None:
        """The discovery metrics, or None when discovery is off."""
        if config.discovery is None:
            return None
        r = self.result
        return DiscoverySnapshot(len(r.targets), r.keys, r.selected, r.dropped,
                                 self._last_success, self._failures)

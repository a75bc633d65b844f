"""Seedable synthetic usage: requests per tick, realistic token sizes, some of it late."""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from exporter.simulator.store import Event, EventStore
from exporter.simulator.usage import Clock, Usage

_DAY = 86400
_IMAGE_HINTS = ("image", "flux", "diffusion", "sdxl", "kolors", "dall")


@dataclass(frozen=True)
class TargetSpec:
    """A (project, key, model) that receives traffic at ``rate`` requests/second on average."""

    key: str
    model: str
    project: str = ""
    rate: float = 0.5


@dataclass(frozen=True)
class ModelProfile:
    """Mean size of one request to a kind of model."""

    input_tokens: float
    output_tokens: float
    images: float


CHAT = ModelProfile(input_tokens=900.0, output_tokens=250.0, images=0.0)
IMAGE = ModelProfile(input_tokens=60.0, output_tokens=0.0, images=1.6)


def profile_for(model: str) -> ModelProfile:
    """Image models make pictures and few tokens; everything else chats."""
    name = model.lower()
    return IMAGE if any(hint in name for hint in _IMAGE_HINTS) else CHAT


def poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw (Knuth for small means, normal approximation for large ones)."""
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _amount(rng: random.Random, requests: int, mean: float) -> int:
    """Total size of ``requests`` requests: the sum's spread shrinks as requests add up."""
    if mean <= 0:
        return 0
    spread = 0.6 / math.sqrt(requests)
    # A lognormal factor with mean 1 (gauss is the cheapest normal in ``random``).
    factor = math.exp(rng.gauss(-spread * spread / 2, spread))
    return max(requests, round(requests * mean * factor))


class TrafficGenerator:
    """Writes events into a store, tick by tick, deterministically for a seed.

    Ticks are generated lazily by :meth:`advance`, in order, so the result does not depend
    on how often (or from which thread) it is called.
    """

    def __init__(
        self,
        store: EventStore,
        targets: Sequence[TargetSpec],
        seed: int,
        clock: Clock,
        tick: float = 1.0,
        *,
        late_fraction: float = 0.1,
        late_max: float = 30.0,
        diurnal: float = 0.5,
    ) -> None:
        if tick < 1:
            raise ValueError(f"traffic tick must be at least 1 second, got {tick}")
        self._store, self._targets, self._clock = store, tuple(targets), clock
        self._profiles = tuple(profile_for(t.model) for t in self._targets)
        self._rng = random.Random(seed)  # noqa: S311 -- reproducible traffic, not secrets
        self._tick, self._late_fraction, self._late_max = tick, late_fraction, late_max
        self._diurnal = diurnal
        self._next = math.floor(clock.time() / tick)  # index of the first tick not generated
        self._started = False
        self._lock = threading.Lock()

    @property
    def targets(self) -> tuple[TargetSpec, ...]:
        """The targets that receive traffic."""
        return self._targets

    def backfill(self, seconds: float) -> int:
        """Generate the last ``seconds`` of history; only before the first :meth:`advance`."""
        with self._lock:
            if self._started:
                raise RuntimeError("backfill must be called before traffic starts advancing")
            self._next = math.floor((self._clock.time() - seconds) / self._tick)
        return self.advance()

    def advance(self, now: float | None = None) -> int:
        """Generate every tick that has ended by ``now``; return how many events were added."""
        now = self._clock.time() if now is None else now
        added = 0
        with self._lock:
            self._started = True
            while (self._next + 1) * self._tick <= now:
                events = self._generate(self._next * self._tick)
                self._store.add_many(events)
                added += len(events)
                self._next += 1
        return added

    def _rate_factor(self, ts: float) -> float:
        # Quietest at 00:00 UTC, busiest at 12:00: enough shape to make graphs look alive.
        phase = 2 * math.pi * (ts % _DAY) / _DAY
        return 1.0 - self._diurnal * math.cos(phase)

    def _generate(self, start: float) -> list[Event]:
        factor = self._rate_factor(start) * self._tick
        events = []
        for target, profile in zip(self._targets, self._profiles, strict=True):
            requests = poisson(self._rng, target.rate * factor)
            if requests:
                events.append(self._event(target, profile, int(start), requests))
        return events

    def _event(
        self, target: TargetSpec, profile: ModelProfile, start: int, requests: int
    ) -> Event:
        rng = self._rng
        inp = _amount(rng, requests, profile.input_tokens)
        out = _amount(rng, requests, profile.output_tokens)
        images = _amount(rng, requests, profile.images)
        ts = start + rng.randrange(max(1, int(self._tick)))
        late = rng.random() < self._late_fraction
        visible = ts + rng.uniform(0, self._late_max) if late else float(ts)
        totals = Usage(inp, out, inp + out, requests, images)
        return Event(ts, visible, target.project, target.key, target.model, totals)

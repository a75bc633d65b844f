"""Seeded synthetic traffic: deterministic, plausible, partly late."""

import random
import statistics
from collections.abc import Iterable
from typing import Any

import pytest

from exporter.core.clock import FakeClock
from exporter.simulator.build import demo_targets
from exporter.simulator.store import Event, EventStore
from exporter.simulator.traffic import (
    CHAT,
    IMAGE,
    TargetSpec,
    TrafficGenerator,
    poisson,
    profile_for,
)
from exporter.simulator.usage import Usage

T0 = 1_700_000_000.0
TARGETS = [
    TargetSpec("k1", "deepseek-ai/DeepSeek-V3", rate=2.0),
    TargetSpec("k2", "black-forest-labs/FLUX.1-schnell", "proj", rate=1.0),
]


def generate(seed: int, steps: list[float], late_fraction: float = 0.1) -> EventStore:
    clock = FakeClock(T0)
    store = EventStore()
    traffic = TrafficGenerator(store, TARGETS, seed, clock, late_fraction=late_fraction)
    for step in steps:
        clock.advance(step)
        traffic.advance()
    return store


def snapshot(store: EventStore) -> list[Usage]:
    return [
        store.query(t.project, t.key, t.model, int(T0) - 10, int(T0) + 1000, T0 + s)
        for t in TARGETS
        for s in (100, 200, 300, 10_000)
    ]


def test_same_seed_same_traffic_however_advanced() -> None:
    once = generate(3, [300.0])
    in_steps = generate(3, [0.5, 17.0, 100.3, 182.2])
    assert snapshot(once) == snapshot(in_steps)
    assert snapshot(once) != snapshot(generate(4, [300.0]))


def test_totals_add_up_and_models_look_like_their_kind() -> None:
    store = generate(1, [600.0])
    chat = store.truth("", "k1", TARGETS[0].model, 0, 2**40)
    image = store.truth("proj", "k2", TARGETS[1].model, 0, 2**40)
    for totals in (chat, image):
        assert totals.tokens == totals.input_tokens + totals.output_tokens
        assert totals.requests > 0
    assert chat.input_tokens > chat.output_tokens > chat.requests
    assert chat.image_generations == 0
    assert image.image_generations >= image.requests
    assert image.output_tokens == 0
    # ~2 requests/second over 600 s (diurnal factor between 0.5 and 1.5).
    assert 300 < chat.requests < 2400


def test_some_events_arrive_late_and_none_without_late_fraction() -> None:
    late = generate(2, [600.0], late_fraction=0.5)
    target = TARGETS[0]
    now = T0 + 600
    args = ("", target.key, target.model, 0, 2**40)
    assert late.query(*args, now) != late.truth(*args)
    prompt = generate(2, [600.0], late_fraction=0.0)
    assert prompt.query(*args, now) == prompt.truth(*args)


def test_no_event_from_the_future_and_backfill_fills_history() -> None:
    clock = FakeClock(T0)
    store = EventStore()
    traffic = TrafficGenerator(store, TARGETS, 5, clock, tick=10.0)
    traffic.backfill(3600)
    t = TARGETS[0]
    assert store.truth("", t.key, t.model, int(T0) - 3600, int(T0) - 1800).requests > 0
    assert store.truth("", t.key, t.model, int(T0), 2**40) == Usage()
    with pytest.raises(RuntimeError,
                       match=r"^backfill must be called before traffic starts advancing$"):
        traffic.backfill(60)


def test_demo_targets_shape() -> None:
    targets = demo_targets(3, 2)
    assert len(targets) == 6
    assert len({(t.key, t.model) for t in targets}) == 6
    with pytest.raises(ValueError, match="models must be between"):
        demo_targets(1, 99)


class RecordingStore(EventStore):
    """A store that also keeps every event it was given, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[Event] = []

    def add_many(self, events: Iterable[Event]) -> None:
        batch = list(events)
        self.events.extend(batch)
        super().add_many(batch)


def recorded(targets: list[TargetSpec], seconds: float, start: float = T0, **kw: Any
             ) -> list[Event]:
    store = RecordingStore()
    TrafficGenerator(store, targets, 9, FakeClock(start), **kw).advance(start + seconds)
    return store.events


def test_a_tick_shorter_than_a_second_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^traffic tick must be at least 1 second, got 0\.5$"):
        TrafficGenerator(EventStore(), TARGETS, 1, FakeClock(T0), tick=0.5)
    assert TrafficGenerator(EventStore(), TARGETS, 1, FakeClock(T0), tick=1).targets == tuple(
        TARGETS)


@pytest.mark.parametrize("model", ["my-image-model", "black-forest-labs/FLUX.1-dev",
                                   "stable-diffusion-3", "SDXL-Turbo", "Kwai-Kolors/Kolors",
                                   "dall-e-3"],
                         ids=["image", "flux", "diffusion", "sdxl", "kolors", "dall"])
def test_a_model_named_like_an_image_model_makes_pictures(model: str) -> None:
    assert profile_for(model) is IMAGE
    assert profile_for("deepseek-ai/DeepSeek-V3") is CHAT


def test_each_event_lies_in_its_tick_and_shows_late_by_at_most_late_max() -> None:
    events = recorded(TARGETS, 600, tick=10, late_fraction=0.5, late_max=20)
    assert len(events) >= 100
    starts = range(int(T0), int(T0) + 600, 10)
    assert {e.ts - (e.ts - int(T0)) % 10 for e in events} == set(starts)  # every tick, in it
    assert all(int(T0) <= e.ts < int(T0) + 600 for e in events)
    delays = [e.visible_at - e.ts for e in events]
    assert all(0 <= d <= 20 for d in delays)
    assert 0.3 < sum(d > 0 for d in delays) / len(delays) < 0.7
    assert max(delays) > 15
    assert min(d for d in delays if d > 0) < 1
    assert {e.ts % 10 for e in events} == set(range(10))  # anywhere in the tick


def test_traffic_is_busiest_at_noon_and_quietest_at_midnight_utc() -> None:
    midnight = 1_699_920_000.0  # 2023-11-14 00:00 UTC
    target = [TargetSpec("k", "m", rate=5.0)]

    def requests(start: float, **kw: Any) -> int:
        return sum(e.totals.requests for e in recorded(target, 1800, start - 900, **kw))

    quiet, busy = requests(midnight), requests(midnight + 43_200)
    assert 0.4 < quiet / (5 * 1800) < 0.6  # 1 - 0.5
    assert 1.4 < busy / (5 * 1800) < 1.6  # 1 + 0.5
    assert 0.9 < requests(midnight + 21_600) / (5 * 1800) < 1.1  # 06:00, on the mean
    flat = requests(midnight, diurnal=0.0)
    assert 0.9 < flat / (5 * 1800) < 1.1


def test_poisson_draws_average_their_mean_small_or_large() -> None:
    rng = random.Random(4)
    assert poisson(rng, 0) == 0
    assert poisson(rng, -2.5) == 0
    for lam in (0.2, 3.0, 30.0, 31.0, 400.0):
        draws = [poisson(rng, lam) for _ in range(4000)]
        mean = sum(draws) / len(draws)
        variance = sum((d - mean) ** 2 for d in draws) / len(draws)
        assert abs(mean - lam) < 0.05 * lam + 0.02, lam
        assert abs(variance - lam) < 0.15 * lam + 0.05, lam
        assert min(draws) >= 0


def test_request_sizes_average_their_kinds_profile() -> None:
    chat = [TargetSpec("k", "deepseek-ai/DeepSeek-V3", rate=1.0)]
    image = [TargetSpec("k", "FLUX.1", rate=1.0)]
    for targets, profile in ((chat, CHAT), (image, IMAGE)):
        total = Usage()
        for event in recorded(targets, 2 * 3600, diurnal=0.0):
            total += event.totals
        assert abs(total.input_tokens / total.requests / profile.input_tokens - 1) < 0.02
        if profile.output_tokens:
            assert abs(total.output_tokens / total.requests / profile.output_tokens - 1) < 0.02
        if profile.images:  # whole pictures, at least one a request: a little above the mean
            assert 0 < total.image_generations / total.requests / profile.images - 1 < 0.05


def test_every_request_uses_at_least_one_of_each_thing_its_model_makes() -> None:
    for event in recorded([TargetSpec("k", "m", rate=0.5)], 600, diurnal=0.0):
        assert event.totals.input_tokens >= event.totals.requests
        assert event.totals.output_tokens >= event.totals.requests


def test_each_second_that_ends_brings_its_own_events_once() -> None:
    store = RecordingStore()
    targets = [TargetSpec("k", "m", rate=3.0), TargetSpec("k2", "m", rate=2.0)]
    traffic = TrafficGenerator(store, targets, 6, FakeClock(T0))
    assert traffic.advance(T0 + 0.999) == 0
    for second in range(int(T0), int(T0) + 120):
        before = len(store.events)
        added = traffic.advance(second + 1)
        assert added == len(store.events) - before
        assert {e.ts for e in store.events[before:]} <= {second}
    assert len({e.ts for e in store.events}) > 100
    assert traffic.advance(T0 + 120) == 0
    assert traffic.advance(T0 + 125) == len(store.events) - sum(
        1 for e in store.events if e.ts < T0 + 120) > 0


def test_by_default_a_tenth_of_events_show_up_to_half_a_minute_late() -> None:
    events = recorded([TargetSpec("k", "m", rate=2.0)], 3600)
    delays = [e.visible_at - e.ts for e in events]
    late = [d for d in delays if d > 0]
    assert 0.08 < len(late) / len(delays) < 0.12
    assert 28 < max(late) <= 30
    assert min(late) < 1


def test_a_sums_spread_shrinks_as_its_requests_add_up() -> None:
    events = recorded([TargetSpec("k", "m", rate=1.5)], 3 * 3600, diurnal=0.0)

    def spread(requests: int) -> float:
        sizes = [e.totals.input_tokens / requests for e in events if e.totals.requests == requests]
        return statistics.pstdev(sizes) / statistics.fmean(sizes)

    # A lognormal factor of sigma 0.6 / sqrt(n): its coefficient of variation
    # sqrt(exp(sigma**2) - 1) is 0.65 for one request, 0.31 for four.
    assert 0.55 < spread(1) < 0.75
    assert 0.26 < spread(4) < 0.36

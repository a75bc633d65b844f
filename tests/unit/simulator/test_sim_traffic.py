"""Seeded synthetic traffic: deterministic, plausible, partly late."""

import pytest

from exporter.core.clock import FakeClock
from exporter.simulator.build import demo_targets
from exporter.simulator.store import EventStore
from exporter.simulator.traffic import TargetSpec, TrafficGenerator
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
    with pytest.raises(RuntimeError, match="before traffic starts"):
        traffic.backfill(60)


def test_demo_targets_shape() -> None:
    targets = demo_targets(3, 2)
    assert len(targets) == 6
    assert len({(t.key, t.model) for t in targets}) == 6
    with pytest.raises(ValueError, match="models must be between"):
        demo_targets(1, 99)

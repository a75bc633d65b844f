"""--shard=I/N: every target lands in exactly one shard, stably; bad values are refused."""

from __future__ import annotations

import subprocess
import sys

import pytest
from prometheus_client import CollectorRegistry

from exporter.clock import SystemClock
from exporter.config import ApiConfig, Config, DiscoveryConfig, Target
from exporter.service import Service
from exporter.sharding import Shard, parse_shard, shard_of
from exporter.simulator import Catalog, EventStore, SimKey, SimulatorServer
from tests.harness import parse_metrics


def many_targets(count: int) -> tuple[Target, ...]:
    return tuple(Target(f"uminferapikey-{i:05d}", f"model-{i % 4}", f"org-{i % 3}")
                 for i in range(count))


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8, 16])
def test_every_target_lands_in_exactly_one_shard(count: int) -> None:
    targets = many_targets(1000)
    owners = {t.ident: [i for i in range(count) if Shard(i, count).owns(t)] for t in targets}
    assert all(len(found) == 1 for found in owners.values())
    picked = [t for i in range(count) for t in Shard(i, count).select(targets)]
    assert sorted(t.ident for t in picked) == sorted(t.ident for t in targets)


@pytest.mark.parametrize("count", [2, 3, 5, 8])
def test_shards_are_roughly_even(count: int) -> None:
    sizes = [len(Shard(i, count).select(many_targets(3000))) for i in range(count)]
    expected = 3000 / count
    assert all(0.8 * expected < size < 1.2 * expected for size in sizes), sizes


def test_hash_is_stable_across_processes() -> None:
    # Python's hash() of a str changes per process (PYTHONHASHSEED); sha256 must not.
    code = "from exporter.sharding import shard_of; print(shard_of('org-1/k/m', 7))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, env={"PYTHONHASHSEED": "12345"})
    assert int(other.stdout) == shard_of("org-1/k/m", 7)


def test_apply_keeps_order_and_one_of_one_keeps_everything() -> None:
    config = Config(targets=many_targets(50))
    assert Shard(0, 1).apply(config) is config
    kept = Shard(1, 3).apply(config).targets
    assert list(kept) == [t for t in config.targets if shard_of(t.ident, 3) == 1]


@pytest.mark.parametrize(("text", "message"), [
    ("3/2", "need 0 <= I < N in I/N, got 3/2"),
    ("2/2", "need 0 <= I < N in I/N, got 2/2"),
    ("0/0", "N must be at least 1 in I/N, got '0/0'"),
    ("-1/2", "expected I/N with whole numbers, e.g. 0/3, got '-1/2'"),
    ("1", "expected I/N with whole numbers, e.g. 0/3, got '1'"),
    ("a/b", "expected I/N with whole numbers, e.g. 0/3, got 'a/b'"),
])
def test_bad_shards_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace(".", r"\.") + "$"):
        parse_shard(text)


def test_cli_refuses_a_bad_shard_with_exit_1() -> None:
    result = subprocess.run([sys.executable, "-m", "exporter", "--shard=3/2"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "uminfer-exporter: argument --shard: need 0 <= I < N in I/N, got 3/2")


def test_parse_accepts_valid_shards() -> None:
    assert parse_shard("2/3") == Shard(2, 3)
    assert parse_shard("0/1") == Shard(0, 1)


def test_discovered_targets_are_cut_to_the_shard_too() -> None:
    catalog = Catalog()
    for i in range(30):
        catalog.add_key(SimKey("org", f"uminferapikey-{i:02d}", f"k{i}", "s3cret", status=1,
                               granted_models=("m",)))
    shard = Shard(1, 3)
    with SimulatorServer(EventStore(), {"pub": "priv"}, SystemClock(), catalog=catalog) as sim:
        config = Config(
            api=ApiConfig(endpoint=sim.url, public_key="pub", private_key="priv", timeout=5,
                          rate_limit=0),
            windows=(), discovery=DiscoveryConfig(projects=("org",)))
        service = Service(config, SystemClock(), CollectorRegistry(), lambda: config,
                          shard=shard)
        service.run_cycle()
        body = service.cache.body(compressed=False).decode()
        service.stop()
    polled = {f"{dict(labels)['project_id']}/{dict(labels)['key_id']}/{dict(labels)['model']}"
              for name, labels in parse_metrics(body) if name == "uminfer_up"}
    expected = {f"org/uminferapikey-{i:02d}/m" for i in range(30)
                if shard_of(f"org/uminferapikey-{i:02d}/m", 3) == 1}
    assert polled == expected
    assert 0 < len(expected) < 30

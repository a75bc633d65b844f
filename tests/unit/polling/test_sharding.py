"""--shard=I/N: every target lands in exactly one shard, stably; bad values are refused."""

from __future__ import annotations

import subprocess
import sys

import pytest
from prometheus_client import CollectorRegistry

from exporter.config import ApiConfig, Config, DiscoveryConfig, Target
from exporter.core.clock import SystemClock
from exporter.polling.sharding import Shard, parse_shard, shard_of
from exporter.service import Service
from exporter.simulator import Catalog, EventStore, SimKey, SimulatorServer
from tests.harness import parse_metrics

#: Which of org/uminferapikey-00/m ... -29/m shard 1 of 3 owns (sha256sum and bc, as VECTORS).
SHARD_1_OF_3 = (4, 6, 10, 17, 20, 22, 24)


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


# Computed once outside Python: the first 8 bytes of `printf %s IDENT | sha256sum`, read as a
# big-endian number, modulo N (with bc). Changing any of these moves targets between shards
# on upgrade, which double-counts or drops them while replicas run different versions.
VECTORS = [  # ident, shard of 3, of 7, of 16, of 1000
    ("org-1/k/m", 0, 0, 2, 194),
    ("org/uminferapikey-00/m", 0, 3, 3, 251),
    ("p/uminferapikey-xyz/deepseek-ai/DeepSeek-V3", 0, 3, 13, 301),
    ("/uminferapikey-a/m", 1, 3, 5, 589),
]


@pytest.mark.parametrize(("ident", "of3", "of7", "of16", "of1000"), VECTORS)
def test_shards_match_fixed_vectors(ident: str, of3: int, of7: int, of16: int,
                                    of1000: int) -> None:
    assert [shard_of(ident, n) for n in (3, 7, 16, 1000)] == [of3, of7, of16, of1000]
    assert shard_of(ident, 1) == 0


@pytest.mark.e2e
def test_hash_is_stable_across_processes() -> None:
    # Python's hash() of a str changes per process (PYTHONHASHSEED); sha256 must not.
    code = "from exporter.polling.sharding import shard_of; print(shard_of('org-1/k/m', 7))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, env={"PYTHONHASHSEED": "12345"})
    assert int(other.stdout) == 0  # VECTORS
    assert shard_of("org-1/k/m", 7) == 0


def test_apply_keeps_order_and_one_of_one_keeps_everything() -> None:
    targets = tuple(Target(f"uminferapikey-{i:02d}", "m", "org") for i in range(30))
    config = Config(targets=targets)
    assert Shard(0, 1).apply(config) is config
    kept = Shard(1, 3).apply(config).targets
    assert [t.key for t in kept] == [f"uminferapikey-{i:02d}" for i in SHARD_1_OF_3]


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


@pytest.mark.e2e
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
    assert polled == {f"org/uminferapikey-{i:02d}/m" for i in SHARD_1_OF_3}

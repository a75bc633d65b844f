"""Synthetic targets and snapshots of any size, and the same samples in a client_python registry."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from exporter.accounting.snapshot import Snapshot, TargetSnapshot
from exporter.config import Target, Window
from exporter.core.usage import Totals
from exporter.metrics.families import FAMILIES, GLOBAL_FAMILIES
from exporter.metrics.shape import DEFAULT

MODELS = ("deepseek-ai/DeepSeek-V3", "Qwen/Qwen2.5-72B-Instruct", "moonshotai/Kimi-K2-Instruct")
WINDOWS = (Window("1h", 3600), Window("24h", 86400))
NOW = 1_700_000_000.0


def targets(count: int) -> tuple[Target, ...]:
    """``count`` distinct targets shaped like a real organisation's: keys x models, one label."""
    return tuple(
        Target(f"uminferapikey-bench{i // len(MODELS):06d}", MODELS[i % len(MODELS)],
               f"org-bench{i % 7}", (("team", f"team-{i % 13}"),))
        for i in range(count))


def snapshot(count: int) -> Snapshot:
    """A snapshot with every family populated, so the body is as large as a real one."""
    snaps = []
    for i, target in enumerate(targets(count)):
        big = Totals(1_000_000 + i, 250_000 + i, 1_250_000 + 2 * i, 900 + i, i % 3)
        small = Totals(1000 + i, 250 + i, 1250 + 2 * i, 9, 0)
        snaps.append(TargetSnapshot(
            target=target, counters=big, windows=((WINDOWS[0], small), (WINDOWS[1], big)),
            windows_at=NOW, up=i % 50 != 0, last_success=NOW - 0.25, settled_until=int(NOW) - 600,
            failures=(("timeout", 2),) if i % 50 == 0 else (), revisions=i % 2,
            late_after_settle=Totals(0, 0, i % 5, 0, 0)))
    return Snapshot(targets=tuple(snaps), generated_at=NOW)


class _SameSamples(Collector):
    """Yields exactly the families and samples our renderer writes, as client_python objects."""

    def __init__(self, snap: Snapshot) -> None:
        self._snap = snap
        # Each target alone, as the one row its samples are asked for, and its labels.
        self._rows = [(((t, ""),), _labels(t.target)) for t in snap.targets]

    def collect(self) -> Iterator[Metric]:
        for family in FAMILIES:
            metric: Metric = (CounterMetricFamily if family.kind == "counter"
                              else GaugeMetricFamily)(family.name, family.help)
            for row, labels in self._rows:
                for line in family.samples(family, self._snap, row, DEFAULT):
                    metric.samples.append(_sample(line, labels))
            if metric.samples:
                yield metric
        for glob in GLOBAL_FAMILIES:
            metric = (CounterMetricFamily if glob.kind == "counter"
                      else GaugeMetricFamily)(glob.name, glob.help)
            for line in glob.samples(glob, self._snap, (), DEFAULT):
                labelled = line if "{" in line else line.replace(" ", "{} ", 1)
                metric.samples.append(_sample(labelled, {}))
            if metric.samples:
                yield metric


def _labels(target: Target) -> dict[str, str]:
    return {"project_id": target.project, "key_id": target.key, "model": target.model,
            **dict(target.labels)}


def _sample(line: str, labels: dict[str, str]) -> Sample:
    """Our line rendered with no target labels, turned back into a client_python Sample."""
    name, _, rest = line.partition("{")
    inner, _, value = rest.rpartition("} ")
    extra = dict(pair.split("=", 1) for pair in inner.lstrip(",").split(",") if pair)
    merged = {**labels, **{k: v.strip('"') for k, v in extra.items()}}
    return Sample(name, merged, float(value))


def client_registry(snap: Snapshot) -> CollectorRegistry:
    """A fresh registry that renders the same samples as ``render(snap)``, via generate_latest."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SameSamples(snap))
    return registry

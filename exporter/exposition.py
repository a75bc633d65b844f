"""Renders a Snapshot to the Prometheus text format once per cycle, plain and gzip."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from exporter.config import Target
from exporter.snapshot import Snapshot, TargetSnapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
GZIP_LEVEL = 1  # most of the size win for a fraction of the CPU of level 9

_QUANTITIES: tuple[tuple[str, str, str], ...] = (
    # (Totals field, metric stem, what it counts)
    ("input_tokens", "input_tokens", "input (prompt) tokens used"),
    ("output_tokens", "output_tokens", "output (completion) tokens used"),
    ("tokens", "tokens", "tokens used (input plus output)"),
    ("requests", "requests", "inference requests made"),
    ("image_generations", "image_generations", "images generated"),
)


def escape(value: str) -> str:
    """Escape a label value for the text format."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def target_labels(target: Target) -> str:
    """The label pairs every per-target series carries, without braces."""
    pairs = [("project_id", target.project), ("key_id", target.key), ("model", target.model)]
    pairs.extend(target.labels)
    return ",".join(f'{name}="{escape(value)}"' for name, value in pairs)


def number(value: float) -> str:
    """Format a sample value the way Prometheus' own clients do."""
    if isinstance(value, int) or value.is_integer():
        return str(int(value))
    return repr(value)


@dataclass(frozen=True)
class _Family:
    name: str
    kind: str
    help: str
    samples: Callable[[TargetSnapshot, str], Iterator[str]]


def _counter(attr: str, stem: str, what: str) -> _Family:
    def samples(t: TargetSnapshot, labels: str) -> Iterator[str]:
        yield f"uminfer_{stem}_total{{{labels}}} {getattr(t.counters, attr)}\n"

    return _Family(
        f"uminfer_{stem}_total",
        "counter",
        f"Number of {what}, counted exactly once since counting began for this target.",
        samples,
    )


def _window(attr: str, stem: str, what: str) -> _Family:
    def samples(t: TargetSnapshot, labels: str) -> Iterator[str]:
        for window, totals in t.windows:
            value = getattr(totals, attr)
            yield f'uminfer_window_{stem}{{{labels},window="{window.name}"}} {value}\n'

    return _Family(
        f"uminfer_window_{stem}",
        "gauge",
        f"Number of {what} in the trailing window, as the API reported at the last window read.",
        samples,
    )


def _optional(
    name: str, kind: str, help_: str, get: Callable[[TargetSnapshot], float | None]
) -> _Family:
    def samples(t: TargetSnapshot, labels: str) -> Iterator[str]:
        value = get(t)
        if value is not None:
            yield f"{name}{{{labels}}} {number(value)}\n"

    return _Family(name, kind, help_, samples)


def _failures(t: TargetSnapshot, labels: str) -> Iterator[str]:
    for reason, count in t.failures:
        yield f'uminfer_target_failures_total{{{labels},reason="{reason}"}} {count}\n'


def _late(t: TargetSnapshot, labels: str) -> Iterator[str]:
    yield f"uminfer_late_tokens_after_settle_total{{{labels}}} {t.late_after_settle.tokens}\n"


FAMILIES: tuple[_Family, ...] = (
    *(_counter(*q) for q in _QUANTITIES),
    *(_window(*q) for q in _QUANTITIES),
    _optional("uminfer_up", "gauge",
              "Whether the target's latest poll succeeded (1) or failed (0).",
              lambda t: 1 if t.up else 0),
    _optional("uminfer_last_success_timestamp_seconds", "gauge",
              "Unix time in seconds of the target's latest successful poll.",
              lambda t: t.last_success),
    _optional("uminfer_settled_timestamp_seconds", "gauge",
              "Unix time in seconds up to which the target's usage is settled and final.",
              lambda t: t.settled_until),
    _optional("uminfer_window_timestamp_seconds", "gauge",
              "Unix time in seconds at which the target's window gauges end.",
              lambda t: t.windows_at),
    _Family("uminfer_target_failures_total", "counter",
            "Number of failed polls of the target, by reason.", _failures),
    _optional("uminfer_revisions_total", "counter",
              "Number of readings lower than an earlier reading of the same interval (ignored).",
              lambda t: t.revisions),
    _Family("uminfer_late_tokens_after_settle_total", "counter",
            "Number of tokens that appeared after their interval settled; not in the counters.",
            _late),
)


def render(snapshot: Snapshot) -> bytes:
    """The text exposition of every per-target family in ``snapshot``."""
    labelled = [(t, target_labels(t.target)) for t in snapshot.targets]
    parts: list[str] = []
    for family in FAMILIES:
        lines = [line for t, labels in labelled for line in family.samples(t, labels)]
        if lines:
            parts.append(f"# HELP {family.name} {family.help}\n")
            parts.append(f"# TYPE {family.name} {family.kind}\n")
            parts.extend(lines)
    return "".join(parts).encode("utf-8")


@dataclass
class ExpositionCache:
    """The latest rendered body; swapped atomically, gzip made once on first demand."""

    _body: bytes = b""
    _gzipped: bytes | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def publish(self, snapshot: Snapshot) -> None:
        """Render ``snapshot`` and make it the body served from now on."""
        body = render(snapshot)
        with self._lock:
            self._body, self._gzipped = body, None

    def body(self, compressed: bool) -> bytes:
        """The current body, gzip-compressed when asked."""
        with self._lock:
            body, gzipped = self._body, self._gzipped
        if not compressed:
            return body
        if gzipped is None:
            gzipped = gzip.compress(body, GZIP_LEVEL, mtime=0)
            with self._lock:
                if self._body is body:
                    self._gzipped = gzipped
        return gzipped

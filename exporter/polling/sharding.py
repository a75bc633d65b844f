"""``--shard=I/N``: split the targets between N exporters by a stable hash, with no overlap."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, replace

from exporter.config import Config, Target


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based); ``Shard(0, 1)`` keeps every target."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"need 0 <= I < N in I/N, got {self.index}/{self.count}")

    def owns(self, target: Target) -> bool:
        """Whether this shard polls ``target``."""
        return shard_of(target.ident, self.count) == self.index

    def select(self, targets: Iterable[Target]) -> tuple[Target, ...]:
        """The targets this shard polls, in their configured order."""
        return tuple(t for t in targets if self.owns(t))

    def apply(self, config: Config) -> Config:
        """``config`` with only this shard's targets."""
        if self.count == 1:
            return config
        return replace(config, targets=self.select(config.targets))


def shard_of(ident: str, count: int) -> int:
    """The shard ``ident`` belongs to: SHA-256, not ``hash()``, which differs per process."""
    digest = hashlib.sha256(ident.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def parse_shard(text: str) -> Shard:
    """Parse ``I/N`` (e.g. ``0/3``); ValueError with a message an operator can act on."""
    index, sep, count = text.partition("/")
    if not sep or not index.strip().isdigit() or not count.strip().isdigit():
        raise ValueError(f"expected I/N with whole numbers, e.g. 0/3, got {text!r}")
    if int(count) < 1:
        raise ValueError(f"N must be at least 1 in I/N, got {text!r}")
    return Shard(int(index), int(count))

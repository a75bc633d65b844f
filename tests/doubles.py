"""Bases for test doubles of the API interfaces (exporter.api.sources): the members a test
does not exercise, done as the real client does when it has nothing to say."""

from __future__ import annotations

from exporter.api.keys import ApiModel


class UsageDouble:
    """``sync_clock`` and ``close`` of a usage double whose answers tell the clock anyway."""

    def sync_clock(self, deadline: float) -> str | None:
        return None

    def close(self) -> None:
        pass


class KeysDouble:
    """``list_models`` of a key-listing double that lists keys only."""

    def list_models(self, project: str, key_id: str, deadline: float) -> list[ApiModel]:
        return []

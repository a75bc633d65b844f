"""What the rest of the exporter needs of the API, as two interfaces: usage (with the API's
clock) and key listing. ``api.client.ApiClient`` and ``api.keys.KeyClient`` are the real ones;
``polling.accounts.AccountRouter`` routes usage per account; tests hand in doubles."""

from __future__ import annotations

from typing import Protocol

from exporter.api.keys import ApiKey, ApiModel
from exporter.config.types import Target
from exporter.core.usage import Reading


class UsageApi(Protocol):
    """Usage reads, the API's clock, and the connections behind them."""

    def get_usage(self, target: Target, start: int, end: int, deadline: float) -> Reading:
        """Totals over the inclusive interval and their bucket labels; raises ApiError."""
        ...

    def sync_clock(self, deadline: float) -> str | None:
        """Learn the API's clock if no answer has told it yet; why the API did not answer."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class KeyApi(Protocol):
    """Key listings: discovery, list prices and key health."""

    def list_keys(self, project: str, deadline: float) -> list[ApiKey]:
        """Every key of the project."""
        ...

    def list_models(self, project: str, key_id: str, deadline: float) -> list[ApiModel]:
        """The models a key of the project may call."""
        ...

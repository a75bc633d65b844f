"""The configuration's frozen dataclasses and defaults: what the rest of the exporter reads."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_ENDPOINT = "https://api.sigcalcloud.com/"
DEFAULT_PORT = 9866
DEFAULT_LISTEN_ADDRESS = f":{DEFAULT_PORT}"
BUILTIN_LABELS = ("project_id", "key_id", "model", "window", "currency", "instance", "job")


class ConfigError(Exception):
    """Every problem found in a config, each prefixed with its dotted path."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class ApiConfig:
    """How to reach and authenticate to the API."""

    endpoint: str = DEFAULT_ENDPOINT
    public_key: str = ""
    private_key: str = field(default="", repr=False)
    timeout: float = 60.0
    max_concurrency: int = 16
    rate_limit: float = 20.0  # requests per second for the whole process; 0 disables


@dataclass(frozen=True)
class PollConfig:
    """When and how usage is read."""

    interval: float = 60.0
    settle: int = 600
    period: int = 3600
    window_interval: float = 300.0
    permanent_error_retry: float = 300.0


@dataclass(frozen=True)
class StateConfig:
    """Where the ledger is persisted, and how far back a restart catches up."""

    path: str | None = None
    max_backfill: int = 86400


@dataclass(frozen=True)
class Window:
    """A trailing window exported as gauges; ``name`` is the label value as written."""

    name: str
    seconds: int


@dataclass(frozen=True)
class Target:
    """One (project, key, model) whose usage is read."""

    key: str
    model: str
    project: str = ""
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def ident(self) -> str:
        """A stable identity for state files and sharding."""
        return f"{self.project}/{self.key}/{self.model}"


@dataclass(frozen=True)
class Config:
    """The whole, validated configuration."""

    api: ApiConfig = ApiConfig()
    poll: PollConfig = PollConfig()
    state: StateConfig = StateConfig()
    windows: tuple[Window, ...] = (Window("1h", 3600), Window("24h", 86400))
    targets: tuple[Target, ...] = ()

"""The configuration's frozen dataclasses and defaults: what the rest of the exporter reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from exporter.core.grid import DEFAULT_ZONE, Grid

DEFAULT_ENDPOINT = "https://api.sigcalcloud.com/"
DEFAULT_PORT = 9866
DEFAULT_LISTEN_ADDRESS = f":{DEFAULT_PORT}"
BUILTIN_LABELS = ("project_id", "key_id", "model", "window", "currency", "instance", "job",
                  "key_name", "budget", "period", "account")
ACCOUNT_LABEL = "account"
#: ``metrics.semconv``: the exporter's own names only, or also the OpenTelemetry GenAI ones.
SEMCONVS = ("native", "otel-genai")
#: ``metrics.disable``: the optional groups of metric families (metrics.shape maps each to its
#: families); with all of them off a target has its 5 counters, ``uminfer_up`` and
#: ``uminfer_last_success_timestamp_seconds``.
FAMILY_GROUPS = ("windows", "cost", "key_health", "failure_reasons", "settlement", "audit")
#: ``metrics.drop_labels``: built-in labels that may be dropped (series that then share their
#: labels are summed); the targets' static label names may be dropped too.
DROPPABLE_LABELS = ("project_id", "key_id", "model", "key_name", "account")


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
    time_zone: str = DEFAULT_ZONE  # where the cloud's days start (see core.grid)


@dataclass(frozen=True)
class PollConfig:
    """When and how usage is read."""

    interval: float = 60.0
    settle: int = 600
    #: Seconds of a fixed period grid instead of the provider's days: set only by the hidden
    #: flag ``--accounting.test-period``, so that tests see periods close within seconds (as
    #: Prometheus' hidden ``--storage.tsdb.min-block-duration``). Never read from YAML.
    test_period: int | None = None
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
    account: str = ""  # "" with a single account (``api:``); else the name in ``accounts:``

    @property
    def ident(self) -> str:
        """A stable identity for state files and sharding (unchanged for a single account)."""
        base = f"{self.project}/{self.key}/{self.model}"
        return f"{self.account}:{base}" if self.account else base


@dataclass(frozen=True)
class ModelPrice:
    """List price of one model: per million input/output tokens, per image, per request."""

    model: str
    input: Decimal = Decimal(0)
    output: Decimal = Decimal(0)
    image: Decimal = Decimal(0)
    request: Decimal = Decimal(0)
    currency: str = "USD"


@dataclass(frozen=True)
class PricingConfig:
    """Prices from the config, and whether list prices are also read from the API."""

    currency: str = "USD"
    from_api: bool = False
    models: tuple[ModelPrice, ...] = ()
    #: The currency of list prices whose row and unit name none: ``pricing.currency`` when the
    #: config writes it, else None (such a price is not taken: its currency is never guessed).
    listed_currency: str | None = None


@dataclass(frozen=True)
class BudgetConfig:
    """A daily or monthly limit, in tokens or in money, for the targets it selects.

    A selector left None matches every value, so a budget with none is the whole exporter's.
    """

    name: str
    period: str
    tokens: int | None = None
    cost: Decimal | None = None
    currency: str = "USD"
    project: str | None = None
    key: str | None = None
    model: str | None = None


@dataclass(frozen=True)
class DiscoveryConfig:
    """Find targets: every key of ``projects`` whose status is in ``statuses`` and that passes
    the filters, times ``models`` (or, when empty, the models the key is granted)."""

    projects: tuple[str, ...] = ("",)
    statuses: tuple[int, ...] = (1,)
    include: tuple[str, ...] = ()  # regexes; a key is kept if one matches its id or name
    exclude: tuple[str, ...] = ()  # regexes; a key is dropped if one matches its id or name
    models: tuple[str, ...] = ()
    refresh: float = 600.0
    max_targets: int = 1000
    labels: tuple[tuple[str, str], ...] = ()
    accounts: tuple[str, ...] = ()  # accounts whose keys are listed; empty: every account


@dataclass(frozen=True)
class AccountConfig:
    """One cloud account of several: its name (the ``account`` label) and how to reach it."""

    name: str
    api: ApiConfig


@dataclass(frozen=True)
class KeysConfig:
    """Key health: quotas, use and expiry of every polled key, listed every ``interval``."""

    enabled: bool = True
    interval: float = 300.0


@dataclass(frozen=True)
class MetricsConfig:
    """What /metrics exports: naming convention, optional family groups off, labels dropped."""

    semconv: str = "native"  # or "otel-genai": also the OpenTelemetry GenAI token usage
    genai_provider_name: str = "ucloud"  # gen_ai.provider.name (and the older gen_ai.system)
    genai_operation_name: str = "chat"  # gen_ai.operation.name: the API does not say it
    disable: tuple[str, ...] = ()  # of FAMILY_GROUPS
    drop_labels: tuple[str, ...] = ()  # of DROPPABLE_LABELS and the static label names


@dataclass(frozen=True)
class AccountingConfig:
    """Where counting begins: ``origin`` (Unix seconds, by the API's clock) makes every replica
    with the same config count the same usage; None counts from when each target's counting
    began in this process (or its state)."""

    origin: int | None = None


@dataclass(frozen=True)
class HaConfig:
    """The other replicas of a pair: a replica without state (or with older state) takes their
    settled ledgers from ``peers`` (base URLs), authenticating as their web config demands."""

    peers: tuple[str, ...] = ()
    username: str | None = None
    password: str = field(default="", repr=False)
    ca_file: str | None = None  # verifies the peers' TLS certificates (default: system CAs)
    timeout: float = 10.0  # for a peer's whole answer, not per read
    insecure_http_auth: bool = False  # send username/password to http:// peers too (in clear)


@dataclass(frozen=True)
class Config:
    """The whole, validated configuration."""

    api: ApiConfig = ApiConfig()
    poll: PollConfig = PollConfig()
    state: StateConfig = StateConfig()
    windows: tuple[Window, ...] = (Window("1h", 3600), Window("24h", 86400))
    targets: tuple[Target, ...] = ()
    pricing: PricingConfig = PricingConfig()
    budgets: tuple[BudgetConfig, ...] = ()
    discovery: DiscoveryConfig | None = None  # None: only the static targets
    keys: KeysConfig = KeysConfig()
    # Two or more accounts, by name; empty: the one account of ``api`` (a single entry under
    # ``accounts:`` is read as that form). With several, every target names one and ``api`` is
    # left at its default and never read: each account's limits are its own (account_apis),
    # and what the whole process plans with is worked out from them by name below.
    accounts: tuple[AccountConfig, ...] = ()

    def account_apis(self) -> dict[str, ApiConfig]:
        """How to reach each account, by the name targets use ("" for the single account)."""
        return {a.name: a.api for a in self.accounts} if self.accounts else {"": self.api}

    def longest_timeout(self) -> float:
        """The longest of the accounts' ``timeout``: what a cycle gives any call to answer."""
        return max(api.timeout for api in self.account_apis().values())

    def total_concurrency(self) -> int:
        """The accounts' ``max_concurrency`` summed: the calls in flight at once, at most."""
        return sum(api.max_concurrency for api in self.account_apis().values())

    def total_rate_limit(self) -> float:
        """The accounts' ``rate_limit`` summed (requests a second); 0, unlimited, if any is."""
        rates = [api.rate_limit for api in self.account_apis().values()]
        return 0.0 if 0 in rates else sum(rates)

    def grid(self, account: str = "") -> Grid:
        """The provider days counting cuts ``account``'s targets' time into (core.grid)."""
        if self.poll.test_period is not None:
            return Grid.every(self.poll.test_period)
        return Grid(self.account_apis().get(account, self.api).time_zone)

    accounting: AccountingConfig = AccountingConfig()
    ha: HaConfig = HaConfig()
    metrics: MetricsConfig = MetricsConfig()

"""The dashboard from Grafana 11's own types (grafana-foundation-sdk): the mixin's dashboard.

``python -m mixin`` adds the selector to every query and writes grafana/dashboards/uminfer.json
(and the Helm chart's copy); tests/project/test_mixin.py fails while a committed file differs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    DynamicConfigValue,
    MatcherConfig,
    ValueMap,
    ValueMappingResult,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

UID = "uminfer-exporter"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
# Self-metrics carry only the scrape's labels; per-target series also carry the target's.
EXPORTER = 'instance=~"$instance"'
TARGET = f'{EXPORTER}, project_id=~"$project_id", key_id=~"$key_id", model=~"$model"'
TOKEN_KINDS = (("input", "uminfer_input_tokens_total"), ("output", "uminfer_output_tokens_total"))
# Grafana's unit for each currency code the cost series may carry (label `currency`); a series
# whose legend ends in the code gets it. Codes not listed show as plain numbers with the code
# in the legend.
CURRENCY_UNITS = (("USD", "currencyUSD"), ("EUR", "currencyEUR"), ("GBP", "currencyGBP"),
                  ("JPY", "currencyJPY"), ("CNY", "currency:¥"), ("HKD", "currency:HK$"),
                  ("SGD", "currency:S$"), ("KRW", "currencyKRW"), ("INR", "currencyINR"))
# Labels every per-target series has, each with its own variable: the rest are the targets'
# static labels (e.g. team), offered by $group for breakdowns.
BUILT_IN = ("__name__", "job", "instance", "project_id", "key_id", "model", "key_name")


def query(expr: str, legend: str = "__auto", *, instant: bool = False) -> prometheus.Dataquery:
    """A PromQL target: a range query for graphs, an instant one for the latest value."""
    q = prometheus.Dataquery().expr(expr).legend_format(legend).datasource(DATASOURCE)
    return q.instant() if instant else q.range()


def _with_queries(panel: Any, title: str, about: str, queries: list[prometheus.Dataquery]) -> Any:
    refs = "ABCDEFGH"
    for ref, q in zip(refs, queries, strict=False):
        panel = panel.with_target(q.ref_id(ref))
    return panel.title(title).description(about).datasource(DATASOURCE)


MONEY = "money"  # the unit of a panel whose series each end in their currency code


def in_currency(panel: Any) -> Any:
    """``panel`` with each currency's unit on the series whose legend ends in its code."""
    for code, unit in CURRENCY_UNITS:
        panel = panel.with_override(MatcherConfig("byRegexp", f"/(^|\\s){code}$/"),
                                    [DynamicConfigValue("unit", unit)])
    return panel


def graph(title: str, about: str, unit: str, *queries: prometheus.Dataquery,
          width: int = 12) -> timeseries.Panel:
    """A time series panel with a table legend showing mean and max; ``unit`` MONEY puts each
    series in its currency (legends must end in ``{{currency}}``)."""
    legend = (cb.VizLegendOptions().display_mode(common.LegendDisplayMode.TABLE)
              .placement(common.LegendPlacement.BOTTOM).show_legend(True)
              .calcs(["mean", "max"]))
    panel = (timeseries.Panel().unit("none" if unit == MONEY else unit).height(8).span(width)
             .legend(legend).fill_opacity(10))
    panel = in_currency(panel) if unit == MONEY else panel
    return _with_queries(panel, title, about, list(queries))  # type: ignore[no-any-return]


def single(title: str, about: str, unit: str, *queries: prometheus.Dataquery,
           width: int = 4, height: int = 4) -> stat.Panel:
    """A stat panel showing the latest value of each query (``unit`` as in :func:`graph`)."""
    reduce = cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False)
    panel = (stat.Panel().unit("none" if unit == MONEY else unit).height(height).span(width)
             .reduce_options(reduce))
    panel = in_currency(panel) if unit == MONEY else panel
    return _with_queries(panel, title, about, list(queries))  # type: ignore[no-any-return]


def ranking(title: str, about: str, expr: str, unit: str = "short") -> table.Panel:
    """A table of an instant query, biggest value first."""
    panel = (table.Panel().unit(unit).height(8).span(8)
             .sort_by([cb.TableSortByFieldState().display_name("Value").desc(True)]))
    target = query(expr, instant=True).format(PromQueryFormat.TABLE)
    return _with_queries(panel, title, about, [target])  # type: ignore[no-any-return]


def once(expr: str) -> str:
    """``expr`` with each series once however many replicas export it (ha.peers, --shard):
    the highest replica's value. Replicas of a pair count the same usage, so a sum across
    them doubles it; every aggregation of per-target, budget or key series goes through this.
    A chosen $instance still narrows the inner selector to that replica."""
    return f"max without (instance, pod) ({expr})"


def in_range(metric: str, by: str = "") -> str:
    """Sum of a counter's increase over the dashboard's time range, each target once."""
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} ({once(f'increase({metric}{{{TARGET}}}[$__range])')})"


def rate(metric: str, by: str, over: str = "$__rate_interval") -> str:
    """A counter's per-second rate, each target once, summed by ``by``."""
    return f"sum by ({by}) ({once(f'rate({metric}{{{TARGET}}}[{over}])')})"


def quantiles(metric: str) -> list[prometheus.Dataquery]:
    """p50, p95 and p99 of a histogram across the selected exporters."""
    buckets = f"sum by (le) (rate({metric}_bucket{{{EXPORTER}}}[$__rate_interval]))"
    return [query(f"histogram_quantile({q}, {buckets})", f"p{round(q * 100)}")
            for q in (0.5, 0.95, 0.99)]


def variable(name: str, label: str, expr: str) -> db.QueryVariable:
    """A multi-value variable from ``label_values``, "All" matching every value (and none)."""
    return (db.QueryVariable(name).label(label).query(expr).datasource(DATASOURCE)
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).sort(VariableSort.ALPHABETICAL_ASC)
            .multi(True).include_all(True).all_value(".*"))


def usage_rows() -> Iterator[db.Row | Any]:
    """Totals over the range, token rates, trailing windows: what the FinOps reader wants."""
    yield db.Row("Usage over the selected time range")
    for title, metric in (("Tokens", "uminfer_tokens_total"),
                          ("Input tokens", "uminfer_input_tokens_total"),
                          ("Output tokens", "uminfer_output_tokens_total"),
                          ("Requests", "uminfer_requests_total"),
                          ("Image generations", "uminfer_image_generations_total")):
        yield single(title, f"{title} counted in the selected time range (increase).", "short",
                     query(in_range(metric), title, instant=True))
    yield single("Targets up", "Targets whose latest poll succeeded, of all targets.", "short",
                 query(f"sum({once(f'uminfer_up{{{TARGET}}}')})", "up", instant=True),
                 query(f"count({once(f'uminfer_up{{{TARGET}}}')})", "targets", instant=True))
    yield db.Row("Token rate")
    for by, what in (("model", "model"), ("key_id", "key")):
        yield graph(f"Token rate by {what}, input vs output",
                    f"Tokens per second by {what}; input (prompt) and output (completion).",
                    "short", *(query(rate(metric, by), f"{{{{{by}}}}} {kind}")
                               for kind, metric in TOKEN_KINDS))
    yield graph("Requests by model", "Inference requests per second.", "reqps",
                query(rate("uminfer_requests_total", "model"), "{{model}}"))
    yield graph("Image generations by model", "Images generated per second.", "short",
                query(rate("uminfer_image_generations_total", "model"), "{{model}}"))
    yield db.Row("Trailing windows (exact API totals at the latest poll)")
    yield graph("Tokens in trailing windows by model", "uminfer_window_tokens by model.", "short",
                query(f"sum by (model, window) ({once(f'uminfer_window_tokens{{{TARGET}}}')})",
                      "{{model}} {{window}}"))
    yield single("Trailing-window totals", "Sums of the window gauges, one value per window.",
                 "short", *(
                     query(f"sum by (window) ({once(f'uminfer_window_{name}{{{TARGET}}}')})",
                           f"{{{{window}}}} {name.replace('_', ' ')}", instant=True)
                     for name in ("tokens", "input_tokens", "output_tokens", "requests",
                                  "image_generations")), width=12, height=8)


def cost_rows() -> Iterator[db.Row | Any]:
    """Money spent (exact, from the token counters) and spend against each budget."""
    yield db.Row("Cost and budgets")
    spend = in_range("uminfer_cost_total", "currency")
    yield single("Spend (selected range)", "Money spent in the selected time range, by "
                 "currency: each counted increment at the price in force when it was counted.",
                 MONEY, query(spend, "{{currency}}", instant=True), width=8, height=8)
    yield graph("Spend rate by model", "Money per hour, by model, in each currency.", MONEY,
                query(f"3600 * {rate('uminfer_cost_total', 'model, currency')}",
                      "{{model}} {{currency}}"), width=8)
    yield ranking("Top keys by spend (selected range)", "The ten keys that cost most; the "
                  "currency column says in what.",
                  f"topk(10, {in_range('uminfer_cost_total', 'project_id, key_id, currency')})",
                  unit="none")
    yield graph("Spend by $group (selected range)", "Money spent in the selected time range "
                "by the targets' static label chosen in \"Break down by\" (e.g. team).",
                MONEY, query(in_range("uminfer_cost_total", "$group, currency"),
                             "{{$group}} {{currency}}"), width=8)
    yield graph("Cost in trailing windows", "uminfer_window_cost: the window's usage at the "
                "prices in force now.", MONEY,
                query(f"sum by (window, currency) "
                      f"({once(f'uminfer_window_cost{{{TARGET}}}')})",
                      "{{window}} {{currency}}"), width=8)
    yield single("Budget used (share of limit)", "Use this period divided by the limit; "
                 "over 100% means the budget is exceeded.", "percentunit",
                 query(f"max by (budget) (uminfer_budget_used{{{EXPORTER}}}) / max by (budget) "
                       f"(uminfer_budget_limit{{{EXPORTER}}})", "{{budget}}", instant=True),
                 width=8, height=8)
    # Token and money budgets apart: one axis cannot hold 5,000,000 tokens and $50.
    for kind, selector, unit, legend in (("Token", 'unit="tokens"', "short", ""),
                                         ("Money", 'unit!="tokens"', MONEY, " {{unit}}")):
        scoped = f'{EXPORTER}, {selector}'
        yield graph(f"{kind} budgets: use vs limit", "Each budget's use in its current period "
                    "(rising from 0 at the period start) against its limit.", unit,
                    query(f"max by (budget, unit) (uminfer_budget_used{{{scoped}}})",
                          f"{{{{budget}}}} used{legend}"),
                    query(f"max by (budget, unit) (uminfer_budget_limit{{{scoped}}})",
                          f"{{{{budget}}}} limit{legend}"))


def consumer_rows() -> Iterator[db.Row | Any]:
    """Top keys and models, and who is spiking."""
    yield db.Row("Top consumers")
    yield ranking("Top keys by tokens (selected range)", "The ten keys that used most tokens.",
                  f"topk(10, {in_range('uminfer_tokens_total', 'project_id, key_id')})")
    yield ranking("Top models by tokens (selected range)", "The cost drivers: tokens by model.",
                  f"topk(10, {in_range('uminfer_tokens_total', 'model')})")
    by = "project_id, key_id, model"
    fast, slow = (rate("uminfer_tokens_total", by, over) for over in ("15m", "1d"))
    yield ranking("Who is spiking (15m rate / 1d rate)",
                  "Key and model pairs whose token rate of the last 15 minutes is highest "
                  "against their own average of the last day; 1 is normal.",
                  f"topk(10, {fast} / {slow})", unit="none")
    yield graph("Tokens by $group", "Tokens per second by the targets' static label chosen "
                "in \"Break down by\" (e.g. team).", "short",
                query(rate("uminfer_tokens_total", "$group"), "{{$group}}"), width=24)


def health_rows() -> Iterator[db.Row | Any]:
    """Is the exporter healthy, what does it cost on the API, how settled is the data."""
    yield db.Row("Exporter health")
    yield graph("Last successful poll age", "Seconds since each target's last successful poll.",
                "s", query(f"time() - max by (key_id, model) "
                           f"(uminfer_last_success_timestamp_seconds{{{TARGET}}})",
                           "{{key_id}} {{model}}"), width=8)
    yield graph("Settled lag", "How far behind now usage is final (settle plus period).", "s",
                query(f"time() - max by (key_id, model) "
                      f"(uminfer_settled_timestamp_seconds{{{TARGET}}})",
                      "{{key_id}} {{model}}"), width=8)
    yield graph("Failed polls by reason", "Failed target polls per interval, by reason.", "short",
                query(f"sum by (reason) (increase(uminfer_target_failures_total{{{TARGET}}}"
                      f"[$__rate_interval])) or label_replace(vector(0), \"reason\", \"none\", "
                      f"\"\", \"\")", "{{reason}}"), width=8)
    yield graph("API calls by outcome and RetCode", "Calls per second; errors are every "
                "outcome but success, with the API's RetCode.", "reqps",
                query(f"sum by (outcome, retcode) "
                      f"(rate(uminfer_api_requests_total{{{EXPORTER}}}[$__rate_interval]))",
                      "{{outcome}} {{retcode}}"), width=8)
    yield graph("API call latency", "Duration of API calls.", "s",
                *quantiles("uminfer_api_request_duration_seconds"), width=8)
    yield graph("Poll duration", "Duration of whole poll cycles.", "s",
                *quantiles("uminfer_poll_duration_seconds"), width=8)
    unlimited = ValueMap({"0": ValueMappingResult(text="unlimited", color="green")})
    yield single("API rate limit", "Requests per second the exporter allows itself (lowered "
                 "while throttled); \"unlimited\" when api.rate_limit is 0.", "reqps",
                 query(f"max by (instance) (uminfer_api_rate_limit_requests_per_second"
                       f"{{{EXPORTER}}})", "{{instance}}", instant=True),
                 width=8, height=8).mappings([unlimited])
    # Overruns and skipped backfill are each process's own, added up over the processes;
    # revisions and late tokens are the targets' (every replica sees them), counted once.
    yield single("Problems (selected range)", "Poll overruns, readings revised downwards, "
                 "tokens that came after settling, backfill seconds skipped; and whether the "
                 "last config reload worked (1).", "short",
                 *(query(f"sum(increase({metric}{{{EXPORTER}}}[$__range]))", title, instant=True)
                   for title, metric in (("overruns", "uminfer_poll_overruns_total"),
                                         ("backfill skipped s",
                                          "uminfer_backfill_skipped_seconds_total"))),
                 *(query(in_range(metric), title, instant=True)
                   for title, metric in (("revisions", "uminfer_revisions_total"),
                                         ("late tokens",
                                          "uminfer_late_tokens_after_settle_total"))),
                 query(f"min(uminfer_config_last_reload_successful{{{EXPORTER}}})",
                       "config reload ok", instant=True), width=8, height=8)
    yield single("API time buckets", "The width of the API's time buckets that fits its "
                 "recent answers' labels (86400: a provider day; information only, counting "
                 "does not depend on it). Over the range: answers whose labels straddle a "
                 "midnight of api.time_zone (the cloud's days start elsewhere: set it), and "
                 "audits whose whole came out below its parts (docs/accounting.md, 'What the "
                 "API must do').", "short",
                 query(f"max(uminfer_api_bucket_seconds{{{EXPORTER}}})", "API bucket (s)",
                       instant=True),
                 *(query(f"sum(increase({metric}{{{EXPORTER}}}[$__range]))", title, instant=True)
                   for title, metric in (("labels off the grid",
                                          "uminfer_api_labels_off_grid_total"),
                                         ("additivity errors",
                                          "uminfer_api_additivity_errors_total"))),
                 width=8, height=8)
    yield ranking("Exporters (value: targets polled)", "Version of each exporter and how "
                  "many targets it polls.",
                  f"max by (instance, version, python_version) "
                  f"(uminfer_exporter_build_info{{{EXPORTER}}}) "
                  f"* on (instance) group_left () max by (instance) "
                  f"(uminfer_targets{{{EXPORTER}}})", unit="none")


def key_rows() -> Iterator[db.Row | Any]:
    """The cloud's own numbers for each polled key: spending limits, use, expiry, and the
    exporter's cost reconciled with the cloud's spend (ListUMInferAPIKey, ``keys:``)."""
    yield db.Row("Keys (the cloud's quotas, spend and expiry)")
    keys = f'{EXPORTER}, project_id=~"$project_id", key_id=~"$key_id"'
    daily = f'{keys}, period="daily"'
    yield graph("Key spend vs limit", "What the cloud says each polled key spent in its "
                "current day and month (uminfer_key_used_amount) against its limit, in the "
                "account's currency. Keys without a limit show no limit line.", "short",
                query(f"max by (key_id, period) (uminfer_key_used_amount{{{keys}}})",
                      "{{key_id}} {{period}} used"),
                query(f"max by (key_id, period) (uminfer_key_limit_amount{{{keys}}})",
                      "{{key_id}} {{period}} limit"))
    yield single("Share of limit used", "Used divided by limit, per key and period; the "
                 "UminferKeyNearLimit alert fires at 90%.", "percentunit",
                 query(f"max by (key_id, period) (uminfer_key_used_amount{{{keys}}} "
                       f"/ uminfer_key_limit_amount{{{keys}}})", "{{key_id}} {{period}}",
                       instant=True), width=12, height=8)
    left = (f"(max by (project_id, key_id) (uminfer_key_expiry_timestamp_seconds{{{keys}}}) "
            f"- time()) * on (project_id, key_id) group_left (key_name, status) "
            f"max by (project_id, key_id, key_name, status) (uminfer_key_info{{{keys}}})")
    expiry = (table.Panel().unit("dtdurations").height(8).span(8)
              .sort_by([cb.TableSortByFieldState().display_name("Value").desc(False)]))
    yield _with_queries(expiry, "Key expiry (time left)", "Polled keys that expire, soonest "
                        "first; keys that never expire are not listed.",
                        [query(left, instant=True).format(PromQueryFormat.TABLE)])
    yield graph("Reconciliation: exporter cost vs cloud spend (1h)", "Over the same trailing "
                "hour: the exporter's cost of the key's polled models, and the growth of the "
                "cloud's DailyUsedAmount. They differ by unpolled models, tiered or changed "
                "prices, currency and billing delay (docs/cost.md, Reconciliation).", "short",
                # What the reconciliation rules record, here from the raw series: the rules'
                # output has no instance label for $instance to narrow.
                *(query(f"sum by (key_id) ({once(f'increase({metric}{{{scope}}}[1h])')})",
                        f"{{{{key_id}}}} {side}")
                  for metric, scope, side in (("uminfer_cost_total", keys, "exporter"),
                                              ("uminfer_key_used_amount", daily, "cloud"))),
                width=8)
    yield single("Key listing and prices", "Age of the latest key listing, failed listings in "
                 "the range (reason unsupported: the cloud lacks ListUMInferAPIKey), and polled "
                 "models without a price (uminfer_unpriced).", "short",
                 query(f"time() - max(uminfer_key_listing_last_success_timestamp_seconds"
                       f"{{{EXPORTER}}})", "listing age (s)", instant=True),
                 query(f"sum(increase(uminfer_key_listing_failures_total{{{EXPORTER}}}"
                       f"[$__range]))", "failed listings", instant=True),
                 query(f"count(uminfer_unpriced{{{EXPORTER}}}) or vector(0)", "unpriced models",
                       instant=True), width=8, height=8)


def build() -> dict[str, Any]:
    """The dashboard as Grafana's JSON model."""
    board = (db.Dashboard("uminfer-exporter: LLM token usage").uid(UID)
             .description("Token usage, cost drivers and exporter health (uminfer-exporter).")
             .tags(["uminfer", "llm", "tokens"]).time("now-6h", "now").refresh("1m")
             .timezone("browser").editable()
             .with_variable(db.DatasourceVariable("datasource").label("Data source")
                            .type("prometheus"))
             .with_variable(variable("instance", "Exporter",
                                     "label_values(uminfer_exporter_build_info, instance)")))
    scope = EXPORTER  # each variable narrows to the choices made in the ones before it
    for name, label in (("project_id", "Project"), ("key_id", "Key"), ("model", "Model")):
        expr = f"label_values(uminfer_up{{{scope}}}, {name})"
        board = board.with_variable(variable(name, label, expr))
        scope += f', {name}=~"${name}"'
    # Breakdowns by the targets' static labels in use, whatever the config names them.
    board = board.with_variable(
        db.QueryVariable("group").label("Break down by").datasource(DATASOURCE)
        .query(f"label_names(uminfer_up{{{EXPORTER}}})")
        .regex(f"/^(?!({'|'.join(BUILT_IN)})$).+$/")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).sort(VariableSort.ALPHABETICAL_ASC))
    for panel_id, row in enumerate((*usage_rows(), *cost_rows(), *consumer_rows(),
                                             *health_rows(), *key_rows()), start=1):
        board = board.with_row(row.id(panel_id)) if isinstance(row, db.Row) \
            else board.with_panel(row.id(panel_id))
    encoded: dict[str, Any] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    return encoded


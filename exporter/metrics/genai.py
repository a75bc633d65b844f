"""The token counters under OpenTelemetry GenAI names, as Prometheus stores them from OTLP.

Follows the GenAI semantic conventions v1.37.0 (the first with ``gen_ai.provider.name``;
``gen_ai.system`` before it), metric ``gen_ai.client.token.usage`` (a histogram, unit
``{token}``), after the OTLP-to-Prometheus translation: dots become underscores and a unit in
braces adds no suffix, so ``gen_ai_client_token_usage_sum`` and ``_count`` with labels
``gen_ai_token_type``, ``gen_ai_request_model``, ``gen_ai_provider_name``,
``gen_ai_operation_name``. The exporter knows exact totals, not each request's tokens, so it
exports the histogram's ``_sum`` (tokens of the type) and ``_count`` (requests: a client records
one measurement of each type per request), with no buckets: as a summary without quantiles,
the text format's shape for a sum and a count. Inventing buckets would make quantiles lie.
"""

from __future__ import annotations

from collections.abc import Iterator

from exporter.accounting.snapshot import Snapshot, TargetSnapshot
from exporter.metrics.families import Family, Rows, escape
from exporter.metrics.shape import Shape

NAME = "gen_ai_client_token_usage"
SEMCONV_VERSION = "1.37.0"
HELP = (f"Number of input and output tokens used (OpenTelemetry GenAI semantic conventions "
        f"v{SEMCONV_VERSION}, gen_ai.client.token.usage): _sum is the tokens of the type, "
        f"_count the requests, counted exactly since counting began; no buckets.")


def genai_labels(t: TargetSnapshot, shape: Shape) -> str:
    """The GenAI series' labels of target ``t``: the conventions' own, then the exporter's
    (``model`` is ``gen_ai_request_model`` here), without the token type and dropped ones."""
    target = t.target
    provider = escape(shape.provider)
    pairs = [("gen_ai_operation_name", escape(shape.operation)),
             ("gen_ai_provider_name", provider), ("gen_ai_system", provider),
             ("gen_ai_request_model", escape(target.model)),
             ("project_id", escape(target.project)), ("key_id", escape(target.key)),
             *((name, escape(value)) for name, value in target.labels)]
    return ",".join(f'{name}="{value}"' for name, value in pairs if name not in shape.drop)


def samples(f: Family, _snapshot: Snapshot, rows: Rows, shape: Shape) -> Iterator[str]:
    """``_sum`` and ``_count`` for input and output tokens of each target that is counting."""
    for t, _labels in rows:
        if not t.counting:
            continue
        labels = genai_labels(t, shape)
        requests = t.counters.requests
        for kind, tokens in (("input", t.counters.input_tokens),
                             ("output", t.counters.output_tokens)):
            typed = f'{labels},gen_ai_token_type="{kind}"'
            yield f"{f.name}_sum{{{typed}}} {tokens}\n"
            yield f"{f.name}_count{{{typed}}} {requests}\n"


FAMILY = Family(NAME, "summary", HELP, samples)

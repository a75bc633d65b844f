"""Parser for the ``metrics`` section: naming convention, family groups off, labels dropped."""

from __future__ import annotations

from collections.abc import Iterable

from exporter.config.reader import Reader, build, got, quote
from exporter.config.types import DROPPABLE_LABELS, FAMILY_GROUPS, SEMCONVS, MetricsConfig

METRICS_KEYS = ("semconv", "genai_provider_name", "genai_operation_name", "disable",
                "drop_labels")
#: Label names the OpenTelemetry GenAI series carry; a static label may not take one of them.
GENAI_PREFIX = "gen_ai_"


def metrics_section(r: Reader, raw: object, static_labels: Iterable[str]) -> MetricsConfig:
    """The ``metrics`` section; ``static_labels`` are the label names the targets and discovery
    add, which may be dropped too (and must not clash with the GenAI names when those are on)."""
    d = r.section("metrics", raw, METRICS_KEYS)
    semconv = r.choice("metrics.semconv", d.get("semconv"), SEMCONVS)
    statics = sorted(set(static_labels))
    if semconv == "otel-genai":
        for name in statics:
            if name.startswith(GENAI_PREFIX):
                r.fail("metrics.semconv", f"the static label {quote(name)} would clash with "
                       f"the OpenTelemetry GenAI labels ({GENAI_PREFIX}...); rename it")
    return build(
        MetricsConfig,
        semconv=semconv,
        genai_provider_name=_name(r, "metrics.genai_provider_name",
                                  d.get("genai_provider_name")),
        genai_operation_name=_name(r, "metrics.genai_operation_name",
                                   d.get("genai_operation_name")),
        disable=_unique(r, "metrics.disable", d.get("disable"), FAMILY_GROUPS,
                        "metric family groups"),
        drop_labels=_unique(r, "metrics.drop_labels", d.get("drop_labels"),
                            (*DROPPABLE_LABELS, *statics), "labels that can be dropped"),
    )


def _name(r: Reader, path: str, raw: object) -> str | None:
    text = r.string(path, raw)
    if text == "":
        r.fail(path, "must not be empty")
        return None
    return text


def _unique(r: Reader, path: str, raw: object, allowed: tuple[str, ...],
            what: str) -> tuple[str, ...] | None:
    """A list of distinct names out of ``allowed``; an unknown one names every valid one."""
    if raw is None:
        return None
    if not isinstance(raw, list):
        r.fail(path, f"expected a list of names ({what}: {', '.join(allowed)}), got {got(raw)}")
        return None
    chosen: list[str] = []
    for i, item in enumerate(raw):
        name = r.string(f"{path}[{i}]", item)
        if name is None:
            continue
        if name not in allowed:
            r.fail(f"{path}[{i}]", f"unknown name {quote(name)} ({what}: {', '.join(allowed)})")
        elif name in chosen:
            r.fail(f"{path}[{i}]", f"{quote(name)} is listed twice")
        else:
            chosen.append(name)
    return tuple(chosen)

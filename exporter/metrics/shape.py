"""What the exposition leaves out or adds by the ``metrics`` config: groups, labels, GenAI names."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.config import MetricsConfig

#: The families of each optional group in ``metrics.disable`` (config.FAMILY_GROUPS, in
#: order). A family in two groups (the window cost) is off when either is. Health and the
#: five counters are in none: never off.
GROUPS: dict[str, tuple[str, ...]] = {
    "windows": ("uminfer_window_input_tokens", "uminfer_window_output_tokens",
                "uminfer_window_tokens", "uminfer_window_requests",
                "uminfer_window_image_generations", "uminfer_window_timestamp_seconds",
                "uminfer_window_cost"),
    "cost": ("uminfer_cost_total", "uminfer_window_cost", "uminfer_unpriced"),
    "key_health": ("uminfer_key_info", "uminfer_key_disabled",
                   "uminfer_key_expiry_timestamp_seconds", "uminfer_key_limit_amount",
                   "uminfer_key_used_amount", "uminfer_key_listing_last_success_timestamp_seconds",
                   "uminfer_key_listing_failures_total"),
    "failure_reasons": ("uminfer_target_failures_total",),
    "settlement": ("uminfer_settled_timestamp_seconds", "uminfer_settled_tokens_total",
                   "uminfer_catchup_remaining_seconds"),
    "audit": ("uminfer_revisions_total", "uminfer_late_tokens_after_settle_total",
              "uminfer_given_up_seconds_total", "uminfer_given_up_seconds_by_reason_total"),
}

#: How series that differ only in dropped labels become one: summed, except the gauges of time
#: and health, which take the value that holds for every merged series (the oldest time, up
#: only when all are up, the most catch-up left). Never one series' value picked for the rest.
LEAST = frozenset({"uminfer_up", "uminfer_last_success_timestamp_seconds",
                   "uminfer_settled_timestamp_seconds", "uminfer_window_timestamp_seconds",
                   "uminfer_key_expiry_timestamp_seconds"})
MOST = frozenset({"uminfer_catchup_remaining_seconds"})
#: With ``model`` dropped the GenAI series lose their model label too (the same label renamed).
_RENAMED = {"model": "gen_ai_request_model"}


@dataclass(frozen=True)
class Shape:
    """The exposition's shape: families off, labels dropped, and the GenAI names on or off."""

    off: frozenset[str] = frozenset()
    drop: frozenset[str] = frozenset()
    genai: bool = False
    provider: str = "ucloud"
    operation: str = "chat"

    @classmethod
    def of(cls, config: MetricsConfig) -> Shape:
        """The shape ``config`` asks for."""
        drop = {*config.drop_labels, *(_RENAMED[n] for n in config.drop_labels if n in _RENAMED)}
        return cls(off=frozenset(name for group in config.disable for name in GROUPS[group]),
                   drop=frozenset(drop), genai=config.semconv == "otel-genai",
                   provider=config.genai_provider_name, operation=config.genai_operation_name)

    def shows(self, family: str) -> bool:
        """Whether ``family`` is exported."""
        return family not in self.off


DEFAULT = Shape()

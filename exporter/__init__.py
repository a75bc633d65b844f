"""uminfer-exporter: exact Prometheus counters for UCloud-family LLM token usage."""

__version__ = "0.1.0"

"""The monitoring mixin: the alerting and recording rules and the Grafana dashboard from one
source with its inputs (selector, thresholds, runbook URL), rendered into every file that
ships them (``python -m mixin``). It imports nothing of the exporter."""

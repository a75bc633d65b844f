"""Write prometheusrule.yaml (Prometheus Operator) from the project's prometheus/rules.yml.

Run after changing the rules:  python3 deploy/kubernetes/render_prometheusrule.py
tests/test_deploy.py fails while the two disagree.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
RULES = HERE.parent.parent / "prometheus" / "rules.yml"
OUTPUT = HERE / "prometheusrule.yaml"
HEADER = (
    "# Generated from prometheus/rules.yml by render_prometheusrule.py; edit those, not this.\n"
    "# The alerts expect job=\"uminfer\": the Service's \"job\" label (ServiceMonitor jobLabel).\n"
)


def render(rules_text: str) -> str:
    """The PrometheusRule manifest carrying the rule file's groups unchanged."""
    groups: list[dict[str, Any]] = yaml.safe_load(rules_text)["groups"]
    manifest = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "uminfer-exporter",
                     "labels": {"app.kubernetes.io/name": "uminfer-exporter"}},
        "spec": {"groups": groups},
    }
    return HEADER + yaml.safe_dump(manifest, sort_keys=False, width=100)


def main() -> int:
    """Regenerate the manifest next to this script."""
    OUTPUT.write_text(render(RULES.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

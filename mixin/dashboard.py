"""The Grafana dashboard (built by grafana/dashboard.py from Grafana's own typed builders) with
the mixin's selector in every query and every variable's query."""

from __future__ import annotations

import json
from typing import Any

from grafana import dashboard as board
from mixin.config import MixinConfig
from mixin.promql import scoped


def build(config: MixinConfig) -> dict[str, Any]:
    """The dashboard's JSON model for ``config``."""
    model = board.build()
    # A collapsed row holds its panels inside it.
    panels = [*model["panels"], *(p for row in model["panels"] for p in row.get("panels", []))]
    for panel in panels:
        for target in panel.get("targets", []):
            target["expr"] = scoped(target["expr"], config.selector)
    for variable in model["templating"]["list"]:
        if variable["type"] == "query":
            variable["query"] = scoped(variable["query"], config.selector)
    return model


def render(config: MixinConfig) -> str:
    """The dashboard file exactly as committed."""
    return json.dumps(build(config), indent=2, sort_keys=True) + "\n"

"""python -m mixin: render the rules and the dashboard into every file that ships them.

With no options it rewrites the committed files (the defaults); ``--check`` only says which
differ; ``--out DIR`` writes them under DIR instead, e.g. for another selector."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mixin import dashboard
from mixin.config import DEFAULT_RUNBOOK_URL, DEFAULT_SELECTOR, MixinConfig, with_thresholds
from mixin.rules import prometheus_rule, render_rules

REPO = Path(__file__).resolve().parent.parent
CHART_FILES = Path("deploy/helm/uminfer-exporter/files")


def outputs(config: MixinConfig) -> dict[Path, str]:
    """Each generated file (relative to the repository) and its content."""
    rules = render_rules(config)
    board = dashboard.render(config)
    return {
        Path("prometheus/rules.yml"): rules,
        Path("grafana/dashboards/uminfer.json"): board,
        Path("deploy/kubernetes/prometheusrule.yaml"): prometheus_rule(rules),
        # The chart wraps these in its PrometheusRule and dashboard ConfigMap, with its job.
        CHART_FILES / "rules.yml": rules,
        CHART_FILES / "uminfer.json": board,
    }


def stale(config: MixinConfig, root: Path) -> list[Path]:
    """The files under ``root`` that differ from what ``config`` renders."""
    return [path for path, text in outputs(config).items()
            if not (root / path).is_file() or (root / path).read_text(encoding="utf-8") != text]


def main(argv: list[str] | None = None) -> int:
    """Write (or check) every output; 1 when --check finds a stale file or a flag is bad."""
    parser = argparse.ArgumentParser(prog="python -m mixin", description=__doc__)
    parser.add_argument("--selector", default=DEFAULT_SELECTOR,
                        help="PromQL matchers every query selects (default: %(default)s)")
    parser.add_argument("--runbook-url", default=DEFAULT_RUNBOOK_URL,
                        help="where docs/runbooks.md is published (default: %(default)s)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="an alert threshold (mixin/config.py names them)")
    parser.add_argument("--out", type=Path, default=REPO, help="default: the repository")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")
    args = parser.parse_args(argv)
    try:
        config = with_thresholds(MixinConfig(args.selector, args.runbook_url), args.set)
    except ValueError as error:
        print(f"python -m mixin: {error}", file=sys.stderr)
        return 1
    if args.check:
        for path in (found := stale(config, args.out)):
            print(f"{path} differs from what mixin/ renders: run python -m mixin",
                  file=sys.stderr)
        return 1 if found else 0
    for path, text in outputs(config).items():
        (args.out / path).parent.mkdir(parents=True, exist_ok=True)
        (args.out / path).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

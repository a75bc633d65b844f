"""``python -m bench [--quick] [--out PATH]``: run every benchmark and write BENCHMARKS.md."""

from __future__ import annotations

import argparse
import sys
import time

from bench import report, runs


def main(argv: list[str]) -> int:
    """Run the benchmarks and write the report."""
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the code runs")
    parser.add_argument("--out", default="BENCHMARKS.md", help="where to write the report")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    results = runs.run_all(runs.QUICK if args.quick else runs.Sizes(),
                           log=lambda text: print(f"[bench] {text}", file=sys.stderr, flush=True))
    command = "scripts/bench --quick" if args.quick else "scripts/bench"
    text = report.render(results, command, time.perf_counter() - began)
    with open(args.out, "w", encoding="utf-8") as out:
        out.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

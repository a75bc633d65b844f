"""``python -m exporter.simulator``: run the simulator standalone until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import re
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from exporter.simulator.buckets import MODES, BucketPolicy
from exporter.simulator.build import DEMO_PRIVATE_KEY, DEMO_PUBLIC_KEY, build_simulator
from exporter.simulator.traffic import TargetSpec
from exporter.simulator.usage import WallClock


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host or "127.0.0.1", int(port)


_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def _duration(text: str) -> float:
    """``90s``, ``1h30m`` or ``1d``: the simulator reads its own flags (no exporter code)."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise argparse.ArgumentTypeError(f"expected a duration like 90s, 1h30m or 1d, got {text!r}")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line; argparse exits with status 2 and a message on bad input."""
    parser = argparse.ArgumentParser(
        prog="python -m exporter.simulator", description=__doc__,
        epilog=f"Sign requests with the demo key pair (public {DEMO_PUBLIC_KEY!r}, private "
        f"{DEMO_PRIVATE_KEY!r}) unless --public-key/--private-key say otherwise; at start it "
        "prints an exporter config for its targets.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    # String defaults go through type=, so --help shows them as one would type them.
    parser.add_argument("--listen", type=_listen, default="127.0.0.1:9867", help="HOST:PORT")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the traffic")
    parser.add_argument("--keys", type=int, default=3, help="API keys in project org-demo")
    parser.add_argument("--models", type=int, default=2, help="models per key")
    parser.add_argument("--backfill", type=_duration, default="24h",
                        help="synthetic history before the start")
    parser.add_argument("--public-key", default=DEMO_PUBLIC_KEY, help="PublicKey to accept")
    parser.add_argument("--private-key", default=DEMO_PRIVATE_KEY,
                        help="private key the signatures must use")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to each call")
    parser.add_argument("--late-fraction", type=float, default=0.1,
                        help="share of usage that shows up late")
    parser.add_argument("--tick", type=float, default=5.0, help="seconds per traffic tick")
    parser.add_argument("--bucket", type=_duration, default="1m",
                        help="time bucket of the Usages rows, e.g. 1m, 1h, 1d")
    parser.add_argument("--bucket-utc-offset", type=_duration, default="0s",
                        help="buckets start at multiples of --bucket in this zone, e.g. 8h")
    parser.add_argument("--bucket-zone", default=None,
                        help="daily buckets at the midnights of this IANA zone (daylight saving "
                        "included), e.g. America/New_York; overrides --bucket")
    parser.add_argument("--windows", choices=MODES, default="exact",
                        help="which usage a window counts: exact timestamps, whole buckets "
                        "labelled inside it, or every bucket it touches (outward)")
    parser.add_argument("--no-usages", action="store_true",
                        help="answer without Usages rows (the field is optional)")
    return parser.parse_args(argv)


def config_snippet(url: str, public_key: str, targets: Sequence[TargetSpec]) -> str:
    """YAML for the exporter config that points at this simulator."""
    lines = [
        "api:",
        f"  endpoint: {url}",
        f"  public_key: {public_key}",
        "  private_key: ${UMINFER_PRIVATE_KEY}   # the --private-key value",
        "targets:",
    ]
    for t in targets:
        lines += [f"  - project: {t.project}", f"    key: {t.key}", f"    model: {t.model}"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until a termination signal arrives."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    host, port = args.listen
    try:
        buckets = BucketPolicy(int(args.bucket), int(args.bucket_utc_offset), args.windows,
                               rows=not args.no_usages, zone=args.bucket_zone)
        sim = build_simulator(
            args.seed, args.keys, args.models, WallClock(),
            public_key=args.public_key, private_key=args.private_key, backfill=args.backfill,
            tick=args.tick, late_fraction=args.late_fraction, latency=args.latency,
            host=host, port=port, buckets=buckets,
        )
    except ValueError as exc:
        print(f"simulator: {exc}", file=sys.stderr)
        return 1
    done = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with sim:
        targets = sim.traffic.targets if sim.traffic else ()
        print(f"simulator listening on {sim.url}", flush=True)
        print(config_snippet(sim.url, args.public_key, targets), flush=True)
        done.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())

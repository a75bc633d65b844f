"""Command line: flags, logging, signals, exit codes."""

from __future__ import annotations

import argparse
import logging
import os
import resource
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from enum import IntEnum
from types import FrameType

from prometheus_client import CollectorRegistry, disable_created_metrics

from exporter import __version__
from exporter.config import DEFAULT_LISTEN_ADDRESS, Config, ConfigError, StateConfig, load_config
from exporter.core.clock import SystemClock
from exporter.core.logs import FORMATS, LEVELS, configure
from exporter.core.statedir import missing_state_dir, prepare_state_dir
from exporter.polling.sharding import Shard, parse_shard
from exporter.service import Service
from exporter.web.config import check_web_config
from exporter.web.httpfront import Limits
from exporter.web.landing import Landing
from exporter.web.listen import parse_listen_address
from exporter.web.server import Endpoints, MetricsServer
from exporter.web.state import WebState, loading_both

log = logging.getLogger("exporter.cli")


class Exit(IntEnum):
    """Process exit codes."""

    OK = 0
    INVALID = 1  # invalid config or flags
    STARTUP = 2  # valid config, but the process could not start (port in use, …)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="uminfer-exporter",
        description="Prometheus exporter for LLM token usage on UCloud-family clouds.")
    p.add_argument("--config.file", dest="config_file", default="config.yaml", metavar="PATH",
                   help="YAML configuration file (default: %(default)s)")
    p.add_argument("--config.check", dest="config_check", action="store_true",
                   help="validate the configuration (and web config) and exit: 0 valid, 1 not")
    p.add_argument("--web.listen-address", dest="listen", default=DEFAULT_LISTEN_ADDRESS,
                   metavar="HOST:PORT", help="where /metrics is served (default: %(default)s)")
    p.add_argument("--web.config.file", dest="web_config", default=None, metavar="PATH",
                   help="exporter-toolkit web config: TLS and basic auth")
    p.add_argument("--web.max-connections", dest="max_connections", type=_positive,
                   default=Limits().max_connections, metavar="N",
                   help="most simultaneous HTTP connections; at the cap the one waiting longest "
                        "on its client is closed, or new ones wait (default: %(default)s)")
    p.add_argument("--state.path", dest="state_path", default=None, metavar="PATH",
                   help="state file; overrides state.path in the config")
    p.add_argument("--shard", type=_shard, default=Shard(0, 1), metavar="I/N",
                   help="poll only shard I of N (0-based) by a stable hash of each target, "
                        "so N replicas split the targets with no overlap (default: 0/1, all)")
    p.add_argument("--demo", action="store_true",
                   help="run against the built-in simulator: no credentials, no network")
    p.add_argument("--log.level", dest="log_level", choices=tuple(LEVELS), default="info")
    p.add_argument("--log.format", dest="log_format", choices=FORMATS, default="logfmt")
    p.add_argument("--version", action="version", version=f"uminfer-exporter {__version__}")
    # For tests only, hidden: periods of this many seconds instead of the provider's days.
    p.add_argument("--accounting.test-period", dest="test_period", type=_period, default=None,
                   help=argparse.SUPPRESS)
    return p


def _period(text: str) -> int:
    seconds = int(text.removesuffix("s")) if text.removesuffix("s").isdigit() else 0
    if seconds < 1 or 86400 % seconds:
        raise argparse.ArgumentTypeError(f"expected seconds that divide a day, got {text!r}")
    return seconds


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def _shard(text: str) -> Shard:
    try:
        return parse_shard(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


class _FlagError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _FlagError(message)


def parse_flags(argv: Sequence[str]) -> argparse.Namespace:
    """Parse flags; raise _FlagError with argparse's message instead of exiting."""
    parser = _parser()
    parser.__class__ = _Parser
    return parser.parse_args(argv)


def _with_flags(config: Config, args: argparse.Namespace) -> Config:
    """``config`` with what the flags override: the state path, the hidden test period."""
    if args.state_path is not None:
        config = replace(config, state=StateConfig(args.state_path, config.state.max_backfill))
    if args.test_period is not None:
        config = replace(config, poll=replace(config.poll, test_period=args.test_period))
    return config


def main(argv: Sequence[str] | None = None) -> int:
    """Run the exporter; return the process exit code."""
    try:
        args = parse_flags(sys.argv[1:] if argv is None else argv)
    except _FlagError as error:
        print(f"uminfer-exporter: {error}", file=sys.stderr)
        return Exit.INVALID
    configure(args.log_level, args.log_format)
    # The text format gains nothing from *_created samples but a doubled series count; like
    # logging, this is process-wide, so it is set here at the edge and nowhere else.
    disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped upstream
    if args.config_check:
        return check(args)
    if args.demo:
        from exporter.demo import run_demo  # noqa: PLC0415 (the simulator only when asked for)

        return run_demo(args, _serve)
    try:
        config = _with_flags(load_config(args.config_file, os.environ), args)
    except ConfigError as error:
        _print_problems(error)
        return Exit.INVALID

    def reload() -> Config:
        return _with_flags(load_config(args.config_file, os.environ), args)

    return _serve(args, config, reload)


def check(args: argparse.Namespace) -> int:
    """``--config.check``: every problem and warning on stderr, one line each; the exit code."""
    problems: list[str] = []
    warnings: list[str] = []  # printed, not logged: the check's output is these lines
    try:
        config = _with_flags(load_config(args.config_file, os.environ, warnings.append), args)
    except ConfigError as error:
        problems += error.problems
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr)
    if args.web_config:
        problems += check_web_config(args.web_config)
    try:
        parse_listen_address(args.listen)
    except ValueError as error:
        problems.append(str(error))
    if problems:
        _print_problems(ConfigError(problems))
        return Exit.INVALID
    warning = config.state.path and missing_state_dir(config.state.path)
    if warning:
        print(warning, file=sys.stderr)
    print(f"{args.config_file}: valid ({len(config.targets)} targets)")
    return Exit.OK


def _print_problems(error: ConfigError) -> None:
    for problem in error.problems:
        print(problem, file=sys.stderr)


def _serve(args: argparse.Namespace, config: Config, reload: Callable[[], Config]) -> int:
    """Start the server and the poll loop; block until SIGTERM/SIGINT."""
    try:
        web = WebState(args.web_config)
        host, port = parse_listen_address(args.listen)
    except (ConfigError, ValueError) as error:
        _print_problems(error if isinstance(error, ConfigError) else ConfigError([str(error)]))
        return Exit.INVALID
    unwritable = config.state.path and prepare_state_dir(config.state.path)
    if unwritable:
        print(f"uminfer-exporter: {unwritable}", file=sys.stderr)
        return Exit.STARTUP
    shard: Shard = args.shard
    if shard.count > 1:
        log.info("shard %d/%d: polling %d of %d configured targets", shard.index, shard.count,
                 len(shard.select(config.targets)), len(config.targets))
    registry = CollectorRegistry()
    load = loading_both(reload, web)
    service = Service(shard.apply(config), SystemClock(), registry, lambda: shard.apply(load()),
                      shard=shard, on_reload=web.commit)
    landing = Landing(service.cache, lambda: service.status, registry, lambda: service.config)
    endpoints = Endpoints(cache=service.cache, registry=registry, ready=service.ready,
                          reload=service.reload, web=web, healthy=service.healthy,
                          ledgers=service.ledger_document, status=landing.now)
    limits = Limits(max_connections=args.max_connections)
    _raise_file_limit(limits.max_connections)
    try:
        server = MetricsServer(host, port, endpoints, limits)
    except OSError as error:
        print(f"uminfer-exporter: cannot listen on {args.listen}: {error.strerror}",
              file=sys.stderr)
        return Exit.STARTUP
    server.start()
    log.info("listening on %s:%d (version %s)", host, server.port, __version__)
    _install_signals(service)
    poller = threading.Thread(target=service.run, name="poll-loop", daemon=True)
    poller.start()
    while not service.stopping.wait(0.5):
        pass
    saved = service.stop()
    server.close()
    path = service.config.state.path
    if path and saved:
        log.info("stopped; state written to %s", path)
    else:
        log.info("stopped")
    return Exit.OK


def _raise_file_limit(connections: int) -> None:
    """Let the process hold ``connections`` sockets besides its own files, as Go does."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + 256  # state, config, API connections, the listener, headroom
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        if raised < wanted:
            log.warning("open files limited to %d (ulimit -n); --web.max-connections=%d "
                        "needs about %d", raised, connections, wanted)


def _install_signals(service: Service) -> None:
    def on_stop(signum: int, _frame: FrameType | None) -> None:
        if not service.stopping.is_set():  # e.g. timeout(1) signals the child and its group
            log.info("received %s, stopping", signal.Signals(signum).name)
        service.stopping.set()

    def on_hup(_signum: int, _frame: FrameType | None) -> None:
        threading.Thread(target=service.reload, name="reload", daemon=True).start()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hup)

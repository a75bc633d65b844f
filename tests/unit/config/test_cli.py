"""The command line in one process: flags and their exact errors, ``--config.check``, exit codes,
and a real start and stop (no child process, so a change to exporter.cli shows here)."""

from __future__ import annotations

import logging
import os
import resource
import signal
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter import __version__, cli
from exporter.config import Config, StateConfig
from exporter.core import logs
from exporter.polling.sharding import Shard

CONFIG = "api: {public_key: p, private_key: q, endpoint: 'http://127.0.0.1:1/'}\n" \
         "targets: [{key: k, model: m}, {key: k2, model: m}]\n"


@pytest.fixture(autouse=True)
def _restore_process_state() -> Iterator[None]:
    """main() configures the ``exporter`` logger and _serve() installs signal handlers: both
    are process-wide, so each test puts them back."""
    logger = logging.getLogger("exporter")
    handlers, level, propagate = logger.handlers[:], logger.level, logger.propagate
    signals = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    yield
    logger.handlers[:], logger.propagate = handlers, propagate
    logger.setLevel(level)  # setLevel, not .level: it clears the loggers' cached levels
    for s, handler in signals.items():
        signal.signal(s, handler)
WEB_PROBLEM = ("colour: unknown key (expected one of: tls_server_config, http_server_config, "
               "basic_auth_users)")


def config_file(tmp_path: Path, text: str = CONFIG) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- flags ---


def test_the_defaults_are_the_documented_ones() -> None:
    args = cli.parse_flags([])
    assert (args.config_file, args.config_check, args.listen, args.web_config,
            args.max_connections, args.state_path, args.shard, args.demo, args.log_level,
            args.log_format, args.test_period) == (
        "config.yaml", False, ":9866", None, 512, None, Shard(0, 1), False, "info", "logfmt",
        None)


def test_the_help_names_each_default_as_the_readme_does() -> None:
    text = " ".join(cli._parser().format_help().split())
    assert text.startswith("usage: uminfer-exporter ")
    assert " Prometheus exporter for LLM token usage on UCloud-family clouds. options: " in text
    for shown in ("--config.file PATH YAML configuration file (default: config.yaml)",
                  "--config.check validate the configuration (and web config) and exit: 0 valid,"
                  " 1 not",
                  "--web.listen-address HOST:PORT where /metrics is served (default: :9866)",
                  "--web.config.file PATH exporter-toolkit web config: TLS and basic auth",
                  "--web.max-connections N most simultaneous HTTP connections; at the cap the "
                  "one waiting longest on its client is closed, or new ones wait (default: 512)",
                  "--state.path PATH state file; overrides state.path in the config",
                  "--shard I/N poll only shard I of N (0-based) by a stable hash of each target,"
                  " so N replicas split the targets with no overlap (default: 0/1, all)",
                  "--demo run against the built-in simulator: no credentials, no network",
                  "Prometheus exporter for LLM token usage on UCloud-family clouds."):
        assert shown in text
    assert "test-period" not in text  # hidden: for tests only


def test_flags_are_read_as_given() -> None:
    args = cli.parse_flags(["--config.file=c.yaml", "--config.check", "--web.listen-address=:1",
                            "--web.config.file=w.yaml", "--web.max-connections=1",
                            "--state.path=s.json", "--shard=1/3", "--demo", "--log.level=debug",
                            "--log.format=json", "--accounting.test-period=60s"])
    assert (args.config_file, args.config_check, args.listen, args.web_config,
            args.max_connections, args.state_path, args.shard, args.demo, args.log_level,
            args.log_format, args.test_period) == (
        "c.yaml", True, ":1", "w.yaml", 1, "s.json", Shard(1, 3), True, "debug", "json", 60)


@pytest.mark.parametrize(("text", "seconds"), [("1", 1), ("60s", 60), ("86400", 86400)],
                         ids=["1", "60s", "86400"])
def test_a_test_period_divides_a_day(text: str, seconds: int) -> None:
    assert cli.parse_flags([f"--accounting.test-period={text}"]).test_period == seconds


@pytest.mark.parametrize("flag", [
    "--accounting.test-period=0", "--accounting.test-period=7", "--accounting.test-period=1m",
    "--accounting.test-period=172800", "--accounting.test-period=-60"],
    ids=["0", "7", "1m", "two-days", "negative"])
def test_a_test_period_that_does_not_divide_a_day_is_refused(
        flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    text = flag.partition("=")[2]
    assert cli.main([flag]) == 1
    assert capsys.readouterr().err == (
        "uminfer-exporter: argument --accounting.test-period: expected seconds that divide a "
        f"day, got {text!r}\n")


@pytest.mark.parametrize("text", ["0", "-1", "x", ""], ids=["0", "negative", "x", "empty"])
def test_max_connections_is_a_whole_number_of_at_least_one(
        text: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([f"--web.max-connections={text}"]) == 1
    assert capsys.readouterr().err == (
        "uminfer-exporter: argument --web.max-connections: expected a whole number of at least"
        f" 1, got {text!r}\n")


def test_a_bad_shard_says_what_it_expects(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--shard=2"]) == 1
    assert capsys.readouterr().err == (
        "uminfer-exporter: argument --shard: expected I/N with whole numbers, e.g. 0/3, got "
        "'2'\n")


def test_flags_override_the_state_path_and_the_period_only() -> None:
    config = Config(state=StateConfig("from-config.json", 7200))
    assert cli._with_flags(config, cli.parse_flags([])) == config
    changed = cli._with_flags(config, cli.parse_flags(["--state.path=flag.json",
                                                       "--accounting.test-period=30"]))
    assert changed.state == StateConfig("flag.json", 7200)
    assert changed.poll.test_period == 30
    assert changed.poll.interval == config.poll.interval


# --- --config.check ---


def test_check_says_valid_with_the_number_of_targets(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config_file(tmp_path)
    assert cli.main([f"--config.file={path}", "--config.check"]) == 0
    assert capsys.readouterr() == (f"{path}: valid (2 targets)\n", "")


def test_check_warns_of_a_state_directory_that_is_not_there_yet(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config_file(tmp_path)
    state = tmp_path / "later" / "state.json"
    assert cli.main([f"--config.file={path}", "--config.check", f"--state.path={state}"]) == 0
    out, err = capsys.readouterr()
    assert out == f"{path}: valid (2 targets)\n"
    assert err == (f"warning: state file {state}: directory {state.parent} does not exist; it is"
                   f" created at start when {tmp_path} is writable, else the exporter refuses to"
                   " start\n")


def test_check_lists_every_problem_of_every_file_and_fails(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config_file(tmp_path, "api: {public_key: p}\ntargets: [{key: k, model: m}]\n"
                                 "poll: {interval: 1m, window_interval: 10m}\n")
    web = tmp_path / "web.yaml"
    web.write_text("colour: red\n")
    code = cli.main([f"--config.file={path}", "--config.check", f"--web.config.file={web}",
                     "--web.listen-address=nowhere"])
    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    lines = err.splitlines()
    assert lines[0] == (f"warning: {path}:3: poll.window_interval: deprecated; write "
                        "advanced.window_interval instead (removed in the release after next)")
    assert lines[1] == f"{path}:1: api.private_key: required (or set api.private_key_file)"
    assert lines[2] == WEB_PROBLEM
    assert lines[3] == ("--web.listen-address: expected HOST:PORT, got 'nowhere' (e.g. :9866 "
                        "for every interface, 127.0.0.1:9866 for loopback)")
    assert len(lines) == 4


def test_check_of_a_valid_config_with_a_bad_listen_address_fails(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config_file(tmp_path)
    assert cli.main([f"--config.file={path}", "--config.check",
                     "--web.listen-address=:99999"]) == 1
    out, err = capsys.readouterr()
    assert (out, err) == ("", "--web.listen-address: expected HOST:PORT, got ':99999' (e.g. "
                              ":9866 for every interface, 127.0.0.1:9866 for loopback)\n")


# --- starting ---


def test_an_invalid_config_does_not_start(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = config_file(tmp_path, "targets: [{key: k, model: m}]\n")
    assert cli.main([f"--config.file={path}"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "api.public_key: required (or set api.public_key_file)",
        "api.private_key: required (or set api.private_key_file)"]


def test_a_missing_config_file_does_not_start(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "none.yaml"
    assert cli.main([f"--config.file={path}"]) == 1
    assert capsys.readouterr().err == f"{path}: cannot read: No such file or directory\n"


def test_a_bad_web_config_or_listen_address_does_not_start(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config_file(tmp_path)
    web = tmp_path / "web.yaml"
    web.write_text("colour: red\n")
    assert cli.main([f"--config.file={path}", f"--web.config.file={web}"]) == 1
    assert capsys.readouterr().err == WEB_PROBLEM + "\n"
    assert cli.main([f"--config.file={path}", "--web.listen-address=9866"]) == 1
    assert capsys.readouterr().err == (
        "--web.listen-address: expected HOST:PORT, got '9866' (e.g. :9866 for every interface,"
        " 127.0.0.1:9866 for loopback)\n")


def test_a_state_file_that_cannot_be_written_is_a_startup_failure(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config_file(tmp_path)
    state = tmp_path / "a-directory"
    state.mkdir()
    assert cli.main([f"--config.file={path}", f"--state.path={state}"]) == 2
    assert capsys.readouterr().err == (
        f"uminfer-exporter: state file {state}: is a directory; name a file in it, e.g. "
        "state.json\n")


def test_a_taken_port_is_a_startup_failure(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = config_file(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        assert cli.main([f"--config.file={path}", f"--web.listen-address={address}"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"uminfer-exporter: cannot listen on {address}: Address already in use")


def stop_when_serving(port: int, also: list[str]) -> threading.Thread:
    """SIGTERM to this process once /-/healthy answers (and ``also`` fetched first)."""

    def run() -> None:
        deadline = time.monotonic() + 15
        try:
            while time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/healthy", timeout=5):
                        pass
                    break
                except OSError:
                    time.sleep(0.1)
            for path in also:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}",
                                            timeout=10) as answer:
                    fetched.append(answer.read().decode())
        finally:  # whatever failed, main() must return: the test then says what is missing
            os.kill(os.getpid(), signal.SIGTERM)

    fetched: list[str] = []
    thread = threading.Thread(target=run, daemon=True)
    thread.fetched = fetched  # type: ignore[attr-defined]
    thread.start()
    return thread


def log_to_captured_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    """The log as main() sets it up, to the sys.stderr capsys reads (logs.configure's default
    stream is the one the process started with)."""
    monkeypatch.setattr(cli, "configure", lambda level, fmt: logs.configure(level, fmt,
                                                                             sys.stderr))


def test_it_serves_until_sigterm_and_writes_its_state(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    log_to_captured_stderr(monkeypatch)
    path = config_file(tmp_path)
    state = tmp_path / "state" / "state.json"
    port = free_port()
    stopper = stop_when_serving(port, ["/metrics"])
    code = cli.main([f"--config.file={path}", f"--web.listen-address=127.0.0.1:{port}",
                     f"--state.path={state}", "--shard=1/2", "--log.format=json",
                     "--log.level=info", "--web.max-connections=7"])
    stopper.join(10)
    assert code == 0
    assert "uminfer_exporter_build_info" in stopper.fetched[0]  # type: ignore[attr-defined]
    err = capsys.readouterr().err
    assert '"msg": "shard 1/2: polling 2 of 2 configured targets"' in err
    assert f'"msg": "listening on 127.0.0.1:{port} (version ' in err
    assert '"msg": "received SIGTERM, stopping"' in err
    assert f'"msg": "stopped; state written to {state}"' in err
    assert state.is_file()


def test_without_a_state_file_it_just_stops(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    log_to_captured_stderr(monkeypatch)
    path = config_file(tmp_path)
    port = free_port()
    stopper = stop_when_serving(port, [])
    assert cli.main([f"--config.file={path}", f"--web.listen-address=127.0.0.1:{port}"]) == 0
    stopper.join(10)
    err = capsys.readouterr().err
    assert err.endswith(" level=info source=exporter.cli msg=stopped\n")
    assert "shard" not in err and "state written" not in err


# --- the open files limit ---


@pytest.mark.parametrize(("soft", "hard", "connections", "raised", "warned"), [
    (1024, 4096, 512, None, False),  # 512 + 256 fit
    (700, 4096, 512, 768, False),
    (767, 4096, 512, 768, False),
    (768, 4096, 512, None, False),  # exactly enough
    (700, 720, 512, 720, True),  # the hard limit caps it
    (700, resource.RLIM_INFINITY, 512, 768, False),
    (resource.RLIM_INFINITY, resource.RLIM_INFINITY, 512, None, False),
], ids=["enough", "raised", "one-short", "exactly", "hard-cap", "no-hard-cap", "unlimited"])
def test_the_open_files_limit_is_raised_to_what_the_connections_need(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, soft: int, hard: int,
        connections: int, raised: int | None, warned: bool) -> None:
    calls: list[tuple[int, tuple[int, int]]] = []
    monkeypatch.setattr(resource, "getrlimit", lambda which: (
        (soft, hard) if which == resource.RLIMIT_NOFILE else (0, 0)))
    monkeypatch.setattr(resource, "setrlimit", lambda which, limits: calls.append(
        (which, limits)))
    with caplog.at_level(logging.WARNING, logger="exporter.cli"):
        cli._raise_file_limit(connections)
    assert calls == ([] if raised is None else [(resource.RLIMIT_NOFILE, (raised, hard))])
    assert [r.getMessage() for r in caplog.records] == (
        [f"open files limited to {raised} (ulimit -n); --web.max-connections={connections} "
         "needs about 768"] if warned else [])


def test_sighup_reloads_and_sigint_stops(monkeypatch: pytest.MonkeyPatch,
                                         caplog: pytest.LogCaptureFixture) -> None:
    class FakeService:
        def __init__(self) -> None:
            self.stopping = threading.Event()
            self.reloaded = threading.Event()

        def reload(self) -> None:
            self.reloaded.set()

    service = FakeService()
    cli._install_signals(service)  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO, logger="exporter.cli"):
        os.kill(os.getpid(), signal.SIGHUP)
        assert service.reloaded.wait(10)
        assert not service.stopping.is_set()
        os.kill(os.getpid(), signal.SIGINT)
        assert service.stopping.wait(10)
        os.kill(os.getpid(), signal.SIGTERM)  # already stopping: said once
    assert [r.getMessage() for r in caplog.records] == ["received SIGINT, stopping"]



def test_the_exit_codes_are_the_documented_ones() -> None:
    assert [int(code) for code in (cli.Exit.OK, cli.Exit.INVALID, cli.Exit.STARTUP)] == [0, 1, 2]


def test_version_prints_the_programs_name_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.parse_flags(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out == f"uminfer-exporter {__version__}\n"


@pytest.mark.parametrize(("flag", "choices"), [
    ("--log.level", "'debug', 'info', 'warn', 'error'"), ("--log.format", "'logfmt', 'json'"),
], ids=["level", "format"])
def test_the_log_flags_name_their_choices(flag: str, choices: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([f"{flag}=loud"]) == 1
    assert capsys.readouterr().err == (
        f"uminfer-exporter: argument {flag}: invalid choice: 'loud' (choose from {choices})\n")

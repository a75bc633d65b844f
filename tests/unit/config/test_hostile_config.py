"""Hostile config and web config files: every problem is one short line with its path.

Run through ``--config.check`` in a child process, as an operator would: no traceback, exit 1,
bounded time and memory, and never a secret in the output.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.config import ConfigError, load_config, parse_config
from exporter.config.yamlstrict import StrictLoader, load_strict

PRIVATE = "hostile-PRIVATE-0123456789abcdef0123456789ab"  # 44 characters
ENV = {"HOSTILE_PRIVATE_KEY": PRIVATE}
BASE = "api:\n  public_key: pub\n  private_key: ${HOSTILE_PRIVATE_KEY}\n"
TARGET = "targets:\n  - {key: k, model: m}\n"


def _alias_bomb() -> str:
    """The ~570-byte "billion laughs" of issue #17: nine levels of nine aliases, at
    api.timeout (the anchors sit in a target's labels, defined before use)."""
    lines = ['x0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        lines.append(f"x{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]")
    anchors = "\n".join(f"    {line}" for line in lines)
    return (f"targets:\n  - key: k\n    model: m\n    labels:\n{anchors}\n"
            "api:\n  public_key: pub\n  private_key: p-1234567890\n  timeout: *a8\n")


CONFIGS: dict[str, tuple[str, str]] = {
    # name: (config text, the one line expected, with {path} for the file)
    "invalid_date": (BASE + "targets:\n  - {key: k, model: m, labels: {since: 2024-02-30}}\n",
                     "{path}:5:40: invalid YAML: not a valid timestamp (day is out of range "
                     "for month)"),
    "5000_digit_int": (BASE + "  max_concurrency: " + "9" * 5000 + "\n" + TARGET,
                       "{path}:4:20: invalid YAML: not a valid int (Exceeds the limit (4300 "
                       "digits) for integer string conversion)"),
    "nested_20000": ("x: " + "[" * 20_000 + "]" * 20_000 + "\n" + BASE + TARGET,
                     "{path}:1:67: invalid YAML: nested more than 64 levels deep"),
    "alias_bomb": (_alias_bomb(), "{path}:10:9: invalid YAML: aliases expand to more than "
                                  "300000 values"),
    "surrogate_model": (BASE + 'targets:\n  - {key: k, model: "m\\ud800"}\n',
                        "{path}:5: targets[0].model: holds a lone surrogate (like \\ud800), "
                        "which is not text"),
    "secret_in_endpoint": (BASE + "  endpoint: ftp://api.example.com/v1/usage/?k=${HOSTILE_"
                           "PRIVATE_KEY}\n" + TARGET,
                           '{path}:4: api.endpoint: expected an http:// or https:// URL, got '
                           '"ftp://api.example.com/v1/usage/?k=<secret>"'),
    "huge_list_value": (BASE + TARGET + "poll: {interval: [" + ",".join(["1h"] * 50_000)
                        + "]}\n",
                        "{path}:6: poll.interval: expected a duration like 60s, got "
                        "['1h', '1h', '1h', '1h', '1h', '1h', '1h', '1h', '1h', '1... (list)"),
}


def _check(tmp_path: Path, text: str, *extra: str) -> tuple[int, str, float, int]:
    """Exit code, stderr, CPU seconds and peak RSS (KiB) of --config.check on ``text``.

    CPU time, not wall time: the machine may be loaded, and a check that hangs (a FIFO with
    no writer) fails on the 60-second timeout instead."""
    path = tmp_path / "config.yaml"
    path.write_text(text)
    done = subprocess.run(
        [sys.executable, "-c", _MEASURED, f"--config.file={path}", "--config.check", *extra],
        capture_output=True, text=True, timeout=60, env={**os.environ, **ENV}, check=False)
    peak, cpu = done.stdout.split()[-2:] if done.stdout.strip() else ("0", "inf")
    return done.returncode, done.stderr, float(cpu), int(peak)


# The child reports its own peak RSS after main() returns: VmHWM, the high-water mark of its
# own address space. (ru_maxrss is no good here: Linux carries it across exec, so a child forked
# from a large pytest process would report the parent's size.)
_MEASURED = """
import sys
from exporter.cli import main
code = main(sys.argv[1:])
import os
with open("/proc/self/status") as status:
    peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
times = os.times()
print(peak, times.user + times.system)
sys.exit(code)
"""


@pytest.mark.e2e
@pytest.mark.parametrize("name", CONFIGS)
def test_hostile_config_is_one_clean_line(tmp_path: Path, name: str) -> None:
    text, expected = CONFIGS[name]
    code, stderr, seconds, peak_kib = _check(tmp_path, text)
    path = tmp_path / "config.yaml"
    assert (code, stderr.splitlines()) == (1, [expected.format(path=path)])
    assert "Traceback" not in stderr
    assert PRIVATE[:8] not in stderr
    assert seconds < 10
    assert peak_kib < 200 * 1024, f"{peak_kib} KiB"


def test_config_larger_than_its_cap_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    with path.open("wb") as f:
        f.truncate(5 << 20)
    with pytest.raises(ConfigError) as caught:
        load_config(str(path), ENV)
    assert caught.value.problems == [f"{path}: cannot read: larger than {4 << 20} bytes"]


@pytest.mark.parametrize(("special", "kind"), [("fifo", "a FIFO"),
                                               ("/dev/zero", "a character device")])
@pytest.mark.e2e
def test_key_file_must_be_a_regular_file(tmp_path: Path, special: str, kind: str) -> None:
    target = special
    if special == "fifo":
        target = str(tmp_path / "key.fifo")
        os.mkfifo(target)
    text = f"api:\n  public_key: pub\n  private_key_file: {target}\n" + TARGET
    code, stderr, seconds, _ = _check(tmp_path, text)
    assert (code, stderr.splitlines()) == (
        1, [f"{tmp_path / 'config.yaml'}:3: api.private_key_file: cannot read {target}: "
            f"not a regular file ({kind})"])
    assert seconds < 10


@pytest.mark.e2e
def test_cert_file_fifo_in_web_config_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "cert.fifo"
    os.mkfifo(fifo)
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {fifo}\n  key_file: {fifo}\n")
    code, stderr, seconds, _ = _check(tmp_path, BASE + TARGET, f"--web.config.file={web}")
    assert code == 1
    assert f"tls_server_config.cert_file: file not readable: {fifo} (not a regular file " \
           "(a FIFO))" in stderr.splitlines()
    assert seconds < 10


WEB_CONFIGS = {
    "alias_bomb": ("x0: &a0 [" + ",".join(['"lol"'] * 9) + "]\n"
                   + "".join(f"x{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]\n"
                             for i in range(1, 9))
                   + "http_server_config: {http2: *a8}\n",
                   "aliases expand to more than 300000 values"),
    "nested_20000": ("basic_auth_users: " + "[" * 20_000 + "]" * 20_000 + "\n",
                     "nested more than 64 levels deep"),
    "invalid_date": ("http_server_config: {http2: 2024-02-30}\n", "not a valid timestamp"),
    "big_list_value": ("http_server_config: {http2: [" + ",".join(["1"] * 100_000) + "]}\n",
                       "expected true or false, got [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, ...]"),
}


@pytest.mark.e2e
@pytest.mark.parametrize("name", WEB_CONFIGS)
def test_hostile_web_config_is_one_short_line(tmp_path: Path, name: str) -> None:
    text, expected = WEB_CONFIGS[name]
    web = tmp_path / "web.yml"
    web.write_text(text)
    code, stderr, seconds, peak_kib = _check(tmp_path, BASE + TARGET, f"--web.config.file={web}")
    assert code == 1
    assert len(stderr.splitlines()) == 1, stderr[:2000]
    assert expected in stderr
    assert len(stderr) < 300
    assert seconds < 10
    assert peak_kib < 200 * 1024


class _Tiny(StrictLoader):
    """The real loader with small limits, so each limit is tested in milliseconds."""

    max_depth, max_nodes, max_expanded = 3, 20, 30


@pytest.mark.parametrize(("text", "problem"), [
    ("[[[[1]]]]", "nested more than 3 levels deep"),
    ("[" + ",".join(["1"] * 20) + "]", "more than 20 values"),
    ("a: &a [1, 2, 3, 4, 5]\nb: [*a, *a, *a, *a, *a, *a]\n", "aliases expand to more than 30"),
    ("a: &a [1, *a]\n", None),  # recursive, but small: nothing expands it
], ids=["depth", "values", "aliases", "recursive"])  # plain ids: mutmut passes them back
def test_each_yaml_limit(text: str, problem: str | None) -> None:
    if problem is None:
        yaml.load(text, Loader=_Tiny)
        return
    with pytest.raises(yaml.YAMLError, match=problem):
        yaml.load(text, Loader=_Tiny)


# YAML's punctuation and enough digits for dates, times and numbers, plus the values that
# once escaped as foreign errors: impossible dates, huge integers, deep nesting.
_punctuation = st.text(alphabet="[]{}:,&*!?|>%@`#'\"\\ \t\nabeTxZ0123456789.-+_", max_size=60)
_dates = st.builds("{:04d}-{:02d}-{:02d}".format, st.integers(1, 9999), st.integers(1, 19),
                   st.integers(1, 39))
_huge = st.integers(4000, 5000).map(lambda n: "9" * n)
_deep = st.integers(1, 200).map(lambda n: "[" * n + "]" * n)
yaml_texts = _punctuation | st.one_of(_dates, _huge, _deep, _punctuation).map(
    lambda value: f"api: {{timeout: {value}}}\n")


@settings(max_examples=300, deadline=None)
@given(yaml_texts)
def test_any_text_loads_or_is_a_yaml_error(text: str) -> None:
    with contextlib.suppress(yaml.YAMLError):
        load_strict(text)


@settings(max_examples=200, deadline=None)
@given(yaml_texts)
def test_any_config_text_is_a_config_or_config_errors(text: str) -> None:
    try:
        data = load_strict(text)
    except yaml.YAMLError:
        return
    with contextlib.suppress(ConfigError):
        parse_config(data, ENV, "/")

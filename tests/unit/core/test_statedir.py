"""The state file's directory at start: made when it can be, tried with a write, or one line that
says why not and what to do (the refused start itself: tests/e2e/test_state_dir.py)."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest

from exporter.core.statedir import missing_state_dir, prepare_state_dir

TODO = (f"create it, writable by this user (uid {os.geteuid()}), or set state.path "
        "(--state.path) elsewhere")


def test_a_writable_directory_is_fine_and_left_as_it_is(tmp_path: Path) -> None:
    assert prepare_state_dir(str(tmp_path / "state.json")) is None
    assert list(tmp_path.iterdir()) == []  # the write test leaves nothing behind


def test_a_missing_directory_whose_parent_exists_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "data" / "state.json"
    old = os.umask(0o022)
    try:
        assert prepare_state_dir(str(path)) is None
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o750
    assert not path.exists()


def test_a_relative_path_is_found_from_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert prepare_state_dir("data/state.json") is None
    assert (tmp_path / "data").is_dir()


def test_a_directory_named_as_the_state_file_is_refused(tmp_path: Path) -> None:
    assert prepare_state_dir(str(tmp_path)) == (
        f"state file {tmp_path}: is a directory; name a file in it, e.g. state.json")


def test_a_directory_two_levels_missing_is_not_made(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "state.json"
    assert prepare_state_dir(str(path)) == (
        f"state file {path}: directory {tmp_path / 'a' / 'b'} does not exist, nor its parent; "
        + TODO)
    assert not (tmp_path / "a").exists()


def test_a_directory_that_cannot_be_made_says_why(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("a file where the directory should be")
    path = tmp_path / "data" / "state.json"
    assert prepare_state_dir(str(path)) == (
        f"state file {path}: cannot create directory {tmp_path / 'data'} (File exists); " + TODO)


def test_a_directory_that_cannot_be_written_says_why() -> None:
    # Nobody, root included, creates files in /proc.
    try:
        with tempfile.TemporaryFile(dir="/proc"):
            pytest.fail("a file was created in /proc")
    except OSError as denied:
        why = denied.strerror
    assert why
    assert prepare_state_dir("/proc/state.json") == (
        f"state file /proc/state.json: cannot write in /proc ({why}); " + TODO)


def test_config_check_warns_of_a_missing_directory_only(tmp_path: Path) -> None:
    assert missing_state_dir(str(tmp_path / "state.json")) is None
    path = tmp_path / "data" / "state.json"
    assert missing_state_dir(str(path)) == (
        f"warning: state file {path}: directory {tmp_path / 'data'} does not exist; it is "
        f"created at start when {tmp_path} is writable, else the exporter refuses to start")

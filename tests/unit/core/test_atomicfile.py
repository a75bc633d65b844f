"""Atomic JSON files: the new document or the old one, never a torn one, and durable once
written (the file and the rename both reach the disk)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from exporter.core.atomicfile import write_json


def test_the_document_is_written_compact_and_replaces_the_old_one(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("old")
    write_json(str(path), {"a": [1, 2], "b": "x"})
    assert path.read_text(encoding="utf-8") == '{"a":[1,2],"b":"x"}'
    assert os.listdir(tmp_path) == ["state.json"]  # no temp file left beside it


def test_a_relative_path_is_written_in_its_own_directory(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    write_json("sub/state.json", {"n": 1})
    assert json.loads((tmp_path / "sub" / "state.json").read_text()) == {"n": 1}
    assert os.listdir(tmp_path / "sub") == ["state.json"]


def test_the_temp_file_sits_beside_the_target_so_the_rename_is_atomic(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    renamed: list[tuple[str, str]] = []
    real_replace = os.replace

    def replace(src: str, dst: str) -> None:
        renamed.append((src, dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    path = tmp_path / "state.json"
    write_json(str(path), {})
    (src, dst), = renamed
    assert dst == str(path)
    assert os.path.dirname(src) == str(tmp_path)
    assert os.path.basename(src).startswith("state.json.tmp-")


def test_the_file_and_then_its_directory_are_synced(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        mode = os.fstat(fd).st_mode
        synced.append("dir" if stat.S_ISDIR(mode) else "file")
        if synced[-1] == "file":  # the data is complete when it is synced
            assert os.lseek(fd, 0, os.SEEK_CUR) == len('{"k":1}')
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    write_json(str(tmp_path / "state.json"), {"k": 1})
    assert synced == ["file", "dir"]


def test_a_directory_that_cannot_be_synced_is_not_an_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_fsync = os.fsync
    closed: list[int] = []
    real_close = os.close

    def fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(22, "Invalid argument")
        real_fsync(fd)

    def close(fd: int) -> None:
        closed.append(fd)
        real_close(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "close", close)
    write_json(str(tmp_path / "state.json"), {"k": 1})
    assert json.loads((tmp_path / "state.json").read_text()) == {"k": 1}
    assert closed, "the directory's descriptor is closed even when its fsync fails"


def test_a_directory_that_cannot_be_opened_is_not_an_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open

    def open_(path: str, flags: int, *rest: int) -> int:
        if path == str(tmp_path):
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *rest)

    monkeypatch.setattr(os, "open", open_)
    write_json(str(tmp_path / "state.json"), {"k": 2})
    assert json.loads((tmp_path / "state.json").read_text()) == {"k": 2}


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text('{"old":true}')
    with pytest.raises(TypeError):
        write_json(str(path), {"bad": object()})
    assert path.read_text() == '{"old":true}'
    assert os.listdir(tmp_path) == ["state.json"]


def test_a_failed_rename_leaves_no_temp_file_and_says_why(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="No space left"):
        write_json(str(tmp_path / "state.json"), {"k": 1})
    assert os.listdir(tmp_path) == []


def test_a_temp_file_that_cannot_be_removed_does_not_hide_the_first_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    def unlink(path: str) -> None:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "unlink", unlink)
    with pytest.raises(OSError, match="No space left"):
        write_json(str(tmp_path / "state.json"), {"k": 1})

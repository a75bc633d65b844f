"""Small files an operator names: regular files only, read whole up to a cap, refused in words
(FIFOs and devices at large: test_hostile_parsers.py)."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

import pytest

from exporter.core.smallfile import FileRefusedError, _kind, check_regular, read_capped

CHUNK = 1 << 16  # what one read takes at most


def refusal(path: str | Path, cap: int = 100) -> FileRefusedError:
    with pytest.raises(FileRefusedError) as refused:
        read_capped(path, cap)
    return refused.value


def test_a_file_of_several_chunks_is_read_whole(tmp_path: Path) -> None:
    data = bytes(range(256)) * (3 * CHUNK // 256) + b"tail"
    (tmp_path / "state.json").write_bytes(data)
    assert read_capped(tmp_path / "state.json", 1 << 20) == data
    assert read_capped(tmp_path / "state.json", len(data)) == data


def test_the_cap_holds_for_a_file_of_several_chunks(tmp_path: Path) -> None:
    cap = CHUNK + 100
    (tmp_path / "big").write_bytes(b"x" * (cap + 1))
    refused = refusal(tmp_path / "big", cap)
    assert (refused.errno, refused.strerror) == (errno.EFBIG, f"larger than {cap} bytes")


def test_a_special_file_is_refused_with_its_kind(tmp_path: Path) -> None:
    fifo = tmp_path / "key"
    os.mkfifo(fifo)
    refused = refusal(fifo)
    assert (refused.errno, refused.strerror) == (errno.EINVAL, "not a regular file (a FIFO)")
    assert refusal(tmp_path).strerror == "not a regular file (a directory)"
    assert refusal("/dev/null").strerror == "not a regular file (a character device)"


@pytest.mark.parametrize(("mode", "kind"), [
    (stat.S_IFDIR | 0o755, "a directory"), (stat.S_IFIFO | 0o600, "a FIFO"),
    (stat.S_IFCHR | 0o666, "a character device"), (stat.S_IFBLK | 0o660, "a block device"),
    (stat.S_IFSOCK | 0o777, "a socket"), (0o644, "a special file"),
])
def test_each_kind_of_file_has_its_words(mode: int, kind: str) -> None:
    # A block device (named by mistake for a key file) cannot be opened on every test
    # machine, and open(2) refuses a socket before it can be named: the words are pinned here.
    assert _kind(mode) == kind


def test_check_regular_takes_a_regular_file_and_refuses_the_rest(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_bytes(b"pem")
    check_regular(tmp_path / "cert.pem")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(FileRefusedError, match=r"^\[Errno 22\] not a regular file \(a FIFO\)$"):
        check_regular(tmp_path / "fifo")  # returns at once: nothing waits for a writer
    with pytest.raises(FileNotFoundError):
        check_regular(tmp_path / "missing.pem")


def test_naming_a_terminal_never_makes_it_the_exporters_controlling_terminal() -> None:
    # A process without a controlling terminal (the exporter in a container) that opens a
    # terminal without O_NOCTTY would take it as its own, and get its hang-ups.
    leader, follower = os.openpty()
    name = os.ttyname(follower)
    assert refusal(name).strerror == "not a regular file (a character device)"
    pid = os.fork()
    if pid == 0:  # pragma: no cover -- the child reports through its exit status
        status = 3
        try:
            os.setsid()  # a new session: no controlling terminal
            with contextlib.suppress(FileRefusedError):
                read_capped(name, 100)
            try:
                os.close(os.open("/dev/tty", os.O_RDONLY))
                status = 1  # the terminal became this process's own
            except OSError:
                status = 0
        finally:
            os._exit(status)
    os.close(follower)
    os.close(leader)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0

"""Reading small files an operator names (keys, certificates, state): regular files only, capped.

A FIFO, a terminal or ``/dev/zero`` named by mistake (or on purpose) must not hang a config
check or a reload, nor fill memory: the file is opened without blocking, refused unless it is a
regular file, and read only up to a cap.
"""

from __future__ import annotations

import errno
import os
import stat

#: Key, certificate and other ``*_file`` settings: far more than any PEM bundle needs.
SETTING_CAP = 1 << 20


class FileRefusedError(OSError):
    """The file exists but is not one to read: not a regular file, or over its size cap.

    An OSError whose ``strerror`` says what is wrong, so callers that report
    ``exc.strerror`` for unreadable files report this too.
    """


def read_capped(path: str | os.PathLike[str], cap: int) -> bytes:
    """The bytes of the regular file ``path``: FileRefusedError past ``cap`` bytes, else OSError."""
    fd = _open_regular(path)
    try:
        return _read_up_to(fd, cap)
    finally:
        os.close(fd)


def check_regular(path: str | os.PathLike[str]) -> None:
    """OSError (FileRefusedError for a special file) unless ``path`` is a readable regular
    file; never blocks, so another reader (OpenSSL) can be handed the path safely."""
    os.close(_open_regular(path))


def _open_regular(path: str | os.PathLike[str]) -> int:
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
    fd = os.open(path, flags)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise FileRefusedError(errno.EINVAL, f"not a regular file ({_kind(mode)})")
    return fd


def _read_up_to(fd: int, cap: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := os.read(fd, min(1 << 16, cap + 1 - size)):
        chunks.append(chunk)
        size += len(chunk)
        if size > cap:  # checked while reading: the file may grow after fstat
            raise FileRefusedError(errno.EFBIG, f"larger than {cap} bytes")
    return b"".join(chunks)


def _kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "a special file")

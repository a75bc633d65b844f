"""The state file's directory at start: made when it can be, tried with a write, or why not.

A state file that cannot be written holds /metrics still for as long as that lasts (a restart
would take back what was shown), so a start that could never write it is refused instead.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_DO = "create it, writable by this user (uid {uid}), or set state.path (--state.path) elsewhere"


def prepare_state_dir(path: str) -> str | None:
    """Make ``path``'s directory when its parent exists, and try writing there.

    None when a state file can be written; otherwise one line naming the path and what to do.
    """
    directory = Path(os.path.abspath(path)).parent
    what = f"state file {path}: "
    if Path(path).is_dir():
        return what + "is a directory; name a file in it, e.g. state.json"
    if not directory.is_dir():
        if not directory.parent.is_dir():
            return what + f"directory {directory} does not exist, nor its parent; " + _todo()
        try:
            directory.mkdir(mode=0o750)
        except OSError as error:
            return what + f"cannot create directory {directory} ({error.strerror}); " + _todo()
    try:
        with tempfile.TemporaryFile(dir=directory):  # nameless (O_TMPFILE) or unlinked at once
            pass
    except OSError as error:
        return what + f"cannot write in {directory} ({error.strerror}); " + _todo()
    return None


def missing_state_dir(path: str) -> str | None:
    """``--config.check``'s warning when the state file's directory does not exist yet."""
    directory = Path(os.path.abspath(path)).parent
    if directory.is_dir():
        return None
    return (f"warning: state file {path}: directory {directory} does not exist; it is created "
            f"at start when {directory.parent} is writable, else the exporter refuses to start")


def _todo() -> str:
    return _DO.format(uid=os.geteuid())

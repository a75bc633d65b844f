"""Real external tools for the tests: found, or the test fails (a skip only when asked for)."""

from __future__ import annotations

import os
import shutil

import pytest

#: Set to 1 to let tests whose tool (or root) is missing skip instead of fail. Only a person
#: who knows what they give up sets it; ``.ci/run`` removes it from the environment.
ALLOW_MISSING = "UMINFER_TESTS_ALLOW_MISSING"


def missing_allowed() -> bool:
    """True only when the person running the tests opted in to skipping what is missing."""
    return os.environ.get(ALLOW_MISSING) == "1"


def missing(message: str) -> None:
    """Fail the test for ``message``; skip it instead only when skipping was asked for."""
    if missing_allowed():
        pytest.skip(f"{message} ({ALLOW_MISSING}=1)")
    pytest.fail(f"{message}; set {ALLOW_MISSING}=1 to skip such tests instead")


def require_tool(name: str) -> str:
    """The tool's path; a missing tool fails the test unless skipping was asked for."""
    path = shutil.which(name)
    if path is None:
        missing(f"{name} is not installed (scripts/install-system-deps installs it as root)")
    assert path is not None
    return path


def require_root() -> None:
    """Fail (or, when asked for, skip) unless the tests run as root."""
    if os.geteuid() != 0:
        missing("this test needs root (buildah vfs + podman with runc)")

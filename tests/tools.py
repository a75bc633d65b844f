"""Real external tools for the tests: found, or a loud failure in CI (never a silent skip)."""

from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    """True when running under CI, where every real component must be present."""
    return bool(os.environ.get("CI"))


def require_tool(name: str) -> str:
    """The tool's path; in CI a missing tool fails the test, elsewhere it skips with a reason."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (scripts/install-system-deps installs it as root)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return path

"""Where the tests find the repository's files, wherever a test module sits under tests/."""

from __future__ import annotations

from pathlib import Path

#: The repository's root.
ROOT = Path(__file__).resolve().parent.parent
#: The tests' own data (golden files, CRD schemas, container stand-ins).
TESTS = ROOT / "tests"

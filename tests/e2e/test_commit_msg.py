"""The commit-msg hook (scripts/commit-msg): subjects of at most 72 characters with an area."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.paths import ROOT

pytestmark = pytest.mark.e2e  # runs the hook, a bash script

HOOK = ROOT / "scripts" / "commit-msg"


@pytest.mark.parametrize(("message", "ok"), [
    ("ledger: keep the larger of each problem count\n\nBoth replicas count them.\n", True),
    ("docs, helm: the chart's values\n", True),
    ("Merge branch 'i30a'\n", True),
    ("ledger: " + "x" * 70 + "\n", False),  # 78 characters
    ("Keep the larger of each problem count\n", False),  # no area
    ("ledger: keep counts\nwhy, without a blank line\n", False),
    ("# only a comment\n", False),
])
def test_the_hook_takes_a_short_subject_with_an_area_only(tmp_path: Path, message: str,
                                                          ok: bool) -> None:
    path = tmp_path / "COMMIT_EDITMSG"
    path.write_text(message)
    done = subprocess.run([str(HOOK), str(path)], capture_output=True, text=True, check=False)
    assert (done.returncode == 0) == ok, done.stderr

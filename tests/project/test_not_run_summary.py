"""The run's closing statement of tests that did not run, and the missing-tool policy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import tools
from tests.paths import ROOT

MIXED = '''
import pytest
def test_ran(): pass
def test_skipped(): pytest.skip("no frobnicator here")
@pytest.mark.xfail(reason="known bug 7", strict=True)
def test_xfailed(): assert False
def test_deselected(): pass
'''


def run_pytest(tmp_path: Path, source: str, *args: str) -> str:
    """Run pytest with this suite's conftest on one small test file; its whole output."""
    (tmp_path / "test_tiny.py").write_text(source)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", os.devnull,
         "--rootdir", str(tmp_path), "-p", "tests.conftest", "test_tiny.py", *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.e2e
def test_every_test_that_did_not_run_is_named_with_its_reason(tmp_path: Path) -> None:
    out = run_pytest(tmp_path, MIXED, "--deselect", "test_tiny.py::test_deselected")
    tail = out[out.index("tests that did not run"):].splitlines()[1:5]
    assert tail == [
        "3 tests did not run:",
        "  test_tiny.py::test_skipped: skipped: no frobnicator here",
        "  test_tiny.py::test_deselected: deselected (-k, -m or --deselect)",
        "  test_tiny.py::test_xfailed: xfailed: known bug 7",
    ]


@pytest.mark.e2e
def test_a_full_run_says_so(tmp_path: Path) -> None:
    out = run_pytest(tmp_path, "def test_ran(): pass\n")
    assert "every collected test ran" in out


def test_a_missing_tool_fails_unless_skipping_was_asked_for(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(tools.ALLOW_MISSING, raising=False)
    monkeypatch.setenv("CI", "")  # not being in CI is no reason to skip any more
    with pytest.raises(pytest.fail.Exception, match="no-such-tool-x is not installed"):
        tools.require_tool("no-such-tool-x")
    monkeypatch.setenv(tools.ALLOW_MISSING, "1")
    with pytest.raises(pytest.skip.Exception, match="UMINFER_TESTS_ALLOW_MISSING=1"):
        tools.require_tool("no-such-tool-x")


def test_ci_run_removes_the_opt_in_and_runs_the_readme_command_in_a_fresh_clone() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    assert "\nenv -u UMINFER_TESTS_ALLOW_MISSING ./scripts/test\n" in script
    assert "./scripts/test " in (ROOT / "README.md").read_text()
    # From a clone of the commit at a path of its own, never from the checkout it was given.
    clone = script.index("git clone")
    assert "mktemp" in script[:clone]
    assert script.index('cd "$work/') > clone
    assert script.index("./scripts/test\n") > script.index('cd "$work/')

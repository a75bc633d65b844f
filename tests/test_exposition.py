"""The rendered exposition: a golden file, promtool lint, escaping and the gzip cache."""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import pytest

from exporter.config import Target, Window
from exporter.exposition import ExpositionCache, render
from exporter.families import escape
from exporter.snapshot import Snapshot, TargetSnapshot
from exporter.usage import Totals
from tests.tools import require_tool

GOLDEN = Path(__file__).parent / "golden" / "exposition.txt"


def sample_snapshot() -> Snapshot:
    chat = Target("uminferapikey-a", "deepseek-ai/DeepSeek-V3", "org-1", (("team", "search"),))
    image = Target("uminferapikey-b", "flux-dev", "")
    w1, w24 = Window("1h", 3600), Window("24h", 86400)
    return Snapshot(targets=(
        TargetSnapshot(
            target=chat, counters=Totals(1200, 300, 1500, 7, 0),
            windows=((w1, Totals(100, 20, 120, 1, 0)), (w24, Totals(1200, 300, 1500, 7, 0))),
            windows_at=1_700_000_000.0, up=True, last_success=1_700_000_000.5,
            settled_until=1_699_999_399, revisions=1, late_after_settle=Totals(0, 0, 42, 0, 0),
            given_up=(("retcode", 3600),)),
        TargetSnapshot(target=image, counters=Totals(10, 0, 10, 3, 3), up=False,
                       failures=(("retcode", 2), ("timeout", 1))),
    ), generated_at=1_700_000_001.0)


def test_render_matches_golden_file() -> None:
    assert render(sample_snapshot()).decode() == GOLDEN.read_text()


def test_golden_file_is_lint_clean() -> None:
    promtool = require_tool("promtool")
    result = subprocess.run([promtool, "check", "metrics"], input=GOLDEN.read_bytes(),
                            capture_output=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == b"" and result.stderr.strip() == b""


@pytest.mark.parametrize(("raw", "escaped"), [
    ("plain", "plain"),
    ('quo"te', 'quo\\"te'),
    ("back\\slash", "back\\\\slash"),
    ("new\nline", "new\\nline"),
])
def test_label_values_are_escaped(raw: str, escaped: str) -> None:
    assert escape(raw) == escaped


def test_empty_snapshot_renders_nothing() -> None:
    assert render(Snapshot()) == b""


def test_cache_serves_latest_and_gzip_of_it() -> None:
    cache = ExpositionCache()
    cache.publish(sample_snapshot())
    first = cache.body(compressed=False)
    assert gzip.decompress(cache.body(compressed=True)) == first
    cache.publish(Snapshot())
    assert cache.body(compressed=False) == b""
    assert gzip.decompress(cache.body(compressed=True)) == b""


def test_golden_tool_exists_where_expected() -> None:
    # Guards the golden-file test itself: the file must be non-trivial.
    text = GOLDEN.read_text()
    assert text.count("# TYPE") >= 12 and 'window="24h"' in text
    assert shutil.which("python3")

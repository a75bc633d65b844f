"""MUTATION.md, the mutation-testing record, exists, names its command and keeps the bar."""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECORD = ROOT / "MUTATION.md"


def test_the_record_names_its_command_date_and_machine() -> None:
    text = RECORD.read_text()
    assert "- command: `./scripts/mutation`" in text
    assert re.search(r"^- date: \d{4}-\d{2}-\d{2}$", text, re.MULTILINE)
    assert re.search(r"^- machine: \d+ cores", text, re.MULTILINE)
    assert os.access(ROOT / "scripts" / "mutation", os.X_OK)
    assert "./scripts/mutation" in (ROOT / "README.md").read_text()


def test_the_overall_score_is_at_least_90_percent_and_every_survivor_has_a_reason() -> None:
    text = RECORD.read_text()
    score = re.search(r"^\| \*\*all\*\* \| (\d+) \| (\d+) \| \d+ \| \*\*([\d.]+) %\*\* \|$",
                      text, re.MULTILINE)
    assert score is not None
    assert float(score.group(3)) >= 90.0
    assert "NO REASON RECORDED" not in text

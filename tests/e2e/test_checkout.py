"""A fresh clone anywhere is complete: no tracked link leads out of the tree, and no tracked file
names a path that exists only on the machine of the developer who committed it."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.paths import ROOT

pytestmark = pytest.mark.e2e  # starts processes

LINK_MODE = "120000"
# Home and work directories of a developer's machine (a checkout lives under one of them).
MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:work|root|home|Users)/[\w.-]*")
# Paths inside the image, which is built the same way everywhere: not a developer's machine
# (spelt in two parts so that this file does not name it).
INSIDE_THE_IMAGE = {("tests/e2e/test_container.py", "/root" "/.cache")}


def tracked() -> list[tuple[str, str]]:
    """(mode, path) of every file git tracks in this checkout."""
    out = subprocess.run(["git", "ls-files", "-s", "-z"], cwd=ROOT, check=True,
                         capture_output=True).stdout.decode()
    entries = [entry.split("\t", 1) for entry in out.split("\0") if entry]
    return [(meta.split()[0], path) for meta, path in entries]


def test_no_tracked_link_points_outside_the_tree() -> None:
    escaping = []
    for mode, path in tracked():
        if mode != LINK_MODE:
            continue
        target = os.readlink(ROOT / path)
        resolved = Path(os.path.normpath(ROOT / path).rsplit("/", 1)[0]) / target
        inside = Path(os.path.normpath(resolved)).is_relative_to(ROOT)
        if os.path.isabs(target) or not inside:
            escaping.append(f"{path} -> {target}")
    assert escaping == [], "tracked links that dangle in a clone elsewhere"


def test_no_tracked_file_names_a_path_of_a_developers_machine() -> None:
    found = []
    for mode, path in tracked():
        if mode == LINK_MODE or not (ROOT / path).is_file():
            continue
        text = (ROOT / path).read_bytes().decode("utf-8", errors="replace")
        found += [(path, m.group()) for m in MACHINE_PATH.finditer(text)
                  if (path, m.group()) not in INSIDE_THE_IMAGE]
    assert found == [], "paths that exist only on one machine"

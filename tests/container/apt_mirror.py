"""Print this host's Debian mirror for bookworm, read from its apt sources (for debootstrap)."""

from __future__ import annotations

import sys
from pathlib import Path

SOURCES = Path("/etc/apt")


def deb822_mirror(text: str) -> str | None:
    """The first ``URIs`` of a deb822 stanza whose suites include plain ``bookworm``."""
    for stanza in text.split("\n\n"):
        fields = dict(
            line.split(":", 1) for line in stanza.splitlines() if ":" in line and line[:1].isalpha()
        )
        if "bookworm" in fields.get("Suites", "").split() and fields.get("URIs", "").strip():
            return fields["URIs"].split()[0]
    return None


def oneline_mirror(text: str) -> str | None:
    """The URL of the first ``deb URL bookworm ...`` line of a classic sources.list."""
    for line in text.splitlines():
        words = [w for w in line.split() if not w.startswith("[")]
        if len(words) >= 3 and words[0] == "deb" and words[2] == "bookworm":
            return words[1]
    return None


def find_mirror(base: Path = SOURCES) -> str | None:
    """Search sources.list and sources.list.d/ in apt's order."""
    files = [base / "sources.list", *sorted((base / "sources.list.d").glob("*"))]
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        parse = deb822_mirror if path.suffix == ".sources" else oneline_mirror
        mirror = parse(text)
        if mirror:
            return mirror
    return None


if __name__ == "__main__":
    found = find_mirror()
    if found is None:
        sys.exit("no bookworm mirror in /etc/apt sources")
    print(found)

"""The ``advanced`` section: tuning no operator should need to set, and its keys' old spellings.

The keys here were once under ``poll`` and ``discovery``. Their old spellings are read for one
more release: each one used is one warning naming the old path and the new one, and writing
both is a problem naming both. The values land in the dataclasses the code already reads
(``PollConfig``, ``DiscoveryConfig``); only the YAML layout moved.
"""

from __future__ import annotations

from exporter.config.reader import Reader

ADVANCED_KEYS = ("window_interval", "permanent_error_retry", "discovery_statuses")
#: Where each advanced key was written before it moved here: (section, key).
OLD_SPELLINGS = {"window_interval": ("poll", "window_interval"),
                 "permanent_error_retry": ("poll", "permanent_error_retry"),
                 "discovery_statuses": ("discovery", "statuses")}
REMOVAL = "removed in the release after next"

Advanced = dict[str, tuple[str, object]]
"""Each advanced key that is set: the path it was written at (new or old) and its raw value."""


def advanced_section(r: Reader, root: dict[str, object]) -> Advanced:
    """The ``advanced`` keys set in the ``root`` mapping, under ``advanced`` or (deprecated)
    where they were before."""
    found = {key: (f"advanced.{key}", value) for key, value in
             r.section("advanced", root.get("advanced"), ADVANCED_KEYS).items()}
    for key, (section, name) in OLD_SPELLINGS.items():
        raw = root.get(section)
        if not isinstance(raw, dict) or raw.get(name) is None:
            continue
        old, new = f"{section}.{name}", f"advanced.{key}"
        if key in found:
            r.fail(new, f"also set as {old}, its deprecated spelling; keep only {new}")
        else:
            r.warn(old, f"deprecated; write {new} instead ({REMOVAL})")
            found[key] = (old, raw[name])
    return found


def at(advanced: Advanced, key: str) -> tuple[str, object]:
    """Where ``key`` was written and its raw value (None when it was not)."""
    return advanced.get(key, (f"advanced.{key}", None))


def old_keys(section: str) -> tuple[str, ...]:
    """The deprecated keys ``section`` still reads (they moved to ``advanced``)."""
    return tuple(name for where, name in OLD_SPELLINGS.values() if where == section)
